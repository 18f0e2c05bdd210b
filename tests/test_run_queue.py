"""The server-wide run queue (app/run_queue.py) and the page's jobs through it: first come first served, never
more than N running, admission by memory estimate, refusal of a run that could never fit, abandoned waiting runs
dropped after the grace period (a fake clock, no real waiting), the place and estimated start a waiting page
shows, and the run cache kept apart between two sessions with different uploads.

Threads are coordinated with events and the queue's own condition; nothing sleeps and nothing is timed."""

from __future__ import annotations

import io
import threading
from pathlib import Path
from types import SimpleNamespace

import pydicom
import pytest
from pydicom.data import get_testdata_file

from sparsect.app import run, settings
from sparsect.app.page import jobs, queue_view
from sparsect.app.page.progress import waiting_text
from sparsect.app.run_queue import RunQueue, RunRefused, default_max_runs, grace_from_env, max_runs_from_env
from sparsect.reconstruct import registry

PAGE = str(Path(__file__).resolve().parent.parent / "app" / "page" / "main.py")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _queue(max_runs=2, budget=100, grace=10.0, clock=None) -> RunQueue:
    return RunQueue(max_runs, budget, grace, clock or Clock(), log=None)


def _states(tickets) -> list[str]:
    return [t.state for t in tickets]


def test_first_come_first_served_and_never_more_than_n_running():
    queue = _queue(max_runs=2)
    tickets = [queue.submit(1, f"run {i}") for i in range(5)]
    assert _states(tickets) == ["running", "running", "waiting", "waiting", "waiting"]
    assert [queue.standing(t).place for t in tickets] == [None, None, 1, 2, 3]
    queue.release(tickets[1])
    assert _states(tickets) == ["running", "done", "running", "waiting", "waiting"]
    queue.release(tickets[0])
    queue.release(tickets[2])
    assert _states(tickets) == ["done", "done", "done", "running", "running"]
    assert queue.most_running == 2 and queue.reserved == 2


def test_a_run_that_fits_alone_waits_for_memory_and_is_not_overtaken():
    queue = _queue(max_runs=3, budget=10)
    big_first = queue.submit(6)
    big = queue.submit(6)  # a slot is free, the memory is not
    small = queue.submit(1)  # would fit now, but waits behind the big one (first come first served)
    assert _states([big_first, big, small]) == ["running", "waiting", "waiting"]
    queue.release(big_first)
    assert _states([big_first, big, small]) == ["done", "running", "running"]
    assert queue.reserved == 7


def test_a_run_that_can_never_fit_is_refused_with_the_reason():
    queue = _queue(budget=10)
    with pytest.raises(RunRefused, match="needs about"):
        queue.submit(11)
    assert queue.standing(queue.submit(10)).running == 1  # exactly the budget fits alone


def test_the_page_refuses_with_what_would_fit(monkeypatch):
    monkeypatch.setenv("SPARSECT_AVAILABLE_MEMORY", "1e9")
    box = SimpleNamespace(errors=[])
    box.error = box.errors.append
    tasks = [run.Task("lrnn", settings.MethodSettings(device="cpu"), "k")]
    scan = SimpleNamespace(reference_method=None)
    assert queue_view.start(box, tasks, scan, 512, settings.ScanSettings(views=60, size=512)) is None
    (line,) = box.errors
    assert "cannot start on this server" in line and "needs about" in line and "at most working grid" in line


def test_abandoned_waiting_runs_are_dropped_after_the_grace_period():
    clock = Clock()
    queue = _queue(max_runs=1, grace=10.0, clock=clock)
    running, left, staying = queue.submit(1), queue.submit(1), queue.submit(1)
    clock.now += 6
    queue.touch(staying)  # this page polls; the other one's tab was closed
    queue.touch(running)
    clock.now += 5  # 11 s since ``left`` was last seen, 5 s for ``staying``
    queue.expire()
    assert _states([running, left, staying]) == ["running", "dropped", "waiting"]
    assert "did not poll for 10 s" in left.why and queue.acquire(left) is False
    assert queue.standing(staying).place == 1
    queue.release(running)
    assert staying.state == "running"  # a dropped run is never started


def test_place_and_estimated_start():
    clock = Clock()
    queue = _queue(max_runs=1, grace=1e9, clock=clock)
    first = queue.submit(1)
    waiting = [queue.submit(1) for _ in range(3)]
    assert queue.standing(waiting[0]).start_in is None  # nothing finished yet: no estimate
    clock.now += 10
    queue.release(first)  # runs take 10 s
    clock.now += 4
    second, third = (queue.standing(t) for t in waiting[1:])
    assert (second.place, second.waiting, second.running) == (1, 2, 1)
    assert second.start_in == pytest.approx(6) and third.start_in == pytest.approx(16)
    text = waiting_text(third)
    assert "place 2 in the queue" in text and "1 ahead" in text and "about 16 s" in text
    assert "1 of at most 1 runs running" in text


