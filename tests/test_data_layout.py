"""The data package's layout: what was importable before dicom_read.py was split still is, and its modules and
functions stay within the size limits (files up to 400 lines, functions up to 60, def line to last line)."""

from __future__ import annotations

import ast
import importlib
from pathlib import Path

import pytest

from sparsect import data

DATA = Path(data.__file__).parent
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60


def test_everything_in_data_all_is_importable():
    for name in data.__all__:
        assert getattr(data, name) is not None, name


def test_dicom_read_keeps_its_names():
    """The public functions and constants of data.dicom_read before the split into dicom_inputs (bytes, folders,
    archives, uploads), dicom_frames (one file's frames) and dicom_read (series, public functions)."""
    from sparsect.data import dicom_frames, dicom_inputs, dicom_read

    for name in ("load", "load_bytes", "load_slice", "load_slice_bytes", "scan", "scan_bytes"):
        assert getattr(dicom_read, name) is getattr(data, name)
    assert dicom_read.MAX_ZIP_BYTES == dicom_inputs.MAX_ZIP_BYTES == 4 * 1024**3
    assert dicom_read.CT_SOP_CLASSES is dicom_frames.CT_SOP_CLASSES
    assert dicom_read.PathLike is dicom_inputs.PathLike and dicom_read.Upload is dicom_inputs.Upload


@pytest.mark.parametrize("path", sorted(DATA.glob("*.py")), ids=lambda p: p.name)
def test_size_limits(path):
    source = path.read_text(encoding="utf-8")
    assert len(source.splitlines()) <= MAX_FILE_LINES
    long = [(node.name, node.end_lineno - node.lineno + 1) for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
            and node.end_lineno - node.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, f"{path.name}: functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_modules_import_on_their_own():
    for path in sorted(DATA.glob("*.py")):
        importlib.import_module(f"sparsect.data.{path.stem}" if path.stem != "__init__" else "sparsect.data")
