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


ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "chunking"
#: What the ``pytest`` console script runs (its sys.path does not hold the working folder, which
#: ``python -c`` puts first).
CONSOLE_SCRIPT = "import sys; del sys.path[0]; import pytest; sys.exit(pytest.console_main())"
#: Where pv is imported from, in the same way.
WHERE_PV = "import sys; del sys.path[0]; import pv; print(pv.__file__)"
#: What the wheel is built from (copied, so that a build never writes into the checkout).
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "src", "impl")


def install_wheel(work: Path) -> Path:
    """A folder where pip installed pv from the wheel it built of this checkout (no index, no deps)."""
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
    """``pytest *args`` in ``cwd`` as its console script runs it, with pv from the wheel installed in ``site``."""
    env = {**os.environ, "PYTHONPATH": str(site), "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PV_ROOT", None)
    probe = subprocess.run([sys.executable, "-c", WHERE_PV], cwd=cwd, env=env, capture_output=True, text=True,
                           check=True)
    assert probe.stdout.startswith(str(site)), f"pv was not imported from the wheel: {probe.stdout}"
    return subprocess.run([sys.executable, "-c", CONSOLE_SCRIPT, "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                           *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_plain_pytest_imports_the_projects_modules_with_pv_from_its_wheel(tmp_path: Path) -> None:
    site = install_wheel(tmp_path)  # once for both projects: the build is the costly part
    fresh = tmp_path / "fresh-project"
    (fresh / "fresh").mkdir(parents=True)
    (fresh / "pyproject.toml").write_text('[tool.pv]\nmodules = ["fresh"]\nfalsifiers = ["falsifiers"]\n')
    (fresh / "fresh" / "__init__.py").write_text("ANSWER = 42\n")
    (fresh / "falsifiers").mkdir()
    (fresh / "falsifiers" / "conftest.py").write_text("import fresh\n\nANSWER = fresh.ANSWER\n")
    (fresh / "falsifiers" / "test_fresh.py").write_text(
        "import fresh\n\n\ndef test_the_module_imports():\n    assert fresh.ANSWER == 42\n")
    run = console_pytest(site, fresh, "falsifiers/")
    assert run.returncode == 0 and "1 passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]

    example = tmp_path / "chunking"
    shutil.copytree(EXAMPLE, example, ignore=shutil.ignore_patterns("__pycache__", "reports"))
    run = console_pytest(site, example, "falsifiers/")
    assert run.returncode == 0 and "3 passed" in run.stdout, run.stdout[-2000:] + run.stderr[-2000:]
