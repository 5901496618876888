"""Hardware profiles: what a machine is, and the thresholds its falsifiers must meet.

A profile is a YAML file ``profiles/<name>.yaml``::

    name: h100
    description: NVIDIA H100 SXM, 80 GB HBM3
    device_class: discrete            # cpu | discrete | unified
    detect: {device_name_contains: [H100], unified: false}   # or {cuda: false}
    memory_gib: 80
    bandwidth_gbs: 3350
    thresholds:
      FT-KD-006: {peak_extra_ratio: 1.25}

The profile in use is chosen by name or path, or detected from the machine:
the ``{cuda: false}`` profile when CUDA is unavailable, otherwise the profile
whose name fragments occur in the CUDA device name and whose ``unified`` flag
equals the device's ``is_integrated`` property. torch is imported only for
detection.
"""

from __future__ import annotations

import hashlib
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pv._util.errors import UserError
from pv._util.locations import repo_root

DEVICE_CLASSES = ("cpu", "discrete", "unified")
PROFILE_KEYS = (
    "name",
    "description",
    "device_class",
    "detect",
    "memory_gib",
    "bandwidth_gbs",
    "thresholds",
)
PROFILES_DIR_ENV = "PV_PROFILES_DIR"


class ProfileError(UserError):
    """A profile that cannot be found, read or used."""


@dataclass(frozen=True)
class DeviceFacts:
    """What detection looks at: is CUDA there, the device's name, unified or not."""

    cuda: bool
    name: str | None = None
    unified: bool | None = None


@dataclass(frozen=True)
class Profile:
    """One hardware profile, validated."""

    name: str
    description: str
    device_class: str
    detect: Mapping[str, Any]
    memory_gib: float
    bandwidth_gbs: float
    thresholds: Mapping[str, Mapping[str, float]]
    path: str
    sha256: str

    def threshold(self, ft_id: str, key: str) -> float:
        """The threshold ``key`` of falsifier ``ft_id``; ProfileError naming both when absent."""
        entry = self.thresholds.get(ft_id)
        if entry is None:
            raise ProfileError(
                f"profile {self.name!r} ({self.path}) has no thresholds for {ft_id}; "
                f"add 'thresholds: {{{ft_id}: {{{key}: <number>}}}}'"
            )
        if key not in entry:
            known = ", ".join(sorted(entry)) or "none"
            raise ProfileError(
                f"profile {self.name!r} ({self.path}) has no threshold {key!r} for {ft_id} "
                f"(it has: {known})"
            )
        return entry[key]

    def matches(self, facts: DeviceFacts) -> bool:
        """Whether this profile's ``detect`` rule describes the device ``facts``."""
        if "cuda" in self.detect:
            return facts.cuda == self.detect["cuda"]
        if not facts.cuda or facts.name is None:
            return False
        name = facts.name.lower()
        fragments = self.detect["device_name_contains"]
        return any(f.lower() in name for f in fragments) and facts.unified == self.detect["unified"]

    def describe_detect(self) -> str:
        """The ``detect`` rule in words, for messages."""
        if "cuda" in self.detect:
            return "no CUDA device" if not self.detect["cuda"] else "a CUDA device"
        kind = "unified" if self.detect["unified"] else "discrete"
        return f"a CUDA device named like {' or '.join(self.detect['device_name_contains'])} ({kind} memory)"

    def to_json(self) -> dict[str, Any]:
        """The identity of the profile as a report records it."""
        return {
            "name": self.name,
            "device_class": self.device_class,
            "memory_gib": self.memory_gib,
            "bandwidth_gbs": self.bandwidth_gbs,
            "sha256": self.sha256,
        }


def profiles_dir() -> Path:
    """The folder of profile files: ``$PV_PROFILES_DIR`` or ``profiles/`` of the repository."""
    override = os.environ.get(PROFILES_DIR_ENV)
    if override:
        return Path(override)
    return repo_root() / "profiles"


