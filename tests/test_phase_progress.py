"""Progress and stop of the long phases below the methods: the honest simulation and the system-matrix build.

No sleeps, no timings: a callback sets the stop request at its k-th report, and the phase must raise before it
reports again. The chunk sizes are made small so that small cases walk many chunks, and the chunked results are
compared bit for bit with the whole-image calls.
"""

from __future__ import annotations

import importlib
import threading

import numpy as np
import pytest
import torch

from sparsect import data, operators
from sparsect.data import simulate_chunks
from sparsect.data.regrid import upsample_bilinear
from sparsect.operators.progress import Steps, phase_reporting

sm = importlib.import_module("sparsect.operators.system_matrix")  # the module (operators.system_matrix: its function)


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(sm, "WORK_PER_CHECK", 2000)
    monkeypatch.setattr(simulate_chunks, "PIXELS_PER_BAND", 500)


class Recorder:
    """Collects the reports; sets ``stop`` at report ``stop_at`` and counts the reports that came after it."""

    def __init__(self, stop_at: int | None = None) -> None:
        self.reports: list[operators.PhaseProgress] = []
        self.stop = threading.Event()
        self.stop_at = stop_at
        self.after_stop = 0

    def __call__(self, progress: operators.PhaseProgress) -> None:
        if self.stop.is_set():
            self.after_stop += 1
        self.reports.append(progress)
        if len(self.reports) == self.stop_at:
            self.stop.set()


def _monotonic_to_total(reports, phase):
    assert reports and all(r.phase == phase for r in reports)
    done = [r.done for r in reports]
    assert done == sorted(done) and done[0] >= 1 and len(set(r.total for r in reports)) == 1
    return done[-1], reports[-1].total


SIM_CASES = [dict(n_views=12, size=24, photons=1e4, seed=2), dict(n_views=10, size=20, beam="fan"),
             dict(n_views=9, simulation="same-grid", photons=1e3, seed=1)]


@pytest.mark.parametrize("kwargs", SIM_CASES)
def test_simulate_reports_monotonically_to_total_and_is_unchanged(small_chunks, kwargs):
    image = data.shepp_logan_hu(32)
    recorder = Recorder()
    result = data.simulate(image, callback=recorder, stop=recorder.stop, **kwargs)
    done, total = _monotonic_to_total(recorder.reports, "simulation")
    assert done == total > 5 and [r.done for r in recorder.reports] == list(range(1, total + 1))
    plain = data.simulate(image, **kwargs)
    for name in ("sinogram", "clean", "mu"):
        assert np.array_equal(getattr(result, name).numpy(), getattr(plain, name).numpy())


@pytest.mark.parametrize("stop_at", [1, 3, 7])
def test_simulate_stops_at_the_next_check(small_chunks, stop_at):
    recorder = Recorder(stop_at)
    with pytest.raises(data.SimulationStopped) as caught:
        data.simulate(data.shepp_logan_hu(32), 12, size=24, photons=1e4, callback=recorder, stop=recorder.stop)
    assert len(recorder.reports) == stop_at and recorder.after_stop == 0
    assert caught.value.phase == "simulation" and caught.value.done == stop_at
    assert isinstance(caught.value, operators.PhaseStopped)
    last = caught.value.__traceback__
    while last.tb_next is not None:
        last = last.tb_next
    assert last.tb_frame.f_code.co_name == "simulate"  # no frame holding the simulation's arrays


def test_simulate_stop_already_set_and_callable_stop():
    with pytest.raises(data.SimulationStopped):
        data.simulate(data.shepp_logan_hu(32), 8, stop=lambda: True, callback=pytest.fail)


def test_chunked_projection_and_fine_image_match_the_whole_calls(small_chunks):
    rng = np.random.default_rng(0)
    source = rng.random((13, 17))
    steps = Steps("simulation", 10**6)
    fine = simulate_chunks.fine_image(source, (40, 52), steps)
    assert steps.done > 3
    assert np.array_equal(fine.numpy(), upsample_bilinear(source, (40, 52)).astype(np.float32))
    for geometry, model in ((operators.ParallelBeam.sparse(7, image_size=(40, 52)), "linear"),
                            (operators.FanBeam.sparse(9, image_size=(40, 52)), "line")):
        whole = operators.Radon(geometry, model=model)(fine)
        assert np.array_equal(simulate_chunks.project(geometry, model, fine, steps).numpy(), whole.numpy())


def _geometry():
    return operators.ParallelBeam.sparse(15, image_size=(40, 40))


def test_matrix_build_reports_and_is_unchanged(small_chunks):
    recorder = Recorder()
    chunked = operators.system_matrix(_geometry(), callback=recorder, stop=recorder.stop).to_dense()
    done, total = _monotonic_to_total(recorder.reports, "matrix")
    assert done == total > 8
    sm.WORK_PER_CHECK = 1 << 40  # one chunk per pass, as before the chunking
    assert torch.equal(chunked, operators.system_matrix(_geometry()).to_dense())


@pytest.mark.parametrize("stop_at", [1, 4, 9])
def test_matrix_build_stops_at_the_next_check(small_chunks, stop_at):
    recorder = Recorder(stop_at)
    with pytest.raises(operators.MatrixBuildStopped) as caught:
        operators.system_matrix(_geometry(), callback=recorder, stop=recorder.stop)
    assert len(recorder.reports) == stop_at and recorder.after_stop == 0 and caught.value.phase == "matrix"


def test_a_radon_builds_its_matrix_under_phase_reporting(small_chunks):
    sm.MATRICES.clear()
    radon = operators.Radon(_geometry()).expect_calls(40)
    image = torch.rand(40, 40, dtype=torch.float64)
    recorder = Recorder(stop_at=5)
    with phase_reporting(recorder, recorder.stop), pytest.raises(operators.MatrixBuildStopped):
        radon(image)
    assert len(recorder.reports) == 5 and recorder.after_stop == 0 and len(sm.MATRICES._entries) == 0
    recorder = Recorder()
    with phase_reporting(recorder, recorder.stop):
        sinogram = radon(image)
    done, total = _monotonic_to_total(recorder.reports, "matrix")
    assert done == total and len(sm.MATRICES._entries) == 1
    assert torch.allclose(sinogram, operators.Radon(_geometry())(image))
    sm.MATRICES.clear()
