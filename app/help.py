"""Option help shared by ``sparsect reconstruct`` and ``sparsect batch`` (one wording for one option)."""

from sparsect.reconstruct import registry

METHOD_HELP = f"{', '.join(registry.METHODS)}; repeat or comma-separate."
ITERATIONS_HELP = ("Main-loop iterations of every iterative method (epochs for OS-SART, Adam steps for the networks, "
                   "whose warm start comes on top); at least 1. Default: each method's own (FBP has none).")
VARIANT_HELP = ("How the networks (lrnn, wire, siren) are fitted; repeat or comma-separate. ramp_loss: "
                "ramp-filter-weighted sinogram loss, a preconditioner worth several dB at the same budget; "
                "fbp_init: warm start from the FBP image; tv: small total-variation penalty; coarse_to_fine: "
                "coordinate scale ramped up over the first half of the fit. `--variant paper` alone gives the "
                "published formulation. Default: the recommended set "
                f"({','.join(registry.RECOMMENDED_VARIANTS)}).")
SIZE_HELP = ("Reconstruct on a SIZE x SIZE working grid (default: the slice's own). The scan is simulated from the "
             "slice's own pixels when they are at least 2x finer, else from the slice upsampled (bilinear) to 2x.")
SIMULATION_HELP = ("honest: the scan is simulated from a finer image than the one reconstructed, with exact ray/pixel "
                   "intersections and 4 rays per detector bin. same-grid: projected with the reconstruction's own "
                   "operator on its own grid (the 'inverse crime', which flatters every iterative method).")