def test_settings_from_the_environment():
    assert default_max_runs(budget=64e9, cores=8) == 4 and default_max_runs(budget=1.5e9, cores=8) == 1
    assert default_max_runs(budget=64e9, cores=1) == 1
    assert max_runs_from_env(3e9, {"SPARSECT_MAX_RUNS": "3"}) == 3
    with pytest.raises(ValueError, match="SPARSECT_MAX_RUNS must be a positive whole number"):
        max_runs_from_env(3e9, {"SPARSECT_MAX_RUNS": "0"})
    assert grace_from_env({}) == 30 and grace_from_env({"SPARSECT_QUEUE_GRACE": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="SPARSECT_QUEUE_GRACE"):
        grace_from_env({"SPARSECT_QUEUE_GRACE": "soon"})


class Gate:
    """Stands in for the run layer: each job's run blocks until the test opens its gate; tracks how many run."""

    def __init__(self) -> None:
        self.condition = threading.Condition()
        self.running: list[str] = []
        self.order: list[str] = []
        self.most = 0
        self.open: set[str] = set()

    def run_tasks(self, scan, tasks, listener, stop=None):
        name = tasks[0].key
        with self.condition:
            self.running.append(name)
            self.order.append(name)
            self.most = max(self.most, len(self.running))
            self.condition.notify_all()
            self.condition.wait_for(lambda: name in self.open)
            self.running.remove(name)

    def finish(self, name: str) -> None:
        with self.condition:
            self.open.add(name)
            self.condition.notify_all()

    def wait_running(self, names: list[str]) -> None:
        with self.condition:
            assert self.condition.wait_for(lambda: sorted(self.running) == sorted(names), timeout=60)


def test_jobs_wait_their_turn_on_real_threads(monkeypatch):
    gate = Gate()
    monkeypatch.setattr(jobs.run, "run_tasks", gate.run_tasks)
    queue = RunQueue(2, 100, grace=1e9, log=None)
    scan = SimpleNamespace(reference_method=None)
    names = [f"job{i}" for i in range(6)]
    started = [jobs.Job([run.Task("fbp", settings.MethodSettings(device="cpu"), n)], scan, queue, 1).start()
               for n in names]
    for done in range(5):
        gate.wait_running(names[done:done + 2])
        assert [j.waiting for j in started] == [False] * (done + 2) + [True] * (4 - done)
        gate.finish(names[done])
        assert started[done].wait(60)
    gate.finish(names[5])
    assert all(job.wait(60) for job in started)
    assert gate.order == names and gate.most == 2 and queue.most_running == 2


def test_stop_while_waiting_leaves_the_queue(monkeypatch):
    gate = Gate()
    monkeypatch.setattr(jobs.run, "run_tasks", gate.run_tasks)
    queue = RunQueue(1, 100, grace=1e9, log=None)
    scan = SimpleNamespace(reference_method=None)
    first, second = (jobs.Job([run.Task("fbp", settings.MethodSettings(device="cpu"), n)], scan, queue, 1).start()
                     for n in ("a", "b"))
    gate.wait_running(["a"])
    second.request_stop()
    assert second.wait(60) and second.dropped == "cancelled" and second.progress["fbp"].status == "cancelled"
    gate.finish("a")
    assert first.wait(60) and gate.order == ["a"]


def _ct_bytes(shift: int = 0) -> bytes:
    path = get_testdata_file("CT_small.dcm", download=False)
    if path is None:
        pytest.skip("pydicom test data is not installed")
    dataset = pydicom.dcmread(path)
    if shift:
        dataset.PixelData = (dataset.pixel_array + shift).astype(dataset.pixel_array.dtype).tobytes()
    buffer = io.BytesIO()
    dataset.save_as(buffer)
    return buffer.getvalue()


def _upload_session(content: bytes):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(PAGE, default_timeout=120)
    at.run()
    at.sidebar.radio(key="source").set_value("Upload DICOM").run()
    at.sidebar.file_uploader(key="upload").set_value(("ct.dcm", content, "application/dicom"))
    at.sidebar.selectbox(key="size").set_value("64 x 64")
    at.sidebar.slider(key="views").set_value(23)  # settings no other test uses
    for method in registry.METHODS:  # FBP alone
        box = at.sidebar.checkbox(key=f"use_{method}")
        box.check() if method == "fbp" else box.uncheck()
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_run_cache_keeps_sessions_with_different_uploads_apart():
    first = _upload_session(_ct_bytes())
    first.sidebar.button(key="run").click().run()
    assert not first.exception and first.session_state["results"]
    other = _upload_session(_ct_bytes(shift=7))  # another visitor, another slice
    assert "kept on this server" not in " ".join(i.value for i in other.info)
    assert not other.session_state["results"]
    other.sidebar.button(key="run").click().run()
    assert not set(other.session_state["results"]) & set(first.session_state["results"])
    same = _upload_session(_ct_bytes())  # the same bytes (a reload) get the finished run back
    assert "kept on this server: FBP" in " ".join(i.value for i in same.info)
