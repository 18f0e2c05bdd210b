"""Simultaneous visitors of one page server: time to first image and to all results.

Usage (from the repository root; needs Playwright's python package and Chromium)::

    python benchmarks/page_load.py                       # 1, 4 and 8 visitors, SPARSECT_MAX_RUNS=2
    python benchmarks/page_load.py --visitors 1 4 8 --max-runs 2 --size "64 x 64" --classical 10 --neural 20

Starts a real ``sparsect app`` on a free loopback port for each visitor count (a fresh server each, so the run
cache starts empty), opens that many pages in one headless Chromium, sets each page to the sample ``ct_small`` at
the working size with FBP, TV and LRNN and small iteration budgets, presses Run on every page at once and
records in the page itself (a MutationObserver, so sequential polling by this script does not skew the times)
when the first reconstructed image appears and when the metrics table does. Also reports the server's run
queue (the most runs that ran at once, from its ``run queue:`` log lines) and its peak memory growth (VmHWM
after, minus VmRSS before the runs). tests/test_page_load.py drives 6 visitors with the same functions.
"""

import argparse
import csv
import io
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

CHROMIUM = os.environ.get("SPARSECT_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
TIMEOUT_MS = 600_000  # an upper bound for a hung page, not a pause
SCRIPT_IDLE = ("() => document.querySelector('[data-testid=\"stApp\"]')?.getAttribute('data-test-script-state')"
               " === 'notRunning'")
#: Installed in each page just before Run: records (page clock, ms) the first new image, the metrics heading and
#: every queue place shown.
WATCH = """() => {
  const images = () => document.querySelectorAll('[data-testid="stImage"] img').length;
  const base = images();
  const s = window.__sparsect = {clicked: Date.now(), first: null, done: null, places: []};
  new MutationObserver(() => {
    if (s.first === null && images() > base) s.first = Date.now();
    const text = document.body.textContent;
    const m = text.match(/place (\\d+) in the queue/);
    if (m && !s.places.includes(Number(m[1]))) s.places.push(Number(m[1]));
    if (s.done === null && [...document.querySelectorAll('button')].some(b => b.textContent.includes('Metrics (CSV)')))
      s.done = Date.now();
  }).observe(document.body, {childList: true, subtree: true, characterData: true});
}"""
RUNNING = re.compile(r"running (\d+) of at most (\d+)")


@dataclass
class Server:
    """A ``sparsect app`` process (its own process group) and where its log goes."""

    process: subprocess.Popen
    url: str
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def memory(self, field_name: str) -> int:
        """Bytes of a /proc status field of the server ("VmRSS", "VmHWM")."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1]) * 1024
        raise KeyError(field_name)


@dataclass
class Visit:
    """One visitor's run: seconds from Run to the first image and to all results, the queue places its page
    showed, its metrics CSV rows."""

    first_s: float
    all_s: float
    places: list[int]
    rows: list[dict[str, str]] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(folder: Path, env: dict[str, str], timeout: float = 600) -> Server:
    """Start ``sparsect app`` on a free loopback port with ``env`` and wait until it answers its health check."""
    port = _free_port()
    log = folder / f"server-{port}.log"
    with open(log, "wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "sparsect.app.cli", "app", "--port", str(port),
                                    "--host", "127.0.0.1"], cwd=folder, env=env, stdout=out,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    server = Server(process, f"http://127.0.0.1:{port}", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited early with code {process.returncode}: {server.log_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{server.url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return server
        except OSError:
            time.sleep(0.3)  # polling a port that is not open yet
    stop_server(server)
    raise TimeoutError(f"the server did not answer on {server.url} within {timeout} s")


def stop_server(server: Server) -> None:
    """SIGTERM the server's process group (then SIGKILL if it does not end)."""
    if server.process.poll() is not None:
        return
    try:
        os.killpg(server.process.pid, signal.SIGTERM)
        server.process.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(server.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        server.process.wait(timeout=10)


def _settle(page) -> None:
    page.wait_for_function(SCRIPT_IDLE, timeout=TIMEOUT_MS)


def _tick(page, name: str, want: bool) -> None:
    from playwright.sync_api import expect

    box = page.get_by_role("checkbox", name=re.compile(rf"^{name}( |$)"))  # the label, then its time estimate
    if box.is_checked() != want:
        page.locator("label").filter(has=box).click()
        (expect(box).to_be_checked if want else expect(box).not_to_be_checked)(timeout=TIMEOUT_MS)
        _settle(page)


def open_visitor(browser, url: str, size: str, classical: int, neural: int):
    """A new page set to ``ct_small`` at ``size`` with FBP, TV and LRNN (WIRE, ticked by default, off) and these
    iteration budgets."""
    page = browser.new_page(viewport={"width": 1400, "height": 1200})
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(url)
    page.get_by_role("button", name="Run").wait_for()
    _settle(page)
    page.locator('[data-testid="stSelectbox"]').filter(has_text="Working size").click()
    page.get_by_role("option", name=size, exact=True).click()
    _settle(page)
    for name, want in (("FBP", True), ("CGLS", False), ("TV", True), ("WIRE", False), ("LRNN", True)):
        _tick(page, name, want)
    for label, value in (("Iterations (classical)", classical), ("Iterations (networks)", neural)):
        field_ = page.get_by_role("spinbutton", name=label)
        field_.fill(str(value))
        field_.press("Enter")
        _settle(page)
    return page


def _metrics_rows(page) -> list[dict[str, str]]:
    page.get_by_role("tab", name="Downloads").click()
    with page.expect_download(timeout=TIMEOUT_MS) as download:
        page.locator('[data-testid="stDownloadButton"]').filter(has_text="Metrics (CSV)").locator("button").click()
    return list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))


