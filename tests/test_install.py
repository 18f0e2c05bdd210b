"""The built wheel installs one top-level name, ``sparsect``, and works from a folder with its own data/ and app/."""

import os
import subprocess
import sys
import sysconfig
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path | None = None, env: dict | None = None) -> str:
    done = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert done.returncode == 0, f"{args}: {done.stdout[-2000:]}\n{done.stderr[-3000:]}"
    return done.stdout


def test_wheel_installs_only_the_sparsect_namespace(tmp_path):
    _run(sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT))
    (wheel,) = (tmp_path / "dist").glob("sparsect-*.whl")
    fresh = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(fresh)
    python = fresh / "bin" / "python"
    _run(str(python), "-m", "pip", "install", "--quiet", "--no-deps", "--no-index", str(wheel))
    site = Path(_run(str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])").strip())
    before = {"pip", "_distutils_hack", "setuptools", "pkg_resources", "distutils-precedence.pth"}
    new = {p.name for p in site.iterdir() if p.name not in before and not p.name.startswith(("pip-", "setuptools-"))}
    assert {n for n in new if not n.endswith(".dist-info")} == {"sparsect"}, new
    listed = _run(str(python), "-m", "pip", "show", "-f", "sparsect").split("Files:")[1].split()
    inside = {entry.split("/")[0] for entry in listed if not entry.startswith("..")}  # ../../../bin/sparsect
    assert inside == {"sparsect", wheel.name.split("-py")[0] + ".dist-info"}, listed

    # the dependencies come from this interpreter's environment (a .pth file), not from the network
    (site / "dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    elsewhere = tmp_path / "project"
    for folder in ("data", "app", "operators", "reconstruct"):
        (elsewhere / folder).mkdir(parents=True)
        (elsewhere / folder / "__init__.py").write_text("raise ImportError('the wrong package was imported')\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = _run(str(python), "-c", "import sparsect.operators, sparsect.data, sparsect.app.cli; "
                                    "print(sparsect.operators.__file__)", cwd=elsewhere, env=env)
    assert Path(where.strip()).is_relative_to(site)
    assert "reconstruct" in _run(str(fresh / "bin" / "sparsect"), "--help", cwd=elsewhere, env=env)
