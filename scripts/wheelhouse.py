"""Build an offline wheelhouse: the runtime dependencies a GPU host lacks, as wheels for its platform.

Why: GPU clusters are often air-gapped (no route to a package index). Their
images usually carry a CUDA build of PyTorch, Triton and NumPy, but not the
rest of what this project needs (gguf, jsonschema, crosshair-tool, ...), nor
Liger-Kernel, which the KD benchmark compares against. This script runs on a
machine that can reach an index and downloads, for the GPU host's Python and
platform, every package the project needs except those the host provides,
with their dependencies, one version each, into one folder.

Usage (on a machine with index access; any OS, any Python >= 3.11)::

    python scripts/wheelhouse.py -o wheelhouse --python-version 3.12

Copy ``wheelhouse/`` and the repository to the GPU host, then there::

    python -m pip install --no-index --find-links wheelhouse -r wheelhouse/requirements.txt
    python -m pip install --no-index --no-deps --no-build-isolation -e .

(``bench/run_gpu.sh OUT --wheelhouse wheelhouse`` does both.) The script
prints these commands at the end.

What it downloads: the ``[project] dependencies`` of ``pyproject.toml`` plus
``--extra`` (default: liger-kernel, tqdm), minus ``--skip`` (default: what a
CUDA PyTorch image provides: torch, triton, numpy, nvidia-*), with the
closure of their requirements. Each package is fetched with
``pip download --only-binary=:all: --no-deps --platform ... --python-version
... --implementation cp``; its wheel's ``Requires-Dist`` lines are evaluated
for the target (that Python, Linux, x86_64, no extras), and the closure is
followed. Several requirers of one package have their version specifiers
combined; a wheel that no longer satisfies them is replaced, so the folder
holds exactly one version per package (two would stop pip's install).
``requirements.txt`` lists the requested requirements as the project states
them (skipped ones left out): pip keeps a version the host already has where
it satisfies them, and installs the downloaded wheel where it does not.

Platforms: manylinux wheels for glibc up to ``--glibc`` (default 2.28; pip
matches each manylinux tag exactly, so every 2.N up to it is listed) and pure
Python wheels. Nothing is written to the output folder unless every download
succeeded.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from email.parser import HeaderParser
from pathlib import Path

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import Version

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_EXTRA = ("liger-kernel", "tqdm")
DEFAULT_SKIP = ("torch", "triton", "numpy", "nvidia-*")
REQUIREMENTS_FILE = "requirements.txt"


class WheelhouseError(Exception):
    """A download or a wheel that cannot be used; the message names the package."""


@dataclass(frozen=True)
class Target:
    """The GPU host: its Python version, glibc and architecture."""

    python_version: str = "3.12"
    glibc: str = "2.28"
    arch: str = "x86_64"

    def platforms(self) -> list[str]:
        """Every manylinux tag up to ``glibc``, newest first (pip matches tags exactly)."""
        major, minor = (int(part) for part in self.glibc.split("."))
        if major != 2 or minor < 5:
            raise WheelhouseError(f"--glibc {self.glibc}: expected 2.N with N >= 5")
        tags = [f"manylinux_2_{n}_{self.arch}" for n in range(minor, 4, -1)]
        legacy = {17: "manylinux2014", 12: "manylinux2010", 5: "manylinux1"}
        return tags + [f"{name}_{self.arch}" for n, name in legacy.items() if n <= minor]

    def marker_environment(self) -> dict[str, str]:
        """The values PEP 508 markers are evaluated with (no extra requested)."""
        return {
            "python_version": ".".join(self.python_version.split(".")[:2]),
            "python_full_version": self.python_version if self.python_version.count(".") == 2 else f"{self.python_version}.0",
            "implementation_name": "cpython",
            "implementation_version": self.python_version,
            "platform_python_implementation": "CPython",
            "sys_platform": "linux",
            "platform_system": "Linux",
            "platform_machine": self.arch,
            "os_name": "posix",
            "platform_release": "",
            "platform_version": "",
            "extra": "",
        }


#: download(requirement, target, folder) -> the wheel file saved in folder
Downloader = Callable[[str, Target, Path], Path]


def pip_download(requirement: str, target: Target, folder: Path) -> Path:
    """Fetch one wheel (no dependencies) for ``target`` with pip; return its path."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--implementation", "cp", "--python-version", target.python_version, "--dest", str(folder)]
    for platform in target.platforms():
        command += ["--platform", platform]
    result = subprocess.run([*command, requirement], capture_output=True, text=True)
    wheels = sorted(folder.glob("*.whl"))
    if result.returncode != 0 or len(wheels) != 1:
        tail = "\n".join((result.stderr or result.stdout).strip().splitlines()[-3:])
        raise WheelhouseError(f"pip could not download a wheel of {requirement!r} for Python "
                              f"{target.python_version} on {target.platforms()[0]}: {tail or 'no wheel saved'}")
    return wheels[0]


