"""Live progress of a background run (:class:`app.page.jobs.Job`): a Stop button, one bar per method and
the running method's latest preview image, redrawn until the run ends; while the run waits in the server's
queue, its place and estimated start. Each redraw is the page's poll that keeps a waiting run's place. Used by
the simulated and the measured-scan runs alike."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from sparsect.app.page import figures as pf
from sparsect.app.page.jobs import Job, Progress
from sparsect.app.run_queue import Standing
from sparsect.reconstruct.registry import label

PREVIEW_SECONDS = 2.0  # the preview is redrawn at most this often (encoding an image costs the worker time)
POLL_SECONDS = 0.25


def waiting_text(standing: Standing) -> str:
    """What a waiting run's page says: its place in the queue, the runs running and the estimated start."""
    ahead = standing.place - 1 if standing.place else 0
    start = ("no estimate yet (no run has finished on this server)" if standing.start_in is None
             else f"estimated start in about {max(1, round(standing.start_in))} s")
    return (f"Waiting for a free run slot: place {standing.place or '-'} in the queue ({ahead} ahead of you; "
            f"{standing.running} of at most {standing.max_runs} runs running on this server); {start}.")


def show_errors(box: Any, job: Job) -> None:
    """The error line of every method of a finished ``job`` that failed; why it did not start, if it did not."""
    if job.dropped:
        box.warning(f"The run did not start: {job.dropped}.")
    for progress in job.progress.values():
        if progress.error:
            box.error(progress.error)


def _preview_caption(progress: Progress, blind: bool) -> str:
    return "preview" if blind else f"{label(progress.method)} preview, iteration {progress.preview_iteration}"


def follow(st: Any, box: Any, job: Job, names: Mapping[str, str] | None = None, blind: bool = False,
           stop_key: str = "stop") -> None:
    """Draw ``job``'s progress into ``box`` until it has finished.

    Parameters
    ----------
    st : the streamlit module; box : a container on the page.
    names : progress key -> the name shown on its bar (default the method's label).
    blind : no method name in the preview's caption (reader study).
    stop_key : widget key of the Stop button.
    """
    with box:
        st.button("Stop", key=stop_key, on_click=job.request_stop, icon=":material/stop:",
                  help="Stop now and keep the result so far.")
        queue_slot = st.empty()
        columns = st.columns([3, 1])
        with columns[0]:
            bars = {key: st.empty() for key in job.progress}
        preview_slot = columns[1].empty()
        last_preview, shown, queued = 0.0, None, False
        while job.running:
            job.touch()  # the poll that keeps a waiting run's place
            standing = job.standing() if job.waiting else None
            if standing is not None and standing.place:
                queue_slot.info(waiting_text(standing), icon=":material/hourglass_top:")
                queued = True
            elif queued:
                queue_slot.empty()
                queued = False
            for key, bar in bars.items():
                progress = job.progress[key]
                bar.progress(progress.fraction, text=progress.text(names.get(key) if names else None))
            now = time.perf_counter()
            current = next((p for p in job.progress.values() if p.status == "running"), None)
            if current is not None and current.preview_hu is not None and now - last_preview >= PREVIEW_SECONDS \
                    and (current.method, current.preview_iteration) != shown:
                preview_slot.image(pf.tile(current.preview_hu, pf.window_from("soft_tissue"), 256),
                                   caption=_preview_caption(current, blind), width="stretch")
                shown, last_preview = (current.method, current.preview_iteration), now
            job.wait(POLL_SECONDS)  # returns as soon as the run ends


__all__ = ["PREVIEW_SECONDS", "follow", "show_errors", "waiting_text"]