def device_class_of(facts: DeviceFacts) -> str:
    """The device class of the device ``facts`` describe: cpu, discrete or unified."""
    if not facts.cuda:
        return "cpu"
    return "unified" if facts.unified else "discrete"


def profile_folders() -> list[Path]:
    """The folders whose profiles pv knows: the built-in ``profiles_dir()``."""
    return [profiles_dir()]


def known_profiles() -> dict[str, Profile]:
    """Every profile pv knows (those of :func:`profile_folders`), by name.

    Only a report made under one of these, with the same content hash, is
    evidence. ProfileError when two folders define one name differently.
    """
    known: dict[str, Profile] = {}
    for folder in profile_folders():
        for name in available_profiles(folder):
            profile = _load_file(folder / f"{name}.yaml")
            other = known.setdefault(name, profile)
            if other.sha256 != profile.sha256:
                raise ProfileError(f"profile {name!r} is defined twice, differently: {other.path} and {profile.path}")
    return known


def available_profiles(folder: Path | None = None) -> list[str]:
    """Names of the profile files in ``folder`` (default: ``profiles_dir()``), sorted."""
    folder = profiles_dir() if folder is None else folder
    if not folder.is_dir():
        return []
    return sorted(p.stem for p in folder.glob("*.yaml"))


def _looks_like_path(name_or_path: str) -> bool:
    return os.sep in name_or_path or "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))


def load_profile(name_or_path: str | os.PathLike[str]) -> Profile:
    """Load a profile by name (``profiles/<name>.yaml``) or from a file path."""
    text = os.fspath(name_or_path)
    if not text:
        raise ProfileError("empty profile name")
    if _looks_like_path(text):
        return _load_file(Path(text))
    path = profiles_dir() / f"{text}.yaml"
    if not path.is_file():
        names = ", ".join(available_profiles()) or "none"
        raise ProfileError(
            f"unknown profile {text!r}: no {path} (available: {names})"
        )
    return _load_file(path)


def detect_profile(facts: DeviceFacts | None = None, folder: Path | None = None) -> Profile:
    """The one profile whose ``detect`` rule matches this machine (or ``facts``)."""
    facts = device_facts() if facts is None else facts
    folder = profiles_dir() if folder is None else folder
    profiles = [_load_file(folder / f"{name}.yaml") for name in available_profiles(folder)]
    matching = [p for p in profiles if p.matches(facts)]
    if len(matching) == 1:
        return matching[0]
    device = "no CUDA device" if not facts.cuda else (
        f"CUDA device {facts.name!r} ({'unified' if facts.unified else 'discrete'} memory)"
    )
    if not matching:
        names = ", ".join(p.name for p in profiles) or "none"
        raise ProfileError(
            f"no profile in {folder} matches this machine ({device}); choose one with "
            f"--profile NAME (available: {names}) or add a profile file for it"
        )
    names = ", ".join(p.name for p in matching)
    raise ProfileError(
        f"several profiles in {folder} match this machine ({device}): {names}; "
        "make their detect rules disjoint or choose one with --profile NAME"
    )


def device_facts() -> DeviceFacts:
    """Look at device 0 through torch (imported here, not at module import)."""
    import torch

    if not torch.cuda.is_available():
        return DeviceFacts(cuda=False)
    props = torch.cuda.get_device_properties(0)
    return DeviceFacts(cuda=True, name=props.name, unified=bool(props.is_integrated))


# --- validation -------------------------------------------------------------------------


def _load_file(path: Path) -> Profile:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise ProfileError(f"profile file {path} does not exist") from None
    except OSError as err:
        raise ProfileError(f"cannot read profile file {path}: {err.strerror or err}") from None
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ProfileError(f"{path}{where}: invalid YAML: {problem}") from None
    fields = _validate(data, path)
    return Profile(**fields, path=str(path), sha256=hashlib.sha256(raw).hexdigest())


def _fail(path: Path, key: str, message: str) -> ProfileError:
    return ProfileError(f"{path}: {key}: {message}")


