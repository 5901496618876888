"""Plain ``pytest falsifiers/`` (the console script, which does not put the working folder on
``sys.path`` as ``python -m pytest`` does) imports a pv project's own modules, in its conftest
files too (imported before pytest configures its plugins), with pv installed from its wheel:
in a fresh project and in the example project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "chunking"
#: What the ``pytest`` console script runs (its sys.path does not hold the working folder, which
#: ``python -c`` puts first).
CONSOLE_SCRIPT = "import sys; del sys.path[0]; import pytest; sys.exit(pytest.console_main())"
#: Where pv is imported from, in the same way.
WHERE_PV = "import sys; del sys.path[0]; import pv; print(pv.__file__)"


#: What the wheel is built from (copied, so that a build never writes into the checkout).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src", "impl")


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where pip installed pv from the wheel it built of this checkout (no index, no deps)."""
    work = tmp_path_factory.mktemp("wheel")
    source, site = work / "source", work / "site"
    source.mkdir()
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--no-build-isolation",
                    "--target", str(site), str(source)], check=True, capture_output=True)
    return site


def console_pytest(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PV_ROOT", None)
    probe = subprocess.run([sys.executable, "-c", WHERE_PV], cwd=cwd, env=env, capture_output=True, text=True,
                           check=True)
    assert probe.stdout.startswith(str(site)), f"pv was not imported from the wheel: {probe.stdout}"
    return subprocess.run([sys.executable, "-c", CONSOLE_SCRIPT, "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                           *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_plain_pytest_imports_a_fresh_projects_module(wheel_site: Path, tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text('[tool.pv]\nmodules = ["fresh"]\nfalsifiers = ["falsifiers"]\n')
    (tmp_path / "fresh").mkdir()
    (tmp_path / "fresh" / "__init__.py").write_text("ANSWER = 42\n")
    (tmp_path / "falsifiers").mkdir()
    (tmp_path / "falsifiers" / "conftest.py").write_text("import fresh\n\nANSWER = fresh.ANSWER\n")
    (tmp_path / "falsifiers" / "test_fresh.py").write_text(
        "import fresh\n\n\ndef test_the_module_imports():\n    assert fresh.ANSWER == 42\n")
    run = console_pytest(wheel_site, tmp_path, "falsifiers/")
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]


def test_plain_pytest_runs_the_example_falsifiers(wheel_site: Path, tmp_path: Path) -> None:
    copy = tmp_path / "chunking"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("__pycache__", "reports"))
    run = console_pytest(wheel_site, copy, "falsifiers/")
    assert run.returncode == 0 and "3 passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
