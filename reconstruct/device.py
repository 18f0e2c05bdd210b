"""Which torch device a reconstruction runs on."""

from __future__ import annotations

import re

import torch


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """The torch device for ``device``: "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".

    Raises ``ValueError`` for any other name and for a CUDA device this machine does not have.
    """
    if isinstance(device, torch.device):
        return device
    name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N, got {device!r}")
    if not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but no CUDA GPU is available; use cpu")
    index = int(match.group(1) or 0)
    if index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r} does not exist: this machine has {torch.cuda.device_count()} GPU(s)")
    return torch.device("cuda", index)