def _number(value: Any, path: Path, key: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise _fail(path, key, f"expected a finite number, got {value!r}")
    if positive and value <= 0:
        raise _fail(path, key, f"expected a number > 0, got {value!r}")
    return float(value)


def _text(value: Any, path: Path, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _fail(path, key, f"expected a non-empty string, got {value!r}")
    return value


def _validate(data: Any, path: Path) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ProfileError(f"{path}: a profile must be a mapping of {', '.join(PROFILE_KEYS)}")
    unknown = sorted(str(k) for k in data if k not in PROFILE_KEYS)
    if unknown:
        raise _fail(path, unknown[0], f"unknown key (allowed: {', '.join(PROFILE_KEYS)})")
    missing = [k for k in PROFILE_KEYS if k not in data]
    if missing:
        raise _fail(path, missing[0], "missing required key")
    name = _text(data["name"], path, "name")
    if name != path.stem:
        raise _fail(path, "name", f"{name!r} differs from the file name {path.stem!r}")
    device_class = data["device_class"]
    if device_class not in DEVICE_CLASSES:
        raise _fail(path, "device_class", f"{device_class!r} is not one of {', '.join(DEVICE_CLASSES)}")
    return {
        "name": name,
        "description": _text(data["description"], path, "description"),
        "device_class": device_class,
        "detect": _validate_detect(data["detect"], device_class, path),
        "memory_gib": _number(data["memory_gib"], path, "memory_gib", positive=True),
        "bandwidth_gbs": _number(data["bandwidth_gbs"], path, "bandwidth_gbs", positive=True),
        "thresholds": _validate_thresholds(data["thresholds"], path),
    }


def _validate_detect(detect: Any, device_class: str, path: Path) -> dict[str, Any]:
    if not isinstance(detect, dict):
        raise _fail(path, "detect", "expected {cuda: false} or {device_name_contains: [...], unified: bool}")
    if device_class == "cpu":
        if detect != {"cuda": False}:
            raise _fail(path, "detect", f"a cpu profile is detected by {{cuda: false}}, got {detect!r}")
        return dict(detect)
    keys = {"device_name_contains", "unified"}
    if set(detect) != keys:
        got = sorted(map(str, detect))
        raise _fail(path, "detect", f"a GPU profile needs exactly the keys {sorted(keys)}, got {got}")
    fragments = detect["device_name_contains"]
    if (
        not isinstance(fragments, list)
        or not fragments
        or not all(isinstance(f, str) and f.strip() for f in fragments)
    ):
        raise _fail(
            path, "detect.device_name_contains", f"expected a non-empty list of non-empty strings, got {fragments!r}"
        )
    unified = detect["unified"]
    if not isinstance(unified, bool):
        raise _fail(path, "detect.unified", f"expected true or false, got {unified!r}")
    if unified != (device_class == "unified"):
        raise _fail(path, "detect.unified", f"{unified} contradicts device_class {device_class!r}")
    return {"device_name_contains": list(fragments), "unified": unified}


def _validate_thresholds(thresholds: Any, path: Path) -> dict[str, dict[str, float]]:
    if thresholds is None:
        return {}
    if not isinstance(thresholds, dict):
        raise _fail(path, "thresholds", "expected a mapping {FT-ID: {key: number}}")
    result: dict[str, dict[str, float]] = {}
    for ft_id, entry in thresholds.items():
        where = f"thresholds.{ft_id}"
        if not isinstance(ft_id, str) or not ft_id.startswith(("FT-", "FALSIFY-")):
            raise _fail(path, where, "expected a falsifier id (FT-... or FALSIFY-...)")
        if not isinstance(entry, dict) or not entry:
            raise _fail(path, where, "expected a non-empty mapping {key: number}")
        result[ft_id] = {
            str(key): _number(value, path, f"{where}.{key}", positive=False)
            for key, value in entry.items()
        }
    return result

