"""Frozen teacher providers: one interface, two backends.

- ``dequant``: every quantized weight is expanded once, at load, into the
  compute dtype (bf16 or f32), and the forward runs ordinary dense matmuls.
- ``q4k-native``: the Q4_K/Q6_K (and other quantized) blocks stay resident as
  they are in the file; each linear layer expands its weight in its forward
  (``distill.model.QuantLinear``; the Triton kernel on CUDA, PyTorch elsewhere)
  into one scratch buffer that all layers share, allocated once at load for the
  largest layer in the compute dtype, then runs the ordinary matmul. Resident:
  the quantized bytes, the plain weights, the scratch and the activations.

Both compute the same function of the same weights. A teacher is frozen: its
logits are computed without autograd, it exposes no parameters, and asking
to train it raises FrozenTeacherError. Vocabulary alignment happens here, at the
provider boundary: ``logits`` hands out only the first ``vocab_size`` (the
effective vocabulary) entries, before anyone can apply a softmax.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path
from typing import NoReturn

import torch

from distill.errors import BackendSelectionError, FrozenTeacherError
from distill.model import QuantLinear, build_model
from distill.qwen2_gguf import GGUFModel, read_gguf
from distill.vocab import effective_vocab, truncate_logits

BACKENDS = ("dequant", "q4k-native")
PLAIN_QTYPES = ("F32", "F16", "BF16")


def _qtype(tensor) -> str:
    return str(getattr(tensor.qtype, "name", tensor.qtype))


def is_quantized(model: GGUFModel) -> bool:
    """Whether any weight of ``model`` is stored in a block-quantized type."""
    return any(_qtype(t) not in PLAIN_QTYPES for t in model.tensors.values())


def dequantized_bytes(model: GGUFModel, dtype: torch.dtype) -> int:
    """Bytes of all of ``model``'s weights expanded to ``dtype`` (what the dequant backend holds)."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    total = 0
    for tensor in model.tensors.values():
        n = 1
        for dim in tensor.shape:
            n *= dim
        total += n * itemsize
    return total


def _is_kept_quantized(tensor) -> bool:
    """Whether the q4k-native backend keeps ``tensor`` as blocks (as ``distill.model.build_model`` does)."""
    return _qtype(tensor).startswith("Q")


def scratch_elements(model: GGUFModel) -> int:
    """Weights of the largest matrix the q4k-native backend keeps quantized (its scratch buffer's size)."""
    return max((math.prod(t.shape) for t in model.tensors.values() if _is_kept_quantized(t)), default=0)


def native_resident_bytes(model: GGUFModel, dtype: torch.dtype) -> int:
    """Bytes the q4k-native teacher holds: blocks as stored, other weights in ``dtype``, and the scratch."""
    itemsize = torch.empty((), dtype=dtype).element_size()
    total = scratch_elements(model) * itemsize
    for tensor in model.tensors.values():
        total += int(tensor.nbytes) if _is_kept_quantized(tensor) else math.prod(tensor.shape) * itemsize
    return total


def tensor_storage_bytes(tensors: Iterable[torch.Tensor]) -> int:
    """Bytes of the distinct storages behind ``tensors`` (shared storage counted once)."""
    storages: dict[tuple[str, int], int] = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        storages[(str(tensor.device), storage.data_ptr())] = storage.nbytes()
    return sum(storages.values())


class Teacher:
    """A frozen teacher: ``logits(input_ids) -> [B, S, vocab_size]`` without gradients."""

    def __init__(self, module: torch.nn.Module, backend: str, vocab_size: int, quantized_bytes: int,
                 scratch: torch.Tensor | None = None) -> None:
        module.eval()
        for tensor in module.parameters():
            tensor.requires_grad_(False)
        self._module = module
        self.backend = backend
        self.native_vocab_size = int(module.config.vocab_size)
        self.vocab_size = vocab_size
        self.quantized_bytes = quantized_bytes
        self._scratch = scratch

    @property
    def device(self) -> torch.device:
        """The device the teacher's weights live on."""
        return next(iter(self._tensors())).device

    def _tensors(self):
        yield from self._module.parameters()
        yield from self._module.buffers()

    def logits(self, input_ids: torch.Tensor) -> torch.Tensor:
        """Teacher logits over the effective vocabulary; no autograd graph is recorded."""
        with torch.no_grad():
            full = self._module(input_ids.to(self.device))
        return truncate_logits(full, self.vocab_size)

    def resident_bytes(self) -> int:
        """Bytes of tensor storage the teacher holds (weights and quantized blocks)."""
        return tensor_storage_bytes(self._tensors())

    def scratch_bytes(self) -> int:
        """Bytes of the q4k-native scratch buffer that the layers expand into (0 for dequant)."""
        return 0 if self._scratch is None else self._scratch.untyped_storage().nbytes()

    def _frozen(self, what: str) -> NoReturn:
        raise FrozenTeacherError(f"the teacher is frozen: {what} is not allowed (backend {self.backend})")

    def parameters(self, *args, **kwargs) -> NoReturn:
        """Refused: a teacher has no trainable parameters to give to an optimizer."""
        self._frozen("handing its parameters to an optimizer")

    def named_parameters(self, *args, **kwargs) -> NoReturn:
        """Refused, like :meth:`parameters`."""
        self._frozen("handing its parameters to an optimizer")

    def train(self, *args, **kwargs) -> NoReturn:
        """Refused: a teacher cannot be put in training mode."""
        self._frozen("train()")

    def requires_grad_(self, *args, **kwargs) -> NoReturn:
        """Refused: a teacher's weights never require gradients."""
        self._frozen("requires_grad_()")


def load_teacher(
    source: str | Path | GGUFModel,
    backend: str,
    *,
    target_vocab: int | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> Teacher:
    """Load a teacher from a GGUF file (or a read GGUFModel) with backend ``dequant`` or ``q4k-native``.

    ``target_vocab`` (the student's rows) sets the effective vocabulary; it is
    checked before any weight is loaded.
    """
    if backend not in BACKENDS:
        raise BackendSelectionError(f"unknown teacher backend {backend!r}; valid backends: {', '.join(BACKENDS)}")
    model = source if isinstance(source, GGUFModel) else read_gguf(source)
    vocab_size = effective_vocab(model.config.vocab_size, target_vocab)
    if backend == "q4k-native" and not is_quantized(model):
        raise BackendSelectionError(
            f"teacher backend 'q4k-native' needs a quantized teacher, but {model.path} has no quantized weights"
        )
    module = build_model(
        model.config, model.tensors, dtype=dtype, device=device, keep_quantized=backend == "q4k-native"
    )
    scratch = None
    if backend == "q4k-native":
        scratch = _share_scratch(module, scratch_elements(model), dtype, device)
    return Teacher(module, backend, vocab_size, model.quantized_bytes, scratch=scratch)


def _share_scratch(module: torch.nn.Module, elements: int, dtype: torch.dtype,
                   device: str | torch.device) -> torch.Tensor:
    """Give every quantized layer of ``module`` one scratch buffer of ``elements``, and return it.

    Safe for a frozen teacher only: each layer's expanded weight lives until the next
    layer's forward, which is all a matmul without autograd needs. The buffer is no
    weight: it is not among the module's tensors, and its contents change every forward.
    """
    scratch = torch.empty(elements, dtype=dtype, device=device)
    for layer in module.modules():
        if isinstance(layer, QuantLinear):
            layer.scratch = scratch
    return scratch
