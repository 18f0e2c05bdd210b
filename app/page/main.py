"""sparsect comparison page (Streamlit): ``sparsect app`` or ``streamlit run app/page/main.py``.

:func:`main` calls one function per section. Only widgets live in the page modules: the computation is in
app/page/compute.py, pictures in app/page/figures.py, the sidebar in app/page/sidebar.py, the result views
in app/page/results.py, the reader study in app/page/reader_study.py, the measured-scan mode in
app/page/measured_mode.py, and the session-state keys in app/page/keys.py.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import streamlit as st
from streamlit.delta_generator import DeltaGenerator

from sparsect import data
from sparsect.app import access, run, scans
from sparsect.app.page import compute as pc
from sparsect.app.page import figures as pf
from sparsect.app.page import keys, queue_view, sidebar, uploads
from sparsect.app.page import measured_mode as page_measured
from sparsect.app.page import progress as page_progress
from sparsect.app.page import reader as pr
from sparsect.app.page import results as page_results
from sparsect.app.page.jobs import Job
from sparsect.app.page.reader_study import reader_section
from sparsect.app.page.run_cache import RunCache

TITLE = "Sparse-view CT reconstruction"
STYLE = """<style>
.block-container {padding-top: 1.2rem; padding-bottom: 2rem;}
[data-testid="stSidebar"] .stButton button {padding: 0.2rem 0.3rem; min-height: 2rem;}
[data-testid="stCaptionContainer"] {text-align: center;}
</style>"""


@st.cache_resource(show_spinner=False, max_entries=8)
def sample_slice(name: str, size: int | None) -> data.CTSlice:
    return scans.prepare_slice(data.load_sample(name), size)


@st.cache_resource(show_spinner=False)
def server_runs() -> RunCache:
    """Finished runs of every session of this server: a reload gets them back (see app/page/run_cache.py)."""
    return RunCache()


@dataclass
class Request:
    """The scan and the chosen methods with their settings and run keys."""

    choice: sidebar.InputChoice
    scan: sidebar.ScanChoice
    methods: sidebar.MethodChoice
    scan_data: scans.Scan
    settings: dict[str, object]
    run_keys: dict[str, tuple]


def configure_page() -> None:
    st.set_page_config(page_title="sparsect - sparse-view CT", page_icon=":material/radiology:", layout="wide")
    st.markdown(STYLE, unsafe_allow_html=True)


def missing_input_section(choice: sidebar.InputChoice) -> None:
    """The main pane before there is a slice: why the input cannot be used, or what to do."""
    st.title(TITLE)
    if not choice.error:
        st.info("Pick a sample or upload a CT series in the sidebar to start.")
        return
    st.error(choice.error)
    if len(choice.skipped) > 1:
        sidebar.show_skipped(st, choice.skipped, expanded=True)


def simulate_section(choice: sidebar.InputChoice, scan: sidebar.ScanChoice) -> scans.Scan | None:
    """The sparse scan of the slice (kept per input and scan), or None with the reason shown."""
    sims = st.session_state[keys.SIMULATIONS]
    key = (choice.key, scan.settings)
    simulation = sims.get(key)
    if simulation is None:
        try:
            # a sample is named in the records; an upload's file name may name the patient, so it is not
            named = st.session_state.get("sample") if choice.source == "Sample" else None
            simulation = sims.put(key, scans.simulate(choice.ct, scan.settings, scans.source(choice.ct, named)))
        except ValueError as exc:
            st.error(f"The scan cannot be simulated with these settings: {exc}")
            return None
    return simulation


def request_section(choice: sidebar.InputChoice, scan: sidebar.ScanChoice,
                    methods: sidebar.MethodChoice) -> Request | None:
    """The simulation and each chosen method's settings and run key; None with the reason shown. The settings
    and the memory they need are checked before the scan is simulated."""
    try:
        settings = {m: pc.method_settings(m, methods.iterations_classical, methods.iterations_neural,
                                          methods.preset, "auto", methods.variants) for m in methods.chosen}
        pc.check_memory(choice.ct, scan.settings, settings)
    except ValueError as exc:
        st.error(f"These settings cannot be used: {exc}")
        return None
    simulation = simulate_section(choice, scan)
    if simulation is None:
        return None
    run_keys = {m: pc.run_key(choice.key, scan.settings, m, settings[m]) for m in methods.chosen}
    return Request(choice, scan, methods, simulation, settings, run_keys)


def collect(job: Job) -> None:
    """Take a finished job's results into the session (and the server's cache), once."""
    if job.collected:
        return
    st.session_state[keys.RESULTS].update(job.results)
    for key, outcome in job.results.items():
        server_runs().put(key, outcome)
    job.collected = True


def run_section(request: Request) -> Job | None:
    """Start a background run of the methods without a finished result when Run was pressed (it waits in the
    server's run queue for its turn); the job."""
    state = st.session_state
    job: Job | None = state.get(keys.JOB)
    if request.methods.run_clicked and (job is None or not job.running):
        results = state[keys.RESULTS]
        todo = [run.Task(m, request.settings[m], key) for m, key in request.run_keys.items()
                if key not in results or results[key].stopped]
        if todo:  # through the server's queue: at most N runs at once, each within the memory budget
            started = queue_view.start(st, todo, request.scan_data, max(request.choice.ct.hu.shape),
                                       request.scan.settings)
            if started is not None:
                job = state[keys.JOB] = started
                server_runs().watch(job)
        else:
            st.toast("Already computed for these settings.")
    if job is not None and not job.running:
        collect(job)
    return job


def header_section(request: Request) -> None:
    """Title and one caption line describing the input, the scan and the simulation."""
    scan, simulation = request.scan, request.scan_data.simulation
    truth = simulation.reference_hu
    views_text = f"{scan.settings.views} views over {scan.arc_deg} degrees, {scan.beam} beam" + (
        f", {sidebar.fmt_photons(scan.photons)} photons per ray" if scan.photons else ", noise-free")
    grid_h, grid_w = simulation.simulation_grid
    source = ("Sample " + st.session_state.get("sample", "")) if request.choice.source == "Sample" \
        else "Uploaded series"
    st.title(TITLE)
    st.caption(f"{source} on a {truth.shape[0]} x {truth.shape[1]} working grid | {views_text} | "
               f"{simulation.sinogram.shape[1]} detector bins | {simulation.label} simulation "
               f"({grid_h} x {grid_w} grid, {simulation.sub_rays} ray(s) per bin)")


def input_row_section(request: Request, expanded: bool) -> None:
    """The ground truth, the sparse sinogram and the slice's description."""
    ct, simulation = request.choice.ct, request.scan_data.simulation
    bins = int(simulation.sinogram.shape[1])
    with st.expander("Input slice and sparse sinogram", expanded=expanded):
        c1, c2, c3 = st.columns([1, 1, 1])
        c1.image(pf.tile(simulation.reference_hu, pf.window_from("soft_tissue"), 320),
                 caption="Ground truth (soft tissue window)", width="stretch")
        c2.image(pf.sinogram_image(simulation.sinogram.detach().cpu().numpy(), bins),
                 caption=f"Sparse sinogram: {request.scan.settings.views} views x {bins} bins", width="stretch")
        with c3:
            st.markdown("**Slice**")
            st.dataframe(pd.DataFrame({"value": {k: str(v) for k, v in uploads.describe(ct).items()}}),
                         width="stretch")
            if ct.dataset is not None and st.toggle("Show identifying DICOM fields", key="show_phi",
                                                    help="Patient and study attributes of the source file."):
                fields = uploads.identifying_fields(ct)
                if fields:
                    st.json(fields)
                else:
                    st.caption("No identifying fields present.")


def pending_section(missing: list[str], request: Request) -> None:
    """Runs of the missing methods kept on the server (from another session), and what Run will do."""
    kept = server_runs().find(request.run_keys[m] for m in missing)
    if kept:
        names = ", ".join(pc.label(run.method) for run in kept.values())
        k1, k2 = st.columns([4, 1])
        k1.info(f"Finished results for these settings are kept on this server: {names}.")
        if k2.button("Restore", key="restore_runs", icon=":material/history:", width="stretch"):
            st.session_state[keys.RESULTS].update(kept)
            st.rerun()
    st.info(f"Press **Run** to reconstruct with {', '.join(pc.label(m) for m in missing)} "
            "(results are kept for these settings).")


def progress_section(box: DeltaGenerator, job: Job | None, reader_mode: bool) -> None:
    """The errors of the last run, or the live progress of the running one (then the page reruns)."""
    if job is None:
        return
    if not job.running:
        if not job.collected:  # finished before this section was reached: show its results on a rerun
            collect(job)
            st.rerun()
        page_progress.show_errors(box, job)
        return
    names = {m: f"Method {k + 1}" for k, m in enumerate(job.progress)} if reader_mode else None
    page_progress.follow(st, box, job, names, blind=reader_mode)
    collect(job)
    st.rerun()


def main() -> None:
    configure_page()
    if not access.gate(st):  # sign-in (app/access.py) before any section: no data, no PACS until then
        return
    state = st.session_state
    keys.init_state(state)
    source = sidebar.source_section(st.sidebar)
    if source == sidebar.MEASURED:  # its own flow: no simulation, no ground truth (app/page/measured_mode.py)
        page_measured.render(st, state)
        return
    choice = sidebar.input_section(st.sidebar, source, sample_slice)
    scan = sidebar.scan_section(st.sidebar, choice.size)
    if scan is None:
        return
    methods = sidebar.methods_section(st.sidebar, can_run=choice.ct is not None, shape=choice.working_shape)
    if choice.ct is None:
        missing_input_section(choice)
        return
    request = request_section(choice, scan, methods)
    if request is None:
        return
    job = run_section(request)
    results = state[keys.RESULTS]
    runs = [results[key] for key in request.run_keys.values() if key in results]
    missing = [m for m, key in request.run_keys.items() if key not in results]
    header_section(request)
    progress_box = st.container()
    input_row_section(request, expanded=not runs)
    if missing and not (job is not None and job.running):
        pending_section(missing, request)
    truth = request.scan_data.reference_hu
    if methods.reader_mode:
        labels = pr.blind_labels([r.method for r in runs], state[keys.READER_SEED]) if runs else {}
        reader_section(runs, labels, truth)
    elif runs:
        page_results.results_section(page_results.Shown(runs, truth, choice.ct, request.scan_data, scan.settings,
                                                        from_pacs=source == sidebar.PACS))
    progress_section(progress_box, job, methods.reader_mode)


if __name__ == "__main__":
    main()
