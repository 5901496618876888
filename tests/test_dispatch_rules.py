"""Teacher backend selection: overrides, auto rules, environment, device class, start line."""

from __future__ import annotations

import types

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from distill import dispatch
from distill.dispatch import (
    DEQUANT_RESERVE_BYTES,
    ENV_VAR,
    VALID_OVERRIDES,
    BackendDecision,
    backend_override_from_env,
    classify_device,
    decide_teacher_backend,
    format_start_line,
    select_teacher_backend,
)
from distill.errors import BackendSelectionError, InsufficientMemoryError

GIB = 1024**3
device_classes = st.sampled_from(["unified", "discrete"])
byte_counts = st.integers(min_value=0, max_value=1 << 42)


@given(device_classes, st.booleans(), byte_counts, byte_counts)
def test_explicit_dequant_always_wins(device_class, quantized, dequant_bytes, free_bytes):
    decision = decide_teacher_backend("dequant", device_class, quantized, dequant_bytes, free_bytes)
    assert decision == BackendDecision("dequant", "requested explicitly")


@given(device_classes, byte_counts, byte_counts)
def test_explicit_q4k_native_always_wins_for_a_quantized_teacher(device_class, dequant_bytes, free_bytes):
    assert select_teacher_backend("q4k-native", device_class, True, dequant_bytes, free_bytes) == "q4k-native"


@given(device_classes, byte_counts, byte_counts)
def test_q4k_native_for_an_unquantized_teacher_is_refused(device_class, dequant_bytes, free_bytes):
    with pytest.raises(BackendSelectionError, match="needs a quantized teacher"):
        select_teacher_backend("q4k-native", device_class, False, dequant_bytes, free_bytes)


@pytest.mark.parametrize("value", ["cuda", "Q4K", "DEQUANT", " dequant", "dequant ", "  ", "q4k_native", "none"])
def test_invalid_overrides_are_refused_listing_the_valid_ones(value):
    with pytest.raises(BackendSelectionError) as err:
        select_teacher_backend(value, "discrete", True, 1, 1 << 40)
    message = str(err.value)
    assert repr(value) in message
    assert all(valid in message for valid in VALID_OVERRIDES)


def test_unknown_device_class_is_refused():
    with pytest.raises(BackendSelectionError, match="device class 'cpu'"):
        select_teacher_backend("auto", "cpu", True, 1, 1)


@given(st.sampled_from(["auto", None, ""]), device_classes, st.booleans(), byte_counts, byte_counts,
       st.one_of(st.none(), byte_counts))
def test_auto_rule(override, device_class, quantized, dequant_bytes, free_bytes, native_bytes):
    room = free_bytes - DEQUANT_RESERVE_BYTES
    if dequant_bytes <= room:
        expected = "dequant"
    elif quantized and (native_bytes is None or native_bytes <= room):
        expected = "q4k-native"
    else:
        with pytest.raises(InsufficientMemoryError, match=str(free_bytes)):
            select_teacher_backend(override, device_class, quantized, dequant_bytes, free_bytes, native_bytes)
        return
    assert select_teacher_backend(override, device_class, quantized, dequant_bytes, free_bytes, native_bytes) == expected


@given(device_classes, st.booleans(), byte_counts, byte_counts, byte_counts)
def test_more_free_memory_never_moves_auto_to_q4k_native(device_class, quantized, dequant_bytes, f1, extra):
    if dequant_bytes <= f1 - DEQUANT_RESERVE_BYTES:
        assert select_teacher_backend("auto", device_class, quantized, dequant_bytes, f1) == "dequant"
        assert select_teacher_backend("auto", device_class, quantized, dequant_bytes, f1 + extra) == "dequant"


@pytest.mark.parametrize(
    "device_class, quantized, dequant_gib, free_gib, backend, reason",
    [
        ("unified", True, 28, 24, "q4k-native", "free system memory"),  # a 24 GB host: 28 GB does not fit
        ("unified", True, 28, 120, "dequant", "fits"),  # a 128 GB unified host
        ("discrete", False, 28, 40, "dequant", "no quantized weights"),
        ("discrete", True, 15, 80, "dequant", "fits"),
        ("discrete", True, 15, 19, "dequant", "fits"),  # exactly at the reserve boundary
        ("discrete", True, 15, 18.9, "q4k-native", "does not fit"),
        ("discrete", True, 15, 16, "q4k-native", "does not fit"),  # fits raw, not with the reserve
    ],
)
def test_auto_cases_and_reasons(device_class, quantized, dequant_gib, free_gib, backend, reason):
    decision = decide_teacher_backend("auto", device_class, quantized, int(dequant_gib * GIB), int(free_gib * GIB))
    assert decision.backend == backend
    assert decision.reason.startswith("auto: ") and reason in decision.reason


def test_reserve_is_the_documented_four_gib():
    assert DEQUANT_RESERVE_BYTES == 4 * GIB
    assert "4 GiB" in dispatch.__doc__


@pytest.mark.parametrize(
    "environ, expected",
    [({}, "auto"), ({ENV_VAR: ""}, "auto"), ({ENV_VAR: "q4k-native"}, "q4k-native"), ({ENV_VAR: "bogus"}, "bogus")],
)
def test_override_from_environment(environ, expected):
    assert backend_override_from_env(environ) == expected


def test_override_from_process_environment(monkeypatch):
    monkeypatch.setenv(ENV_VAR, "dequant")
    assert backend_override_from_env() == "dequant"
    monkeypatch.delenv(ENV_VAR)
    assert backend_override_from_env() == "auto"


def test_start_line_names_backend_and_reason():
    decision = decide_teacher_backend("auto", "unified", True, GIB, 8 * GIB)
    assert format_start_line(decision) == (
        "teacher backend: dequant (auto: dequantized copy fits (dequantized teacher 1.00 GiB, "
        "free system memory 8.00 GiB minus reserve 4 GiB))")
    assert format_start_line(BackendDecision("q4k-native", "requested explicitly")) == (
        "teacher backend: q4k-native (requested explicitly)"
    )


@pytest.mark.parametrize("integrated, expected", [(1, "unified"), (0, "discrete"), (True, "unified")])
@pytest.mark.parametrize("index, queried", [(0, 0), (3, 3), ("cuda:2", 2), ("cuda", 0)])
def test_classify_device_reads_is_integrated(monkeypatch, integrated, expected, index, queried):
    seen = []

    def fake_properties(i):
        seen.append(i)
        return types.SimpleNamespace(is_integrated=integrated, name="Some GPU")

    monkeypatch.setattr(torch.cuda, "get_device_properties", fake_properties)
    assert classify_device(index) == expected
    assert seen == [queried]


def test_classify_cpu_is_unified():
    assert classify_device("cpu") == "unified"
    assert classify_device(torch.device("cpu")) == "unified"


def test_classify_unknown_device_type_is_refused():
    with pytest.raises(BackendSelectionError, match="meta"):
        classify_device("meta")


@pytest.mark.gpu
def test_classify_real_cuda_device_matches_its_properties():
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    properties = torch.cuda.get_device_properties(0)
    assert classify_device(0) == ("unified" if properties.is_integrated else "discrete")
    if "H100" in properties.name or "H200" in properties.name:
        assert classify_device(0) == "discrete"
