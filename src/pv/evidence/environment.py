"""Where a run happened: tool versions, git state, host and device."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pv.attest.inputs import InputRule

#: report key -> distribution name
DISTRIBUTIONS = {
    "pv": "pv-distill",
    "torch": "torch",
    "gguf": "gguf",
    "hypothesis": "hypothesis",
    "crosshair": "crosshair-tool",
    "pytest": "pytest",
    "pytest-xdist": "pytest-xdist",
    "jsonschema": "jsonschema",
    "numpy": "numpy",
    "pyyaml": "PyYAML",
}

_SUBPROCESS_TIMEOUT_S = 10


def collect_environment(rootdir: Path, rule: "InputRule") -> dict[str, Any]:
    """The ``environment`` section of a gate report of a run whose inputs ``rule`` selects.

    ``git``: the source of the run (:func:`pv.evidence.run_inputs.run_source`).
    """
    from pv.evidence.run_inputs import run_source

    return {
        "versions": package_versions(),
        "git": run_source(rootdir, rule).to_json(),
        "host": host_facts(),
        "device": device_facts(),
    }


def package_versions() -> dict[str, str | None]:
    """Installed versions of the tools that shape a verdict (None when not installed)."""
    from pv import __version__

    versions: dict[str, str | None] = {"python": platform.python_version()}
    for key, dist in DISTRIBUTIONS.items():
        try:
            versions[key] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            versions[key] = None
    versions["pv"] = __version__
    versions.update(project_versions())
    return dict(sorted(versions.items()))


def project_versions() -> dict[str, str | None]:
    """``__version__`` of each top-level package the project's contracts bind to (``[tool.pv] modules``)."""
    import importlib

    from pv._util.config import current

    found: dict[str, str | None] = {}
    for package in dict.fromkeys(prefix.split(".")[0] for prefix in current().modules):
        try:
            version = getattr(importlib.import_module(package), "__version__", None)
        except ImportError:
            version = None
        found[package] = version if isinstance(version, str) else None
    return found


def _run(args: list[str], cwd: Path | None = None) -> str | None:
    try:
        done = subprocess.run(
            args, cwd=cwd, capture_output=True, text=True, timeout=_SUBPROCESS_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout if done.returncode == 0 else None


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.lower().startswith(("model name", "hardware")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_bytes() -> int | None:
    try:
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def host_facts() -> dict[str, Any]:
    """Host name, OS, CPU model, core count and memory."""
    return {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "memory_bytes": _memory_bytes(),
    }


def _driver_version() -> str | None:
    out = _run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"])
    return out.strip().splitlines()[0].strip() if out and out.strip() else None


def device_facts() -> dict[str, Any]:
    """The accelerator used: CUDA device 0 when there is one, else the CPU."""
    import torch

    if not torch.cuda.is_available():
        return {
            "kind": "cpu",
            "name": _cpu_model(),
            "capability": None,
            "memory_bytes": _memory_bytes(),
            "unified": None,
            "driver": None,
            "cuda_runtime": None,
            "count": 0,
        }
    props = torch.cuda.get_device_properties(0)
    return {
        "kind": "cuda",
        "name": props.name,
        "capability": f"{props.major}.{props.minor}",
        "memory_bytes": int(props.total_memory),
        "unified": bool(props.is_integrated),
        "driver": _driver_version(),
        "cuda_runtime": torch.version.cuda,
        "count": torch.cuda.device_count(),
    }
