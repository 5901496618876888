"""Hardware profiles: what a machine is, and the thresholds its falsifiers must meet.

pv ships one profile per known machine class as package data, holding the
hardware facts only::

    name: h100
    description: NVIDIA H100 SXM, 80 GB HBM3
    device_class: discrete            # cpu | discrete | unified
    detect: {device_name_contains: [H100], unified: false}   # or {cuda: false}
    memory_gib: 80
    bandwidth_gbs: 3350

A project adds profile folders (``[tool.pv] profiles``, ``$PV_PROFILES``). A file
``<name>.yaml`` there extends the profile of that name: usually it holds only the
thresholds of the project's own falsifiers::

    name: h100
    thresholds:
      FT-KD-006: {peak_extra_ratio: 1.25}

and any other key it sets replaces the built-in value; a name pv does not know
needs every hardware key. Layers apply in order (built-in, then each folder).
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pv._util import config as pv_config
from pv._util.errors import UserError
from pv._util.files import InputError, read_input
from pv._util.resources import builtin_profiles

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


def profile_folders() -> tuple[Path, ...]:
    """The project's profile folders (``[tool.pv] profiles`` or ``$PV_PROFILES``), in order."""
    return pv_config.current().profiles


def device_class_of(facts: DeviceFacts) -> str:
    """The device class of the device ``facts`` describe: cpu, discrete or unified."""
    if not facts.cuda:
        return "cpu"
    return "unified" if facts.unified else "discrete"


def known_profiles() -> dict[str, Profile]:
    """Every profile pv knows (built-in, with the project's layers of :func:`profile_folders`), by name.

    Only a report made under one of these, with the same content hash, is evidence.
    """
    return {name: load_profile(name) for name in available_profiles()}


def _layers(name: str, folders: Sequence[Path]) -> list[tuple[str, bytes]]:
    """``(where, raw bytes)`` of every file defining profile ``name``: built-in first, then each folder."""
    found = []
    builtin = builtin_profiles().get(name)
    if builtin is not None:
        found.append((f"pv:profiles/{name}.yaml", builtin.read_bytes()))
    for folder in folders:
        path = folder / f"{name}.yaml"
        if path.is_file():
            found.append((str(path), _read(path)))
    return found


def available_profiles(folders: Sequence[Path] | None = None) -> list[str]:
    """Names of the known profiles: pv's built-in ones and those of ``folders`` (default: the project's)."""
    folders = profile_folders() if folders is None else folders
    names = set(builtin_profiles())
    for folder in folders:
        if folder.is_dir():
            names.update(p.stem for p in folder.glob("*.yaml"))
    return sorted(names)


def _looks_like_path(name_or_path: str) -> bool:
    return os.sep in name_or_path or "/" in name_or_path or name_or_path.endswith((".yaml", ".yml"))


def load_profile(name_or_path: str | os.PathLike[str], folders: Sequence[Path] | None = None) -> Profile:
    """Load a profile by name (built-in and project layers) or from a file path.

    A file extends the built-in profile of its name, if there is one.
    """
    text = os.fspath(name_or_path)
    if not text:
        raise ProfileError("empty profile name")
    if _looks_like_path(text):
        path = Path(text)
        raw = _read(path)
        return _build([*_layers(path.stem, ())[:1], (str(path), raw)], path.stem)
    folders = profile_folders() if folders is None else folders
    layers = _layers(text, folders)
    if not layers:
        names = ", ".join(available_profiles(folders)) or "none"
        where = ", ".join(map(str, folders)) or "no project profile folder"
        raise ProfileError(f"unknown profile {text!r}: not built into pv and not in {where} (available: {names})")
    return _build(layers, text)


def detect_profile(facts: DeviceFacts | None = None, folders: Sequence[Path] | None = None) -> Profile:
    """The one profile whose ``detect`` rule matches this machine (or ``facts``)."""
    facts = device_facts() if facts is None else facts
    folders = profile_folders() if folders is None else folders
    profiles = [load_profile(name, folders) for name in available_profiles(folders)]
    matching = [p for p in profiles if p.matches(facts)]
    if len(matching) == 1:
        return matching[0]
    device = "no CUDA device" if not facts.cuda else (
        f"CUDA device {facts.name!r} ({'unified' if facts.unified else 'discrete'} memory)"
    )
    if not matching:
        names = ", ".join(p.name for p in profiles) or "none"
        raise ProfileError(
            f"no profile of pv or the project matches this machine ({device}); choose one with "
            f"--profile NAME (available: {names}) or add a profile file for it"
        )
    names = ", ".join(p.name for p in matching)
    raise ProfileError(
        f"several profiles of pv and the project match this machine ({device}): {names}; "
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


#: Largest profile file read, in bytes.
MAX_PROFILE_BYTES = 1024 * 1024


def _read(path: Path) -> bytes:
    try:
        return read_input(path, MAX_PROFILE_BYTES)
    except InputError as err:
        if err.missing:
            raise ProfileError(f"profile file {err.path} does not exist") from None
        raise ProfileError(f"profile file {err}") from None


def _parse(where: str, raw: bytes) -> dict[str, Any]:
    try:
        data = yaml.safe_load(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ProfileError(f"{where}: not UTF-8 text") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ProfileError(f"{where}{at}: invalid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ProfileError(f"{where}: a profile must be a mapping of {', '.join(PROFILE_KEYS)}")
    unknown = sorted(str(k) for k in data if k not in PROFILE_KEYS)
    if unknown:
        raise ProfileError(f"{where}: {unknown[0]}: unknown key (allowed: {', '.join(PROFILE_KEYS)})")
    return data


def _build(layers: list[tuple[str, bytes]], stem: str) -> Profile:
    """The profile of the ``layers`` applied in order, validated; its digest covers every layer,
    each preceded by its length (8 bytes, big-endian), so no two splits of the bytes hash alike."""
    merged: dict[str, Any] = {}
    thresholds: dict[str, Any] = {}
    digest = hashlib.sha256()
    for where, raw in layers:
        data = _parse(where, raw)
        if "name" in data and data["name"] != stem:
            raise ProfileError(f"{where}: name: {data['name']!r} differs from the file name {stem!r}")
        if "thresholds" in data:
            thresholds.update(_validate_thresholds(data["thresholds"], Path(where)))
        merged.update({key: value for key, value in data.items() if key != "thresholds"})
        digest.update(len(raw).to_bytes(8, "big"))
        digest.update(raw)
    where = " + ".join(where for where, _ in layers)
    fields = _validate({**merged, "thresholds": thresholds}, Path(where), stem)
    return Profile(**fields, path=where, sha256=digest.hexdigest())


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


def _validate(data: dict[str, Any], path: Path, stem: str) -> dict[str, Any]:
    missing = [k for k in PROFILE_KEYS if k not in data]
    if missing:
        raise _fail(path, missing[0], "missing required key (a profile pv does not ship needs every hardware key)")
    name = _text(data["name"], path, "name")
    if name != stem:
        raise _fail(path, "name", f"{name!r} differs from the file name {stem!r}")
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
        "thresholds": data["thresholds"],
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

