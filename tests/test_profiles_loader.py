"""pv.evidence.profiles: loading, strict validation, thresholds and detection of hardware profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from pv.evidence.profiles import (
    DeviceFacts,
    ProfileError,
    available_profiles,
    detect_profile,
    device_facts,
    load_profile,
    profile_folders,
)

CPU = """\
name: cpu
description: any machine without CUDA
device_class: cpu
detect: {cuda: false}
memory_gib: 16
bandwidth_gbs: 20
thresholds:
  FT-KD-007: {max_seconds: 60}
"""

H100 = """\
name: h100
description: NVIDIA H100 SXM
device_class: discrete
detect: {device_name_contains: [H100], unified: false}
memory_gib: 80
bandwidth_gbs: 3350
thresholds:
  FT-KD-006: {peak_extra_ratio: 1.25}
"""

GB10 = """\
name: gb10
description: NVIDIA GB10, unified memory
device_class: unified
detect: {device_name_contains: [GB10], unified: true}
memory_gib: 128
bandwidth_gbs: 273
thresholds:
  FT-FROZEN-005: {teacher_resident_gib: 6}
"""


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for name, text in (("cpu", CPU), ("h100", H100), ("gb10", GB10)):
        (tmp_path / f"{name}.yaml").write_text(text)
    return tmp_path


def test_load_by_path_reads_every_field(folder: Path) -> None:
    profile = load_profile(folder / "h100.yaml")
    assert (profile.name, profile.device_class, profile.memory_gib, profile.bandwidth_gbs) == (
        "h100", "discrete", 80.0, 3350.0,
    )
    assert profile.threshold("FT-KD-006", "peak_extra_ratio") == 1.25
    assert len(profile.sha256) == 64


def test_load_by_name_uses_the_profiles_folder(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PV_PROFILES", str(folder))
    assert profile_folders() == (folder,)
    assert load_profile("gb10").threshold("FT-FROZEN-005", "teacher_resident_gib") == 6.0
    (folder / "a100.yaml").write_text(H100.replace("h100", "a100").replace("H100", "A100"))
    assert available_profiles() == ["a100", "cpu", "gb10", "h100", "h200"]  # pv's built-in ones and the folder's


def test_unknown_name_lists_the_available_profiles(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PV_PROFILES", str(folder))
    with pytest.raises(ProfileError, match=r"unknown profile 'a100'.*available: cpu, gb10, h100, h200"):
        load_profile("a100")


def test_missing_threshold_names_profile_falsifier_and_key(folder: Path) -> None:
    profile = load_profile(folder / "h100.yaml")
    with pytest.raises(ProfileError, match=r"profile 'h100' .*has no thresholds for FT-NOPE-001"):
        profile.threshold("FT-NOPE-001", "seconds")
    with pytest.raises(ProfileError, match=r"no threshold 'seconds' for FT-KD-006 \(it has: peak_extra_ratio\)"):
        profile.threshold("FT-KD-006", "seconds")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("memory_gib: 80", "memory_gb: 80", r"memory_gb: unknown key"),
        ("bandwidth_gbs: 3350\n", "", r"bandwidth_gbs: missing required key"),
        ("device_class: discrete", "device_class: gpu", r"device_class: 'gpu' is not one of cpu, discrete, unified"),
        ("name: h100", "name: h200", r"name: 'h200' differs from the file name 'h100'"),
        ("unified: false", "unified: true", r"detect.unified: True contradicts device_class 'discrete'"),
        ("unified: false", "unified: 'no'", r"detect.unified: expected true or false"),
        ("[H100]", "[]", r"detect.device_name_contains: expected a non-empty list"),
        ("memory_gib: 80", "memory_gib: -1", r"memory_gib: expected a number > 0"),
        ("memory_gib: 80", "memory_gib: .nan", r"memory_gib: expected a finite number"),
        ("{peak_extra_ratio: 1.25}", "{peak_extra_ratio: true}", r"FT-KD-006.peak_extra_ratio: expected a finite number"),
        ("{peak_extra_ratio: 1.25}", "{peak_extra_ratio: '1'}", r"FT-KD-006.peak_extra_ratio: expected a finite number"),
        ("FT-KD-006:", "KD-006:", r"thresholds.KD-006: expected a falsifier id"),
        ("description: NVIDIA H100 SXM", "description: ''", r"description: expected a non-empty string"),
    ],
)
def test_invalid_profile_is_refused_naming_file_and_key(
    tmp_path: Path,
    old: str,
    new: str,
    message: str,
) -> None:
    assert old in H100
    # a name pv does not ship, so that no built-in profile fills in what the file lacks
    path = tmp_path / "x100.yaml"
    path.write_text(H100.replace(old, new, 1).replace("name: h100", "name: x100"))
    with pytest.raises(ProfileError, match=message.replace("'h100'", "'x100'")) as caught:
        load_profile(path)
    assert str(path) in str(caught.value)


def test_cpu_profile_must_be_detected_by_cuda_false(tmp_path: Path) -> None:
    path = tmp_path / "cpu.yaml"
    path.write_text(CPU.replace("{cuda: false}", "{cuda: true}"))
    with pytest.raises(ProfileError, match=r"detect: a cpu profile is detected by \{cuda: false\}"):
        load_profile(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: [unclosed\n", r"h100.yaml:\d+:\d+: invalid YAML"),
        ("- just\n- a list\n", r"a profile must be a mapping"),
        ("", r"a profile must be a mapping"),
    ],
)
def test_unreadable_profile_gives_one_clear_message(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "h100.yaml"
    path.write_text(text)
    with pytest.raises(ProfileError, match=message):
        load_profile(path)


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProfileError, match=r"does not exist"):
        load_profile(tmp_path / "nope.yaml")


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        (DeviceFacts(cuda=False), "cpu"),
        (DeviceFacts(cuda=True, name="NVIDIA H100 80GB HBM3", unified=False), "h100"),
        (DeviceFacts(cuda=True, name="NVIDIA GB10", unified=True), "gb10"),
    ],
)
def test_detection_matches_name_and_memory_kind(folder: Path, facts: DeviceFacts, expected: str) -> None:
    assert detect_profile(facts, [folder]).name == expected


def test_detection_refuses_an_unknown_or_inconsistent_gpu(folder: Path) -> None:
    with pytest.raises(ProfileError, match=r"no profile .* matches this machine \(CUDA device 'NVIDIA A100'"):
        detect_profile(DeviceFacts(cuda=True, name="NVIDIA A100", unified=False), [folder])
    # an H100 name on a unified-memory device is not the h100 profile
    with pytest.raises(ProfileError, match=r"unified memory"):
        detect_profile(DeviceFacts(cuda=True, name="NVIDIA H100", unified=True), [folder])


def test_detection_refuses_overlapping_rules(folder: Path) -> None:
    (folder / "h100nvl.yaml").write_text(H100.replace("name: h100", "name: h100nvl"))
    with pytest.raises(ProfileError, match=r"several profiles .* match this machine .*: h100, h100nvl"):
        detect_profile(DeviceFacts(cuda=True, name="NVIDIA H100 NVL", unified=False), [folder])


def test_a_project_file_adds_thresholds_to_the_built_in_hardware_facts(tmp_path: Path) -> None:
    (tmp_path / "h100.yaml").write_text("name: h100\nthresholds:\n  FT-X-001: {ratio_max: 2}\n")
    profile = load_profile("h100", [tmp_path])
    assert (profile.device_class, profile.memory_gib, profile.bandwidth_gbs) == ("discrete", 80.0, 3350.0)
    assert profile.threshold("FT-X-001", "ratio_max") == 2.0
    assert load_profile("h100", []).thresholds == {}  # pv's own profile holds no project's thresholds
    assert profile.sha256 != load_profile("h100", []).sha256  # the digest covers the project's layer
    with pytest.raises(ProfileError, match=r"h100.yaml: name: 'h200' differs from the file name 'h100'"):
        (tmp_path / "h100.yaml").write_text("name: h200\nthresholds: {}\n")
        load_profile("h100", [tmp_path])


def test_the_built_in_profiles_are_package_data_with_hardware_facts_only() -> None:
    from pv._util.resources import builtin_profiles

    files = builtin_profiles()
    assert set(files) == {"cpu", "gb10", "h100", "h200"}
    for name in files:
        assert load_profile(name, []).thresholds == {}, name


def test_device_facts_agree_with_torch() -> None:
    import torch

    facts = device_facts()
    assert facts.cuda == torch.cuda.is_available()
    if facts.cuda:
        assert facts.name == torch.cuda.get_device_name(0)


def test_the_repository_profiles_load_and_detect_disjointly() -> None:
    names = available_profiles()
    assert {"cpu", "h100", "h200", "gb10"} <= set(names), names
    profiles = {name: load_profile(name) for name in names}
    assert detect_profile(DeviceFacts(cuda=False)).name == "cpu"
    for device, unified, expected in (
        ("NVIDIA H100 80GB HBM3", False, "h100"),
        ("NVIDIA H200", False, "h200"),
        ("NVIDIA GB10", True, "gb10"),
    ):
        assert detect_profile(DeviceFacts(cuda=True, name=device, unified=unified)).name == expected
    assert profiles["gb10"].device_class == "unified"