def wheel_requirements(wheel: Path) -> list[Requirement]:
    """The ``Requires-Dist`` lines of a wheel's METADATA."""
    try:
        with zipfile.ZipFile(wheel) as archive:
            name = next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA") and n.count("/") == 1)
            metadata = HeaderParser().parsestr(archive.read(name).decode("utf-8"))
    except (zipfile.BadZipFile, StopIteration, UnicodeDecodeError) as exc:
        raise WheelhouseError(f"{wheel.name}: not a wheel with readable METADATA ({exc!r})") from None
    try:
        return [Requirement(line) for line in metadata.get_all("Requires-Dist") or []]
    except InvalidRequirement as exc:
        raise WheelhouseError(f"{wheel.name}: bad Requires-Dist line ({exc})") from None


def applies(requirement: Requirement, target: Target) -> bool:
    """Whether a requirement's marker holds on the target with no extras requested."""
    return requirement.marker is None or Marker(str(requirement.marker)).evaluate(target.marker_environment())


def skipped(name: str, skip: Iterable[str]) -> bool:
    """Whether a (canonical) package name matches a skip pattern (``nvidia-*`` ends in a wildcard)."""
    for pattern in skip:
        pattern = pattern.strip().lower()
        if pattern.endswith("*") and name.startswith(pattern[:-1]) or canonicalize_name(pattern) == name:
            return True
    return False


@dataclass
class Wheelhouse:
    """The closure being built: one wheel per package reachable from the requested requirements."""

    target: Target
    skip: tuple[str, ...]
    folder: Path
    requested: list[Requirement]
    download: Downloader = pip_download
    wheels: dict[str, Path] = field(default_factory=dict)
    requires: dict[str, list[Requirement]] = field(default_factory=dict)
    required_by: dict[str, set[str]] = field(default_factory=dict)

    def version(self, name: str) -> Version:
        return parse_wheel_filename(self.wheels[name].name)[1]

    def constraints(self) -> dict[str, tuple[SpecifierSet, set[str]]]:
        """Each package reachable from the request through the current wheels: combined specifier, requirers."""
        found: dict[str, tuple[SpecifierSet, set[str]]] = {}
        pending: list[tuple[Requirement, str]] = [(r, "(requested)") for r in self.requested]
        while pending:
            requirement, requirer = pending.pop()
            name = canonicalize_name(requirement.name)
            if skipped(name, self.skip) or not applies(requirement, self.target):
                continue
            spec, requirers = found.get(name, (SpecifierSet(), set()))
            found[name] = (spec & requirement.specifier, requirers | {requirer})
            if not requirers and name in self.wheels:
                pending += [(r, name) for r in self.requires[name]]
        return found

    def resolve(self) -> dict[str, tuple[SpecifierSet, set[str]]]:
        """Download until every reachable package has one wheel that satisfies all its requirers."""
        for _ in range(100):
            found = self.constraints()
            stale = sorted(name for name, (spec, _) in found.items()
                           if name not in self.wheels or not spec.contains(self.version(name), prereleases=True))
            if not stale:
                for name in set(self.wheels) - set(found):  # needed only by a version since replaced
                    self.wheels.pop(name).unlink()
                return found
            for name in stale:
                self._fetch(name, found[name][0])
        raise WheelhouseError(f"no consistent set of versions found for {', '.join(stale)}")

    def _fetch(self, name: str, spec: SpecifierSet) -> None:
        with tempfile.TemporaryDirectory(dir=self.folder) as scratch:
            wheel = self.download(f"{name}{spec}", self.target, Path(scratch))
            fetched_name, version = parse_wheel_filename(wheel.name)[:2]
            if canonicalize_name(fetched_name) != name or not spec.contains(version, prereleases=True):
                raise WheelhouseError(f"asked for {name}{spec}, got {wheel.name}")
            if name in self.wheels:
                self.wheels[name].unlink()
            self.wheels[name] = Path(shutil.move(str(wheel), self.folder / wheel.name))
        self.requires[name] = wheel_requirements(self.wheels[name])


