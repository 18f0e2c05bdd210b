"""Bundled sample images (read from locally installed packages; nothing is downloaded)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from pydicom.data import get_testdata_file

from .dicom_read import load_slice
from .errors import DicomNotFoundError
from .phantoms import shepp_logan_hu
from .series import CTSlice, resample


class UnknownSampleError(KeyError):
    """``load_sample`` was given a name that is not in :func:`samples`."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


@dataclass(frozen=True)
class _Sample:
    description: str
    load: Callable[[], CTSlice]


def _dicom_sample(file_name: str) -> Callable[[], CTSlice]:
    def load() -> CTSlice:
        path = get_testdata_file(file_name, download=False)  # never fetch from the network
        if path is None:
            raise DicomNotFoundError(f"sample file {file_name} is not installed (it ships with the pydicom "
                                     "and pydicom-data packages)")
        return load_slice(path)

    return load


def _phantom() -> CTSlice:
    return CTSlice(hu=shepp_logan_hu(256), spacing=(1.0, 1.0),
                   meta={"modality": "CT", "series_description": "Shepp-Logan phantom (synthetic)",
                         "synthetic": True})


_SAMPLES: dict[str, _Sample] = {
    "ct_small": _Sample("pydicom CT_small.dcm: 128x128 CT slice, 0.66 mm pixels",
                        _dicom_sample("CT_small.dcm")),
    "head_693": _Sample("pydicom-data 693_UNCR.dcm: 512x512 head CT (CQ500), 0.48 mm pixels, lossless",
                        _dicom_sample("693_UNCR.dcm")),
    "shepp_logan": _Sample("scikit-image Shepp-Logan phantom, 256x256, 1 mm pixels, -1000 to 1000 HU",
                           _phantom),
}


def samples() -> dict[str, str]:
    """Names of the bundled samples with a one-line description each."""
    return {name: sample.description for name, sample in _SAMPLES.items()}


def load_sample(name: str, size: int | None = None) -> CTSlice:
    """Load a bundled sample as a :class:`CTSlice`.

    Parameters
    ----------
    name : one of :func:`samples` (``"ct_small"``, ``"head_693"``, ``"shepp_logan"``).
    size : if given, resample to (size, size) (anti-aliased, bilinear) and scale PixelSpacing so the
        field of view is kept.

    Raises
    ------
    UnknownSampleError
        ``name`` is not a sample; the message lists the valid names.
    """
    if name not in _SAMPLES:
        raise UnknownSampleError(f"unknown sample {name!r}; valid names: {', '.join(_SAMPLES)}")
    ct = _SAMPLES[name].load()
    ct.meta["sample"] = name
    if size is None or (int(size), int(size)) == ct.hu.shape:
        return ct
    return resample(ct, int(size))


__all__ = ["UnknownSampleError", "load_sample", "samples"]
