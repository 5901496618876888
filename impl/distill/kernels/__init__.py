"""Triton kernels of the distillation stack, each next to the PyTorch path it must equal.

- ``kd_loss``: the KD loss, forward and backward fused, one pass over the logits
  per direction with an online softmax (``distill.kd`` is the reference).
- ``dequant``: Q4_K, Q6_K, Q5_0 and Q8_0 blocks to bf16/f16/f32, bit-exact with
  ``distill.quant`` (and so with ``gguf.quants.dequantize``).

``runtime`` decides where they can run: CUDA tensors, or CPU tensors through
Triton's interpreter on a machine without CUDA. It is imported first, so that
the interpreter switch is set before any kernel is defined (Triton reads it then).
"""

from distill.kernels import runtime  # noqa: F401
