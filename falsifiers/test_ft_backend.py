"""Falsifiers of distill-teacher-backend-selection-v1: override, validation, auto, device class."""

from __future__ import annotations

import io
import itertools
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from distill import dispatch, teacher, train
from distill.errors import BackendSelectionError, InsufficientMemoryError
from ft_devices import cuda_or_skip
from ft_runs import pv_distill

#: what these falsifiers check (``pv mutate`` runs them against mutants of it)
COVERS = ["distill.dispatch", "distill.teacher:load_teacher"]

GIB = 1024**3
#: the documented values (module docstring of distill.dispatch, the contract, the user docs), spelled
#: here rather than read from the code under test, so that changing them in the code is a defect found
RESERVE = 4 * GIB
ENV_VAR = "DISTILL_TEACHER_BACKEND"
DEVICE_CLASSES = ("unified", "discrete")
#: (dequant_bytes, free_bytes): fits with room, fits only without the reserve, no room, nothing free
MEMORY = [(10 * GIB, 80 * GIB), (10 * GIB, 10 * GIB + RESERVE // 2), (30 * GIB, 16 * GIB), (28 * GIB, 0)]
VALID = ("auto", "dequant", "q4k-native")


@pytest.mark.falsifies("FT-BACKEND-SEL-001", covers=COVERS, mutants=["backend-override-ignored", "backend-auto-after-override"])
def test_explicit_override_wins_everywhere() -> None:
    situations = list(itertools.product(DEVICE_CLASSES, (True, False), MEMORY))
    for override, (device_class, quantized, (dequant_bytes, free_bytes)) in itertools.product(
            ("dequant", "q4k-native"), situations):
        if override == "q4k-native" and not quantized:
            continue  # refused: FT-BACKEND-SEL-002
        chosen = dispatch.select_teacher_backend(override, device_class, quantized, dequant_bytes, free_bytes)
        assert chosen == override, (override, device_class, quantized, dequant_bytes, free_bytes, chosen)


@pytest.mark.falsifies("FT-BACKEND-SEL-002", covers=COVERS, mutants=[
    "backend-invalid-falls-back-to-auto", "backend-lenient-override", "backend-native-unquantized-allowed"])
def test_invalid_override_refused_listing_valid_values() -> None:
    invalid = [("cuda", True), ("  ", True), (" dequant ", True), ("Q4K", True), ("DEQUANT", True),
               ("q4k-native", False)]
    for (override, quantized), device_class, (dequant_bytes, free_bytes) in itertools.product(
            invalid, DEVICE_CLASSES, MEMORY):
        with pytest.raises(BackendSelectionError) as caught:
            dispatch.select_teacher_backend(override, device_class, quantized, dequant_bytes, free_bytes)
        assert all(value in str(caught.value) for value in VALID), (override, caught.value)
    # an unknown device class, a device that is neither cpu nor cuda, an unknown backend at load
    with pytest.raises(BackendSelectionError, match="device class"):
        dispatch.select_teacher_backend("auto", "gpu", True, 0, 0)
    with pytest.raises(BackendSelectionError, match="meta"):
        dispatch.classify_device("meta")
    with pytest.raises(BackendSelectionError, match="cuda"):
        teacher.load_teacher("no-file-is-read.gguf", "cuda")


@pytest.mark.falsifies("FT-BACKEND-SEL-003", covers=COVERS, mutants=[
    "backend-reserve-ignored", "backend-unified-means-dequant", "backend-unquantized-by-memory",
    "backend-reserve-shrunk"])
def test_auto_by_quantization_and_memory_on_every_device_class() -> None:
    assert RESERVE >= GIB  # the grids are built on a real margin (at least a CUDA context)

    def auto(device_class: str, quantized: bool, dequant_bytes: int, free_bytes: int) -> str:
        return dispatch.select_teacher_backend("auto", device_class, quantized, dequant_bytes, free_bytes,
                                               native_bytes=5 * GIB if quantized else None)

    free = 40 * GIB
    for device_class in DEVICE_CLASSES:  # one rule for both classes
        assert auto(device_class, True, free - RESERVE, free) == "dequant"  # fits exactly with the reserve
        assert auto(device_class, True, free - RESERVE + 1, free) == "q4k-native"  # one byte over
        assert auto(device_class, True, 10 * GIB, 10 * GIB + RESERVE // 2) == "q4k-native"  # fits only without it
        assert auto(device_class, True, 28 * GIB, 120 * GIB) == "dequant"  # a 128 GB unified host
        assert auto(device_class, True, 28 * GIB, 24 * GIB) == "q4k-native"  # a 24 GB host: 28 GB does not fit
        assert auto(device_class, False, 28 * GIB, 80 * GIB) == "dequant"  # unquantized: dequant is the only way
        with pytest.raises(InsufficientMemoryError):  # ... and where it does not fit, there is none
            auto(device_class, False, 28 * GIB, 24 * GIB)
    # the reason states the sizes it compared, in GiB, and the reserve
    reason = dispatch.decide_teacher_backend("auto", "discrete", True, 10 * GIB, 80 * GIB).reason
    assert all(part in reason for part in ("10.00 GiB", "80.00 GiB", f"reserve {RESERVE // GIB} GiB")), reason
    for empty in (None, ""):  # nothing requested means auto
        assert dispatch.select_teacher_backend(empty, "unified", True, 28 * GIB, 16 * GIB) == "q4k-native"


#: the memory each device class draws on, as the reasons and refusals name it (the contract's description)
MEMORY_KINDS = {"unified": "free system memory", "discrete": "free device memory"}


@pytest.mark.falsifies("FT-BACKEND-SEL-003", covers=COVERS, mutants=[
    "backend-unquantized-by-memory", "backend-unified-means-dequant", "backend-no-refusal"])
def test_reason_says_which_rule_decided() -> None:
    def reason(quantized: bool, dequant_bytes: int, free_bytes: int, native_bytes: int | None = None,
               device_class: str = "unified", override: str = "auto") -> str:
        return dispatch.decide_teacher_backend(override, device_class, quantized, dequant_bytes, free_bytes,
                                               native_bytes).reason

    sizes = "dequantized teacher 30.00 GiB, free system memory 16.00 GiB minus reserve 4 GiB"
    assert reason(True, 10 * GIB, 80 * GIB).startswith("auto: dequantized copy fits (dequantized teacher 10.00 GiB")
    assert reason(False, 10 * GIB, 80 * GIB).startswith("auto: teacher has no quantized weights and fits (")
    assert reason(True, 30 * GIB, 16 * GIB) == f"auto: dequantized copy does not fit ({sizes})"  # native size unknown
    assert reason(True, 30 * GIB, 16 * GIB, 5 * GIB) == f"auto: dequantized copy does not fit ({sizes}, q4k-native 5.00 GiB)"
    assert reason(True, 30 * GIB, 16 * GIB, override="dequant") == "requested explicitly"
    for device_class, memory in MEMORY_KINDS.items():
        assert f"{memory} 80.00 GiB" in reason(True, 10 * GIB, 80 * GIB, device_class=device_class), device_class
    # a refusal names the backend it measured, the bytes it needs and the memory it looked at
    for device_class, memory in MEMORY_KINDS.items():
        for quantized, native_bytes, needed in ((True, 5 * GIB, 5 * GIB), (True, 0, 0), (False, None, 6 * GIB)):
            with pytest.raises(InsufficientMemoryError) as caught:
                dispatch.select_teacher_backend("auto", device_class, quantized, 6 * GIB, GIB, native_bytes)
            backend = "q4k-native" if quantized else "dequant"
            assert f"backend {backend} needs {needed} bytes" in str(caught.value), caught.value
            assert f"{GIB} bytes (1.00 GiB) of {memory} are available" in str(caught.value), caught.value


@pytest.mark.falsifies("FT-BACKEND-SEL-007", mutants=["backend-no-refusal"])
def test_refused_before_load_when_nothing_fits(model_file, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    for device_class in DEVICE_CLASSES:
        with pytest.raises(InsufficientMemoryError) as caught:
            dispatch.select_teacher_backend("auto", device_class, True, 28 * GIB, 8 * GIB, native_bytes=5 * GIB)
        assert str(5 * GIB) in str(caught.value) and str(8 * GIB) in str(caught.value), caught.value
        with pytest.raises(InsufficientMemoryError):
            dispatch.select_teacher_backend("auto", device_class, False, 6 * GIB, 8 * GIB)
    teacher, student = _distill_files(model_file)
    monkeypatch.delenv(dispatch.ENV_VAR, raising=False)
    monkeypatch.setattr(train, "_free_bytes", lambda device: RESERVE)  # room for the student's state only
    out_dir = tmp_path / "refused"
    run = pv_distill(capsys, monkeypatch, teacher, student, out_dir, "--steps", "1")
    assert run.code == 2, (run.code, run.stderr)
    assert "does not fit" in run.stderr and "bytes" in run.stderr and "traceback" not in run.stderr.lower()
    assert run.teachers == [], "a teacher was loaded before the refusal"
    assert not out_dir.exists() or not any(out_dir.iterdir()), sorted(out_dir.iterdir())


def _fake_properties(monkeypatch: pytest.MonkeyPatch, *devices: tuple[str, int]) -> None:
    """CUDA devices 0, 1, ... with the given (name, is_integrated), looked up by index."""
    props = [SimpleNamespace(name=name, is_integrated=integrated, total_memory=80 * GIB, major=9, minor=0)
             for name, integrated in devices]
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda device: props[device])


@pytest.mark.falsifies("FT-BACKEND-SEL-006", covers=COVERS, mutants=["device-class-inverted", "device-class-from-name"])
def test_device_class_from_properties(monkeypatch: pytest.MonkeyPatch) -> None:
    cases = [
        ("NVIDIA GB10", 1, "unified"),
        ("NVIDIA H100 80GB HBM3", 0, "discrete"),
        ("NVIDIA H200", 0, "discrete"),
        # the name must not decide: an integrated part with an unfamiliar name, and the reverse
        ("Acme Accelerator X", 1, "unified"),
        ("NVIDIA GB10 (discrete test double)", 0, "discrete"),
    ]
    for name, integrated, expected in cases:
        _fake_properties(monkeypatch, (name, integrated))
        assert dispatch.classify_device(0) == expected, name
        assert dispatch.classify_device("cuda:0") == expected, name
    # each device by its own index; a CUDA device without an index is device 0; the CPU is unified
    _fake_properties(monkeypatch, ("NVIDIA GB10", 1), ("NVIDIA H100 80GB HBM3", 0))
    for device in ("cuda:1", 1, torch.device("cuda", 1)):
        assert dispatch.classify_device(device) == "discrete", device
    for device in ("cuda", torch.device("cuda"), "cuda:0", 0):
        assert dispatch.classify_device(device) == "unified", device
    assert dispatch.classify_device("cpu") == "unified"


#: a /proc/meminfo (Linux, sizes in kB) whose MemAvailable (which counts reclaimable caches) differs from
#: its other lines, and what the CUDA driver reports for the device, as (free, total) bytes
MEMINFO = "MemTotal:       65536000 kB\nMemFree:         1000000 kB\nMemAvailable:   40000000 kB\nCached:  30000000 kB\n"
MEM_AVAILABLE = 40000000 * 1024
DEVICE_MEMORY = (70 * GIB, 80 * GIB)


def _fake_memory(monkeypatch: pytest.MonkeyPatch, meminfo: str | None, pages: tuple[int, int] | None) -> None:
    """The system's memory as ``/proc/meminfo`` text (None: no such file) and sysconf's (available pages,
    page size) (None: not supported); the device's as ``DEVICE_MEMORY``."""
    def fake_open(path, mode: str = "r", encoding: str | None = None):
        if path == "/proc/meminfo" and meminfo is not None:  # decoded as open would: a bad encoding raises
            return io.TextIOWrapper(io.BytesIO(meminfo.encode("ascii")), encoding=encoding)
        raise FileNotFoundError(path)

    def fake_sysconf(name: str) -> int:
        if pages is None:
            raise ValueError(f"unrecognized configuration name {name!r}")
        return {"SC_AVPHYS_PAGES": pages[0], "SC_PAGE_SIZE": pages[1]}[name]

    monkeypatch.setattr(dispatch, "open", fake_open, raising=False)  # what the module's code opens
    monkeypatch.setattr(os, "sysconf", fake_sysconf)
    monkeypatch.setattr(torch.cuda, "mem_get_info", lambda device=None: DEVICE_MEMORY)


@pytest.mark.falsifies("FT-BACKEND-SEL-011", covers=COVERS, mutants=[
    "memory-unified-from-device", "memory-free-not-available"])
def test_available_memory_is_the_device_class_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_properties(monkeypatch, ("NVIDIA GB10", 1), ("NVIDIA H100 80GB HBM3", 0))
    _fake_memory(monkeypatch, MEMINFO, (123, 4096))
    assert dispatch.available_bytes("cuda:1") == DEVICE_MEMORY[0]  # discrete: free device memory
    for device in ("cuda:0", "cpu"):  # unified and the CPU: the system's available memory
        assert dispatch.available_bytes(device) == MEM_AVAILABLE, device
    # without MemAvailable (or without /proc) the available pages; where neither is known, nothing
    for meminfo in (None, MEMINFO.replace("MemAvailable", "Available")):
        _fake_memory(monkeypatch, meminfo, (123, 4096))
        assert dispatch.available_bytes("cpu") == 123 * 4096, meminfo
    _fake_memory(monkeypatch, None, None)
    assert dispatch.available_bytes("cpu") == 0


#: device name fragments whose memory class is known from the vendor's specifications
KNOWN_CLASSES = {"H100": "discrete", "H200": "discrete", "GB10": "unified"}


@pytest.mark.gpu
@pytest.mark.falsifies("FT-BACKEND-SEL-006", covers=COVERS, mutants=["device-class-inverted"])
def test_real_device_class(evidence) -> None:
    name = torch.cuda.get_device_name(cuda_or_skip())
    expected = next((cls for part, cls in KNOWN_CLASSES.items() if part in name), None)
    if expected is None:
        pytest.skip(f"device {name!r} is none of {sorted(KNOWN_CLASSES)}: its class is not known independently")
    evidence("device_name", name)
    evidence("device_class", dispatch.classify_device(0))
    assert dispatch.classify_device(0) == expected
    assert dispatch.classify_device("cuda") == expected


def _distill_files(model_file) -> tuple[Path, Path]:
    return model_file("tiny-teacher"), model_file("tiny-student")


@pytest.mark.falsifies("FT-BACKEND-SEL-004", covers=COVERS, mutants=[
    "backend-env-ignored", "backend-env-over-flag", "backend-env-var-renamed"])
def test_environment_read_without_flag_and_flag_wins(model_file, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    teacher, student = _distill_files(model_file)
    cases = [("q4k-native", [], "q4k-native"),  # auto alone would choose dequant on this machine class
             ("q4k-native", ["--backend", "dequant"], "dequant")]
    for index, (from_env, flags, expected) in enumerate(cases):
        monkeypatch.setenv(ENV_VAR, from_env)
        run = pv_distill(capsys, monkeypatch, teacher, student, tmp_path / f"run{index}", "--steps", "1", *flags)
        assert run.code == 0, run.stderr
        assert run.backends == [expected] and run.teachers[0].backend == expected, (from_env, flags, run.backends)
        assert run.summary()["backend"]["backend"] == expected


@pytest.mark.falsifies("FT-BACKEND-SEL-004", covers=COVERS, mutants=[
    "backend-env-ignored", "backend-env-var-renamed", "backend-env-unset-not-auto"])
def test_environment_value_is_the_override_and_unset_or_empty_means_auto(monkeypatch: pytest.MonkeyPatch) -> None:
    read = dispatch.backend_override_from_env
    assert read({}) == "auto" and read({ENV_VAR: ""}) == "auto"
    for value in (*VALID, " Dequant ", "cuda"):  # handed on as given: the decision validates it
        assert read({ENV_VAR: value}) == value
    assert read({"DISTILL_BACKEND": "dequant"}) == "auto"  # only the documented name is read
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert read() == "auto"
    monkeypatch.setenv(ENV_VAR, "q4k-native")
    assert read() == "q4k-native"


BACKEND_NAME = re.compile(r"\b(dequant|q4k-native)\b")
STEP_MARK = "-- a training step starts --"


@pytest.mark.falsifies("FT-BACKEND-SEL-005", covers=COVERS, mutants=["start-line-missing", "start-line-every-step"])
def test_start_line_printed_once_before_the_first_step(model_file, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    teacher, student = _distill_files(model_file)
    monkeypatch.delenv(ENV_VAR, raising=False)
    step = train._step

    def marked_step(*args, **kwargs):
        print(STEP_MARK, flush=True)
        return step(*args, **kwargs)

    monkeypatch.setattr(train, "_step", marked_step)
    reasons = []
    for index, (flags, expected) in enumerate([([], "dequant"), (["--backend", "q4k-native"], "q4k-native")]):
        run = pv_distill(capsys, monkeypatch, teacher, student, tmp_path / f"run{index}", "--steps", "2", *flags)
        assert run.code == 0, run.stderr
        named = [line for line in run.stdout if BACKEND_NAME.search(line)]
        assert len(named) == 1, run.stdout
        (line,) = named
        reason = run.summary()["backend"]["reason"]
        assert expected in line and reason and reason in line, (line, reason)
        assert run.stdout.index(line) < run.stdout.index(STEP_MARK), run.stdout
        assert run.stdout.count(STEP_MARK) == 2
        reasons.append(reason)
    assert reasons[0] != reasons[1]  # the reason says why: auto's rule differs from an explicit request
