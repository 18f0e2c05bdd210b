"""Option help shared by ``sparsect reconstruct`` and ``sparsect batch`` (one wording for one option), and the
pieces that keep their ``--help`` within 80 columns (:func:`flag`, :class:`Command`)."""

from typing import Any

import typer
from typer.core import TyperCommand

from sparsect.reconstruct import registry


def flag(name: str, help: str) -> Any:  # noqa: A002 - typer's own keyword
    """An on/off option with one name (no --no-... twin) and no type or default in the help."""
    return typer.Option(name, help=help, metavar="", show_default=False)


class Command(TyperCommand):
    """A typer command whose --help row, like the other flags', shows no ``<bool>``."""

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            option.metavar = ""
        return option


METHOD_HELP = f"{', '.join(registry.METHODS)}; repeat or comma-separate."
ITERATIONS_HELP = ("Main-loop iterations of every iterative method (epochs for OS-SART, Adam steps for the networks, "
                   "whose warm start comes on top); at least 1. Default: each method's own (FBP has none).")
VARIANT_HELP = ("How the networks (" + ", ".join(registry.NETWORK_METHODS) + ") are fitted; repeat or comma-separate. "
                + " ".join(f"{v.name}: {v.help}" for v in registry.VARIANTS.values()
                           if v.name not in (registry.PAPER_VARIANT, registry.RECOMMENDED))
                + f" `--variant {registry.PAPER_VARIANT}` alone gives the published formulation. Default: "
                f"{registry.RECOMMENDED}, each network's own set ("
                + "; ".join(f"{name}: {','.join(names)}" for name, names in registry.RECOMMENDED_VARIANTS.items())
                + ").")
SIZE_HELP = ("Reconstruct on a SIZE x SIZE working grid (default: the slice's own). The scan is simulated from the "
             "slice's own pixels when they are at least 2x finer, else from the slice upsampled (bilinear) to 2x.")
SIMULATION_HELP = ("honest: the scan is simulated from a finer image than the one reconstructed, with exact ray/pixel "
                   "intersections and 4 rays per detector bin. same-grid: projected with the reconstruction's own "
                   "operator on its own grid (the 'inverse crime', which flatters every iterative method).")


#: ``sparsect reconstruct --scan``'s options (app/measured_scan.py).
MEASURED_HELP = {
    "scan": "A measured scan instead of INPUT: .npy/.npz, HDF5 Data Exchange (.h5), a folder of TIFF projections "
            "with flat*/dark* files, or a Helsinki Tomography Challenge 2022 .mat file.",
    "geometry": "JSON geometry file of the measured scan (beam, detector_pixel_mm, center_offset, angles_deg, "
                "source_distance_mm, detector_distance_mm); fills what the scan file lacks.",
    "center": "Rotation centre of a measured scan: auto (estimated from opposing views) or an offset in detector "
              "bins; default the file's.",
    "row": "Detector row of a 3D projection stack (default the middle one).",
    "reference": "What a measured scan's scores are against: fbp, tv (run on all measured views) or none (data "
                 "consistency only); default fbp when --views drops views, else none.",
}

#: ``sparsect batch``'s PACS options (app/batch/pacs.py). Credentials only from SPARSECT_DICOMWEB_USER and
#: SPARSECT_DICOMWEB_PASSWORD (asked for on a terminal if missing) or SPARSECT_DICOMWEB_TOKEN.
PACS_HELP = {
    "dicomweb": "DICOMweb base URL of a PACS (e.g. http://pacs:8042/dicom-web): pull --study into IN_DIR first. "
                "Credentials come from SPARSECT_DICOMWEB_USER/PASSWORD or SPARSECT_DICOMWEB_TOKEN, never options.",
    "study": "StudyInstanceUID to pull with --dicomweb.",
    "series": "SeriesInstanceUID: pull only this series of --study.",
    "push": "Store the study's derived series back on the --dicomweb server (STOW-RS) after the batch.",
}
