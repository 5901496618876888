"""A Qwen2 decoder in one readable file: RMSNorm, NeoX rope, GQA attention, SwiGLU MLP.

Weights come by their llama.cpp GGUF names (``blk.N.attn_q.weight``...), in torch
order ``(out, in)``. Linear layers are either ordinary dense parameters or
``QuantLinear``: raw quantized blocks kept as a buffer and expanded to the
compute dtype on every forward.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from distill.errors import DistillError
from distill.quant import TensorData, check_scales, dequantize, raw_shape


@dataclass(frozen=True)
class Qwen2Config:
    """The shape of a Qwen2 model (the ``qwen2.*`` keys of a GGUF file)."""

    vocab_size: int
    hidden_size: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    ffn_size: int
    rms_eps: float = 1e-6
    rope_theta: float = 1e6
    context_length: int = 32768
    tied_embeddings: bool = True

    def __post_init__(self) -> None:
        for name in ("vocab_size", "hidden_size", "n_layers", "n_heads", "n_kv_heads", "ffn_size", "context_length"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise DistillError(f"Qwen2Config.{name} must be a positive integer, got {value!r}")
        if self.hidden_size % self.n_heads or self.head_dim % 2:
            raise DistillError(
                f"hidden_size {self.hidden_size} must split into {self.n_heads} heads of an even size"
            )
        if self.n_heads % self.n_kv_heads:
            raise DistillError(f"n_heads {self.n_heads} is not a multiple of n_kv_heads {self.n_kv_heads}")
        if not (self.rms_eps > 0 and self.rope_theta > 0):
            raise DistillError(f"rms_eps and rope_theta must be positive, got {self.rms_eps}, {self.rope_theta}")

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.n_heads

    def tensor_shapes(self) -> dict[str, tuple[int, ...]]:
        """Every tensor of the model by GGUF name, in file order, with its torch-order shape."""
        h, kv, ffn = self.hidden_size, self.n_kv_heads * self.head_dim, self.ffn_size
        shapes: dict[str, tuple[int, ...]] = {"token_embd.weight": (self.vocab_size, h)}
        for i in range(self.n_layers):
            b = f"blk.{i}."
            shapes.update({
                b + "attn_norm.weight": (h,),
                b + "attn_q.weight": (h, h), b + "attn_q.bias": (h,),
                b + "attn_k.weight": (kv, h), b + "attn_k.bias": (kv,),
                b + "attn_v.weight": (kv, h), b + "attn_v.bias": (kv,),
                b + "attn_output.weight": (h, h),
                b + "ffn_norm.weight": (h,),
                b + "ffn_gate.weight": (ffn, h),
                b + "ffn_up.weight": (ffn, h),
                b + "ffn_down.weight": (h, ffn),
            })
        shapes["output_norm.weight"] = (h,)
        if not self.tied_embeddings:
            shapes["output.weight"] = (self.vocab_size, h)
        return shapes


def check_tensors(config: Qwen2Config, tensors: Mapping[str, TensorData]) -> list[str]:
    """Problems of ``tensors`` as the weights of ``config`` (missing names, wrong shapes or byte sizes)."""
    problems = []
    for name, shape in config.tensor_shapes().items():
        tensor = tensors.get(name)
        if tensor is None:
            problems.append(f"tensor {name!r} is missing (expected shape {shape})")
        elif tuple(tensor.shape) != shape:
            problems.append(f"tensor {name!r} has shape {tuple(tensor.shape)}, expected {shape}")
        elif tuple(tensor.raw.shape) != raw_shape(shape, tensor.qtype):
            problems.append(
                f"tensor {name!r} ({tensor.qtype}) has {tuple(tensor.raw.shape)} bytes, "
                f"expected {raw_shape(shape, tensor.qtype)}"
            )
    return problems


def _wide(dtype: torch.dtype) -> torch.dtype:
    """The dtype norms and rope compute in: at least float32."""
    return torch.promote_types(dtype, torch.float32)


class RMSNorm(nn.Module):
    """Root-mean-square normalisation with a learned scale, computed in at least float32."""

    def __init__(self, weight: torch.Tensor, eps: float) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = x.to(_wide(x.dtype))
        wide = wide * torch.rsqrt(wide.pow(2).mean(-1, keepdim=True) + self.eps)
        return wide.to(x.dtype) * self.weight


class QuantLinear(nn.Module):
    """``y = x @ W.T + b`` with W kept as raw quantized blocks, expanded in every forward."""

    def __init__(self, tensor: TensorData, bias: torch.Tensor | None, dtype: torch.dtype, device: str | torch.device) -> None:
        super().__init__()
        self.qtype = tensor.qtype
        self.out_features, self.in_features = tensor.shape
        raw = tensor.raw.to(device)
        check_scales(raw, self.qtype)
        self.register_buffer("raw", raw)
        self.bias = None if bias is None else nn.Parameter(bias)
        self.compute_dtype = dtype
        #: set by a frozen teacher: one buffer shared by its layers that each forward expands into
        self.scratch: torch.Tensor | None = None

    def weight(self) -> torch.Tensor:
        """The expanded weight ``(out, in)`` in the compute dtype (a view of ``scratch`` when set)."""
        shape = (self.out_features, self.in_features)
        out = None if self.scratch is None else self.scratch[: shape[0] * shape[1]].view(shape)
        return dequantize(self.raw, self.qtype, check=False, dtype=self.compute_dtype, out=out)

    def rows(self, index: torch.Tensor) -> torch.Tensor:
        """Rows ``index`` of the weight (an embedding lookup), without expanding the rest."""
        return dequantize(self.raw[index], self.qtype, check=False).to(self.compute_dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight(), self.bias)

    def extra_repr(self) -> str:
        return f"{self.in_features} -> {self.out_features}, {self.qtype}"


def rope_tables(
    seq: int, head_dim: int, theta: float, device: torch.device, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin ``[seq, head_dim]`` of NeoX rope: frequency i pairs dims i and i + head_dim/2."""
    dtype = _wide(dtype)
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device, dtype=dtype) / head_dim)
    angles = torch.outer(torch.arange(seq, device=device, dtype=dtype), inv_freq)
    angles = torch.cat([angles, angles], dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate the two halves of each head of ``x`` by the rotary angles (``cos``, ``sin``)."""
    wide = x.to(cos.dtype)
    first, second = wide.chunk(2, dim=-1)
    rotated = torch.cat([-second, first], dim=-1)
    return (wide * cos + rotated * sin).to(x.dtype)


class Attention(nn.Module):
    """Causal grouped-query self-attention with rotary positions (projections given as modules)."""

    def __init__(self, config: Qwen2Config, q: nn.Module, k: nn.Module, v: nn.Module, o: nn.Module) -> None:
        super().__init__()
        self.n_heads, self.n_kv_heads, self.head_dim = config.n_heads, config.n_kv_heads, config.head_dim
        self.q, self.k, self.v, self.o = q, k, v, o

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        batch, seq, _ = x.shape
        q = self.q(x).view(batch, seq, self.n_heads, self.head_dim).transpose(1, 2)
        k = self.k(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = self.v(x).view(batch, seq, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        group = self.n_heads // self.n_kv_heads
        if group > 1:  # query head j reads key/value head j // group
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.o(out.transpose(1, 2).reshape(batch, seq, self.n_heads * self.head_dim))


class MLP(nn.Module):
    """SwiGLU feed-forward: ``down(silu(gate(x)) * up(x))``."""

    def __init__(self, gate: nn.Module, up: nn.Module, down: nn.Module) -> None:
        super().__init__()
        self.gate, self.up, self.down = gate, up, down

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(F.silu(self.gate(x)) * self.up(x))


class Block(nn.Module):
    """One pre-norm transformer layer: attention, then the MLP, each with a residual."""

    def __init__(self, attn_norm: RMSNorm, attn: Attention, ffn_norm: RMSNorm, mlp: MLP) -> None:
        super().__init__()
        self.attn_norm, self.attn, self.ffn_norm, self.mlp = attn_norm, attn, ffn_norm, mlp

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x), cos, sin)
        return x + self.mlp(self.ffn_norm(x))


class Qwen2(nn.Module):
    """``forward(input_ids [B, S]) -> logits [B, S, vocab]`` in the compute dtype."""

    def __init__(
        self, config: Qwen2Config, token_embd: nn.Module, blocks: list[Block], output_norm: RMSNorm, output: nn.Module | None
    ) -> None:
        super().__init__()
        self.config = config
        self.token_embd = token_embd
        self.blocks = nn.ModuleList(blocks)
        self.output_norm = output_norm
        self.output = output  # None: tied to token_embd

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """The embedding rows of ``input_ids`` (dequantized rows when the table is quantized)."""
        if isinstance(self.token_embd, QuantLinear):
            return self.token_embd.rows(input_ids)
        return self.token_embd(input_ids)

    def head(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of the final hidden states ``x``: the output matrix, or the embedding when tied."""
        if self.output is not None:
            return self.output(x)
        if isinstance(self.token_embd, QuantLinear):
            return self.token_embd(x)
        return F.linear(x, self.token_embd.weight)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        if input_ids.dim() != 2:
            raise DistillError(f"input_ids must be [batch, seq], got shape {tuple(input_ids.shape)}")
        x = self.embed(input_ids)
        cos, sin = rope_tables(input_ids.shape[1], self.config.head_dim, self.config.rope_theta, x.device, x.dtype)
        for block in self.blocks:
            x = block(x, cos, sin)
        return self.head(self.output_norm(x))


def build_model(
    config: Qwen2Config,
    tensors: Mapping[str, TensorData],
    *,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    keep_quantized: bool = False,
) -> Qwen2:
    """A Qwen2 with the weights ``tensors`` (by GGUF name) as ``dtype`` parameters on ``device``.

    ``keep_quantized``: matrices stored in a block-quantized type stay as raw
    blocks (``QuantLinear``) and are expanded in each forward; everything else,
    and every matrix otherwise, becomes a dense parameter. A missing
    ``output.weight`` of a tied model reuses ``token_embd.weight``.
    """
    problems = check_tensors(config, tensors)
    if problems:
        raise DistillError("the weights do not fit the config: " + "; ".join(problems[:5]))

    def param(name: str) -> nn.Parameter:
        return nn.Parameter(tensors[name].dequantize(device=device, dtype=dtype))

    def linear(name: str, bias: str | None = None) -> nn.Module:
        tensor = tensors[name + ".weight"]
        b = param(name + ".bias").data if bias else None
        if keep_quantized and tensor.qtype.startswith("Q"):
            return QuantLinear(tensor, b, dtype, device)
        layer = nn.Linear(tensor.shape[1], tensor.shape[0], bias=bias is not None, device="meta")
        layer.weight = param(name + ".weight")
        if b is not None:
            layer.bias = nn.Parameter(b)
        return layer

    def norm(name: str) -> RMSNorm:
        return RMSNorm(param(name).data, config.rms_eps)

    blocks = []
    for i in range(config.n_layers):
        p = f"blk.{i}."
        attn = Attention(config, linear(p + "attn_q", "bias"), linear(p + "attn_k", "bias"),
                         linear(p + "attn_v", "bias"), linear(p + "attn_output"))
        mlp = MLP(linear(p + "ffn_gate"), linear(p + "ffn_up"), linear(p + "ffn_down"))
        blocks.append(Block(norm(p + "attn_norm.weight"), attn, norm(p + "ffn_norm.weight"), mlp))

    embd = tensors["token_embd.weight"]
    if keep_quantized and embd.qtype.startswith("Q"):
        token_embd: nn.Module = QuantLinear(embd, None, dtype, device)
    else:
        # from_pretrained skips the random initialisation (which would import torch._dynamo).
        token_embd = nn.Embedding.from_pretrained(param("token_embd.weight").data, freeze=False)
    output = None if config.tied_embeddings else linear("output")
    return Qwen2(config, token_embd, blocks, norm("output_norm.weight"), output)