def project_requirements(pyproject: Path) -> list[Requirement]:
    """The ``[project] dependencies`` of a pyproject.toml."""
    import tomllib

    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
        return [Requirement(line) for line in data["project"]["dependencies"]]
    except (OSError, tomllib.TOMLDecodeError, KeyError, InvalidRequirement) as exc:
        raise WheelhouseError(f"{pyproject}: cannot read [project] dependencies ({exc})") from None


def build(requested: list[Requirement], out: Path, target: Target, skip: tuple[str, ...], *,
          replace: bool = False, download: Downloader = pip_download) -> Wheelhouse:
    """Resolve and download into a scratch folder beside ``out``; move everything into ``out`` only on success."""
    existing = [p for p in out.iterdir() if p.suffix == ".whl" or p.name == REQUIREMENTS_FILE] if out.is_dir() else []
    if existing and not replace:
        raise WheelhouseError(f"{out} already holds wheels; pass --replace to rebuild it")
    if out.exists() and not out.is_dir():
        raise WheelhouseError(f"{out} is not a folder")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        scratch = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise WheelhouseError(f"{out}: cannot create a folder beside it ({exc.strerror or exc})") from None
    try:
        house = Wheelhouse(target, skip, scratch, requested, download)
        house.required_by = {name: requirers for name, (_, requirers) in house.resolve().items()}
        lines = sorted({f"{r.name}{r.specifier}\n" for r in requested if canonicalize_name(r.name) in house.wheels})
        (scratch / REQUIREMENTS_FILE).write_text("".join(lines), encoding="utf-8")
        out.mkdir(exist_ok=True)
        for path in existing:
            path.unlink()
        for name, wheel in house.wheels.items():
            house.wheels[name] = Path(shutil.move(str(wheel), out / wheel.name))
        shutil.move(str(scratch / REQUIREMENTS_FILE), out / REQUIREMENTS_FILE)
        house.folder = out
        return house
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def install_commands(out: Path) -> list[str]:
    """The commands that install the wheelhouse ``out`` and then the project, offline."""
    return [f"python -m pip install --no-index --find-links {out} -r {out / REQUIREMENTS_FILE}",
            "python -m pip install --no-index --no-deps --no-build-isolation -e .   # in the repository"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     epilog="See the module docstring for the full story.")
    parser.add_argument("-o", "--out", type=Path, required=True, help="the wheelhouse folder")
    parser.add_argument("--python-version", default="3.12", help="the GPU host's Python (default 3.12)")
    parser.add_argument("--glibc", default="2.28", help="the GPU host's glibc, 2.N (default 2.28)")
    parser.add_argument("--arch", default="x86_64", choices=["x86_64", "aarch64"])
    parser.add_argument("--pyproject", type=Path, default=REPO_ROOT / "pyproject.toml")
    parser.add_argument("--extra", nargs="*", default=list(DEFAULT_EXTRA),
                        help=f"more requirements beside the project's (default: {' '.join(DEFAULT_EXTRA)})")
    parser.add_argument("--skip", nargs="*", default=list(DEFAULT_SKIP),
                        help=f"packages the host provides (default: {' '.join(DEFAULT_SKIP)})")
    parser.add_argument("--replace", action="store_true", help="replace the wheels of an existing wheelhouse")
    args = parser.parse_args(argv)
    if not re.fullmatch(r"3\.\d+(\.\d+)?", args.python_version):
        parser.error(f"--python-version {args.python_version!r}: expected 3.N or 3.N.M")
    try:
        requested = project_requirements(args.pyproject) + [Requirement(text) for text in args.extra]
    except InvalidRequirement as exc:
        parser.error(f"--extra: {exc}")
    except WheelhouseError as exc:
        parser.error(str(exc))
    target = Target(args.python_version, args.glibc, args.arch)
    try:
        house = build(requested, args.out, target, tuple(args.skip), replace=args.replace)
    except WheelhouseError as exc:
        print(f"wheelhouse: error: {exc}", file=sys.stderr)
        return 1
    total = sum(path.stat().st_size for path in house.wheels.values())
    print(f"{len(house.wheels)} wheels, {total / 2**20:.1f} MiB, in {args.out} "
          f"(Python {target.python_version}, {target.platforms()[0]}; skipped: {' '.join(args.skip) or 'nothing'})")
    for name in sorted(house.wheels):
        print(f"  {house.wheels[name].name}  (required by {', '.join(sorted(house.required_by[name]))})")
    print("On the GPU host, in the repository:")
    for command in install_commands(args.out):
        print(f"  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
