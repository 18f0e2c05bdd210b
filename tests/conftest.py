"""Shared pytest fixtures (a local Orthanc PACS, the benchmark scripts as modules) and GPU skipping."""

import importlib.util
import json
import os
import queue
import secrets
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pydicom
import pytest
import requests
import torch
from pydicom.data import get_testdata_file
from pydicom.uid import generate_uid


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture
def benchmark_module(monkeypatch):
    """``load(name)``: a fresh module of ``benchmarks/<name>.py``, with ``benchmarks/`` on ``sys.path`` for this test
    (the scripts import each other by name, as when run from the repository root)."""
    folder = Path(__file__).resolve().parents[1] / "benchmarks"
    monkeypatch.syspath_prepend(str(folder))

    def load(name: str):
        spec = importlib.util.spec_from_file_location(f"{name}_bench", folder / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


#: The rates every test's time estimates use (seconds per pixel-view or pixel): a fast machine, so the page's first
#: working size is the slice's own grid whatever the load of the machine running the tests.
FAST_RATES = {"fbp": 1e-9, "pair": 1e-9, "matrix": 1e-9, "tv_image": 1e-9, "network": 1e-7}


def seed_calibration(folder: Path, rates: dict[str, float]) -> None:
    """A calibration file in ``folder`` holding ``rates`` (as :data:`FAST_RATES`) for this machine's CPU, every
    network and preset."""
    from sparsect.reconstruct import calibration as cal
    from sparsect.reconstruct import registry

    networks = {cal.network_key(m, p): cal.Rate(rates["network"]) for m in registry.NETWORK_METHODS
                for p in registry.PRESETS}
    seeded = cal.Calibration(cal.Rate(rates["fbp"]), cal.Rate(rates["pair"]), cal.Rate(rates["matrix"]),
                             cal.Rate(rates["tv_image"]), networks)
    cal.store(folder / cal.CACHE_NAME, cal.machine_key("cpu"), seeded)


@pytest.fixture(scope="session", autouse=True)
def calibration_cache(tmp_path_factory) -> Iterator[Path]:
    """Time estimates read their calibration from a folder of this test session, never the user's cache, seeded with
    :data:`FAST_RATES` (a calibration for another thread count is measured there)."""
    from sparsect.reconstruct.calibration import CACHE_ENV

    folder = tmp_path_factory.mktemp("sparsect-cache")
    seed_calibration(folder, FAST_RATES)
    before = os.environ.get(CACHE_ENV)
    os.environ[CACHE_ENV] = str(folder)
    yield folder
    if before is None:
        os.environ.pop(CACHE_ENV, None)
    else:
        os.environ[CACHE_ENV] = before


@pytest.fixture
def calibrated(tmp_path, monkeypatch):
    """``calibrated(rates)``: this test's time estimates use ``rates`` (as :data:`FAST_RATES`), from a cache folder of
    its own; returns the folder."""
    from sparsect.reconstruct.calibration import CACHE_ENV

    def use(rates: dict[str, float]) -> Path:
        folder = tmp_path / "sparsect-cache"
        folder.mkdir(exist_ok=True)
        seed_calibration(folder, rates)
        monkeypatch.setenv(CACHE_ENV, str(folder))
        return folder

    return use


@pytest.fixture(scope="module")
def one_thread():
    """Small images run fastest single-threaded (and do not fight over the cores); for a module, with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

# --- a real Orthanc with its DICOMweb plugin, for the PACS tests ------------------------------------------------

ORTHANC_PLUGIN_DIRS = ("/usr/share/orthanc/plugins", "/usr/lib/orthanc")


@dataclass(frozen=True)
class Orthanc:
    """A running Orthanc: REST API at ``url``, DICOMweb at ``dicomweb``, one basic-auth user."""

    url: str
    dicomweb: str
    user: str
    password: str


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _dicomweb_plugin() -> Path | None:
    for folder in ORTHANC_PLUGIN_DIRS:
        found = sorted(Path(folder).glob("libOrthancDicomWeb.so*"))
        if found:
            return found[0]
    return None


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory) -> Iterator[Orthanc]:
    """Orthanc on 127.0.0.1 and a free port, with a temporary configuration and storage folder; started
    once per test session (waiting for its "started" log line and its REST API), stopped afterwards.
    Orthanc 1.10 has no bind-address option: it listens on all interfaces but, with RemoteAccessAllowed
    false, answers only local clients."""
    binary, plugin = shutil.which("Orthanc"), _dicomweb_plugin()
    if binary is None:
        pytest.skip("Orthanc is not installed (Debian package orthanc)")
    if plugin is None:
        pytest.skip("Orthanc's DICOMweb plugin is not installed (Debian package orthanc-dicomweb)")
    folder = tmp_path_factory.mktemp("orthanc")
    port, password = _free_port(), secrets.token_urlsafe(16)
    config = {"Name": "sparsect-test", "StorageDirectory": str(folder / "storage"),
              "IndexDirectory": str(folder / "storage"), "HttpPort": port, "DicomServerEnabled": False,
              "RemoteAccessAllowed": False, "AuthenticationEnabled": True,
              "RegisteredUsers": {"sparsect": password}, "Plugins": [str(plugin)],
              "DicomWeb": {"Enable": True, "Root": "/dicom-web/"}}
    (folder / "orthanc.json").write_text(json.dumps(config))
    process = subprocess.Popen([binary, str(folder / "orthanc.json")], cwd=folder, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str | None] = queue.Queue()

    def drain() -> None:  # also keeps the pipe from filling up while the tests run
        for line in process.stderr:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=drain, daemon=True).start()
    log: list[str] = []
    try:
        while True:
            line = lines.get(timeout=120)  # a generous bound on start-up, not a pacing delay
            if line is None:
                pytest.fail(f"Orthanc exited with status {process.wait()} before starting: {''.join(log[-5:])}")
            log.append(line)
            if "Orthanc has started" in line:
                break
        server = Orthanc(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{port}/dicom-web", "sparsect", password)
        assert requests.get(f"{server.url}/system", auth=(server.user, password), timeout=60).ok
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def make_ct_series():
    """``make_ct_series(n)``: ``n`` slices of a new CT series (new study, series and instance UIDs, 5 mm apart)
    made from pydicom's CT_small.dcm, a new patient ID (SPARSECT-<hex>) per series, accession ACC-4711, study
    date 2024-01-02; each slice's pixels shifted by 10 per slice so they differ."""
    def make(n: int) -> list[pydicom.Dataset]:
        study, series, patient = generate_uid(), generate_uid(), f"SPARSECT-{secrets.token_hex(4)}"
        slices = []
        for i in range(n):
            ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
            ds.PatientID, ds.AccessionNumber, ds.StudyDate = patient, "ACC-4711", "20240102"
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
            ds.InstanceNumber = i + 1
            ds.ImagePositionPatient = [*ds.ImagePositionPatient[:2], float(ds.ImagePositionPatient[2]) + 5 * i]
            ds.SliceLocation = float(ds.ImagePositionPatient[2])
            ds.PixelData = (ds.pixel_array + 10 * i).astype(ds.pixel_array.dtype).tobytes()
            slices.append(ds)
        return slices

    return make


@pytest.fixture(scope="module")
def batch_app():
    """A ``sparsect`` app with only the ``batch`` command (as ``sparsect.app.cli.main`` registers it)."""
    import typer

    from sparsect.app.batch.cli import register

    app = typer.Typer()
    app.callback()(lambda: None)
    register(app)
    return app
