"""The package as a user gets it: ``python -m build`` makes a wheel and an sdist, and the wheel,
installed into a fresh venv, imports, runs its console script and finds its packaged configs.

The fresh venv gets its dependencies (torch, ...) from this interpreter's site-packages, added
as plain path entries: the ``.pth`` files there (the editable install of the checkout) are
never run, so ``cutslots`` can only come from the wheel, which the test checks.
"""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
# The build reads these and src/ (pyproject.toml names nothing else).
BUILD_INPUTS = ("pyproject.toml", "README.md", "LICENSE")


def package_files() -> set[str]:
    """Every file of the source package, relative to src/: what the wheel must hold."""
    return {
        p.relative_to(SRC).as_posix()
        for p in (SRC / "cutslots").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }


def module_names() -> list[str]:
    """Every module of the source package, as dotted names."""
    names = []
    for path in sorted((SRC / "cutslots").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def run(*command: str | Path, cwd: Path) -> str:
    # No PYTHONPATH: a test run with PYTHONPATH=src must not hand the source tree to the venv.
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([str(c) for c in command], cwd=cwd, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"{command} failed:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel and sdist of a copy of the checkout (the build writes egg-info next to src/)."""
    tmp = tmp_path_factory.mktemp("build")
    source = tmp / "source"
    source.mkdir()
    for name in BUILD_INPUTS:
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(SRC / "cutslots", source / "src" / "cutslots", ignore=shutil.ignore_patterns("__pycache__"))
    # Without isolation: no download of setuptools (the test extra installs it); the wheel
    # is built from the sdist, so a file missing from the sdist breaks the wheel too.
    run(sys.executable, "-m", "build", "--no-isolation", "--outdir", tmp / "dist", source, cwd=tmp)
    return tmp / "dist"


def test_wheel_holds_exactly_the_package_and_the_license(dist: Path) -> None:
    (wheel,) = dist.glob("cutslots-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    info = {n for n in names if n.split("/")[0].endswith(".dist-info")}
    assert names - info == package_files()
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in info)
    assert any(n.endswith(".dist-info/entry_points.txt") for n in info)


def test_sdist_holds_the_sources_configs_and_license(dist: Path) -> None:
    (sdist,) = dist.glob("cutslots-*.tar.gz")
    with tarfile.open(sdist) as tar:
        names = {"/".join(n.split("/")[1:]) for n in tar.getnames()}  # without the top folder
    assert set(BUILD_INPUTS) <= names
    assert {f"src/{f}" for f in package_files()} <= names


def test_wheel_in_a_fresh_venv_imports_and_runs_its_cli(dist: Path, tmp_path: Path) -> None:
    (wheel,) = dist.glob("cutslots-*.whl")
    venv = tmp_path / "venv"
    run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python, cutslots = venv / "bin" / "python", venv / "bin" / "cutslots"
    run(
        sys.executable, "-m", "pip", "--python", python, "install", "-q", "--no-deps", "--no-index", wheel, cwd=tmp_path
    )
    site_dir = Path(run(python, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))", cwd=tmp_path).strip())
    (site_dir / "_test_dependencies.pth").write_text("\n".join(site.getsitepackages()) + "\n")

    # Every module of the source tree imports from the installed wheel.
    script = (
        "import importlib, sys\n"
        "for name in sys.argv[1:]: importlib.import_module(name)\n"
        "print(sys.modules['cutslots'].__file__)"
    )
    installed = Path(run(python, "-c", script, *module_names(), cwd=tmp_path).strip())
    assert installed.resolve().is_relative_to(site_dir.resolve())

    assert run(cutslots, "--help", cwd=tmp_path).startswith("usage: cutslots")
    printed = yaml.safe_load(run(cutslots, "config", "demo", cwd=tmp_path))
    packaged = yaml.safe_load((SRC / "cutslots" / "configs" / "demo.yaml").read_text())
    assert printed["name"] == packaged["name"]
    assert printed["train"]["steps"] == packaged["train"]["steps"]