def run_all(pages) -> list[Visit]:
    """Press Run on every page (one after another, without waiting in between), wait until each shows its metrics
    and collect what each recorded."""
    for page in pages:
        page.evaluate(WATCH)
        page.get_by_role("button", name="Run").click()
    visits = []
    for page in pages:
        page.wait_for_function("() => window.__sparsect.done !== null", timeout=TIMEOUT_MS)
        _settle(page)
        seen = page.evaluate("() => window.__sparsect")
        first = seen["first"] if seen["first"] is not None else seen["done"]
        visits.append(Visit((first - seen["clicked"]) / 1000, (seen["done"] - seen["clicked"]) / 1000,
                            sorted(seen["places"]), _metrics_rows(page)))
    return visits


def most_running(log: str) -> tuple[int, int]:
    """(the most runs running at once, the limit) from a server log's ``run queue:`` lines."""
    found = [tuple(map(int, m.groups())) for m in RUNNING.finditer(log)]
    return max(found) if found else (0, 0)


def server_env(max_runs: int, budget: float | None = None) -> dict[str, str]:
    """The environment of a measured server: the run limit and, when given, the memory budget in bytes."""
    env = dict(os.environ, SPARSECT_MAX_RUNS=str(max_runs))
    if budget is not None:
        env["SPARSECT_AVAILABLE_MEMORY"] = str(int(budget))
    return env


def measure(visitors: int, args: argparse.Namespace, folder: Path) -> dict[str, float]:
    """One fresh server, ``visitors`` pages running at once: median and worst times, runs at once, memory."""
    from playwright.sync_api import sync_playwright

    server = start_server(folder, server_env(args.max_runs, args.budget))
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                pages = [open_visitor(browser, server.url, args.size, args.classical, args.neural)
                         for _ in range(visitors)]
                before = server.memory("VmRSS")
                visits = run_all(pages)
                growth = server.memory("VmHWM") - before
            finally:
                browser.close()
    finally:
        stop_server(server)
    firsts, alls = [v.first_s for v in visits], [v.all_s for v in visits]
    return {"visitors": visitors, "first_median": statistics.median(firsts), "first_max": max(firsts),
            "all_median": statistics.median(alls), "all_max": max(alls),
            "at_once": most_running(server.log_text())[0], "growth_gb": growth / 1e9}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--visitors", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-runs", type=int, default=2)
    parser.add_argument("--budget", type=float, default=None, help="SPARSECT_AVAILABLE_MEMORY in bytes")
    parser.add_argument("--size", default="64 x 64")
    parser.add_argument("--classical", type=int, default=10)
    parser.add_argument("--neural", type=int, default=20)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/sparsect-page-load"))
    args = parser.parse_args(argv)
    args.folder.mkdir(parents=True, exist_ok=True)
    print(f"{os.cpu_count()} cores; {args.size}, FBP + TV ({args.classical} it.) + LRNN ({args.neural} it.), "
          f"SPARSECT_MAX_RUNS={args.max_runs}")
    print("visitors | first image median / worst (s) | all results median / worst (s) | runs at once | "
          "peak growth (GB)")
    for n in args.visitors:
        r = measure(n, args, args.folder)
        print(f"{n:8d} | {r['first_median']:13.1f} / {r['first_max']:5.1f} | {r['all_median']:14.1f} / "
              f"{r['all_max']:5.1f} | {r['at_once']:12d} | {r['growth_gb']:.2f}", flush=True)


if __name__ == "__main__":
    main()
