"""pv-distill's falsifiers: their mutants (``ft_mutants``) and the model files they run on.

The falsifier protocol itself (binding check, ``--pv-vacuity``, the kill rule) is
pv's pytest plugin ``pv.plugins.falsifiers``; this conftest declares the
project's side of it: the mutants of ``distill`` and the error with which
``distill`` refuses bad input (raising it kills a mutant).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from filelock import FileLock

import ft_mutants
from distill.errors import DistillError
from pv.plugins.falsifiers import Mutant


def pytest_pv_mutants(config: pytest.Config) -> dict[str, Mutant]:
    """The mutants of ``distill`` registered with ``ft_mutants.mutant``."""
    return ft_mutants.MUTANTS


def pytest_pv_kill_exceptions(config: pytest.Config) -> tuple[type[BaseException], ...]:
    """A refusal by the code under test kills a mutant as a failed assertion does."""
    return (DistillError,)


@pytest.fixture(scope="session")
def vocab_dir(pytestconfig: pytest.Config) -> Path:
    """The real vocabulary files: ``$PV_SHARED_DIR/vocab``, or ``../shared/vocab`` beside the checkout (the
    one a clean room was exported from: ``$PV_CHECKOUT``)."""
    checkout = Path(os.environ.get("PV_CHECKOUT", pytestconfig.rootpath))
    path = Path(os.environ.get("PV_SHARED_DIR", checkout.parent / "shared")) / "vocab"
    if not path.is_dir():
        pytest.fail(f"real vocabulary files not found at {path} (set PV_SHARED_DIR)", pytrace=False)
    return path


#: name -> (preset, quantization, real vocabulary or None, seed, embedding rows, device that draws
#: the weights) of the models the falsifiers run on: the real row counts of Qwen2.5-7B/0.5B with the
#: real qwen2 tokens on tiny shapes; a tiny pair (a Q4_K_M teacher with 128 padding rows more than
#: its f32 student) and a bf16 teacher of the same shape; and, for the GPU, the real shapes of Qwen2.5-Coder-7B (Q4_K) and 0.5B (F32
#: file, trained in BF16), drawn on the GPU (minutes on a CPU, seconds there)
MODEL_FILES: dict[str, tuple[str, str, str | None, int, int, str]] = {
    "qwen2-teacher": ("tiny", "q4_k_m", "ggml-vocab-qwen2.gguf", 11, 152064, "cpu"),
    "qwen2-student": ("tiny", "f32", "ggml-vocab-qwen2.gguf", 12, 151936, "cpu"),
    "tiny-teacher": ("tiny", "q4_k_m", None, 21, 1152, "cpu"),
    "tiny-student": ("tiny", "f32", None, 22, 1024, "cpu"),
    "tiny-teacher-bf16": ("tiny", "bf16", None, 23, 1152, "cpu"),
    "7b-teacher": ("qwen2.5-coder-7b", "q4_k", None, 31, 152064, "cuda"),
    "0.5b-student": ("qwen2.5-coder-0.5b", "f32", None, 32, 151936, "cuda"),
}


def _write_model(path: Path, preset: str, quant: str, vocab: Path | None, seed: int, rows: int, device: str) -> None:
    from distill import synth
    from distill.qwen2_gguf import write_gguf

    if device == "cpu":
        synth.make_model_file(path, preset, quant, vocab, seed, rows)
        return
    # make_model_file draws on the CPU; the same file, with weights drawn on ``device``:
    config = dataclasses.replace(synth.PRESETS[preset], vocab_size=rows)
    tokenizer = synth.padded_tokenizer(synth.placeholder_tokenizer(), rows, "no vocabulary file")
    write_gguf(path, config, synth.synth_tensors(config, quant, seed, device), tokenizer)


@pytest.fixture(scope="session")
def model_file(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Callable[[str], Path]:
    """``model_file(name)``: the GGUF file of ``MODEL_FILES[name]``, written once per run.

    Under xdist the workers of one run share the folder (a file lock lets one build each file);
    under ``pv mutate`` all its runs share ``$PV_MUTATE_CACHE``: the models are test inputs,
    built once by the unmutated code.
    """
    base = tmp_path_factory.getbasetemp()
    cache = os.environ.get("PV_MUTATE_CACHE")
    folder = Path(cache) if cache else (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)
    folder = folder / "ft-models"
    folder.mkdir(exist_ok=True)

    def get(name: str) -> Path:
        preset, quant, vocab, seed, rows, device = MODEL_FILES[name]
        vocab_path = None if vocab is None else request.getfixturevalue("vocab_dir") / vocab
        path = folder / f"{name}.gguf"
        with FileLock(str(path) + ".lock"):
            if not path.exists():
                _write_model(path, preset, quant, vocab_path, seed, rows, device)
        return path

    return get
