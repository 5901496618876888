"""Independent float64 references (numpy, not torch) that the falsifiers compare against."""

from __future__ import annotations

import numpy as np
import torch


def as64(x: torch.Tensor) -> np.ndarray:
    """A tensor's values as a float64 numpy array (exact for float16/bfloat16/float32)."""
    return x.detach().to("cpu", torch.float64).numpy()


def log_softmax64(x: np.ndarray) -> np.ndarray:
    """log softmax over the last axis in float64."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


def softmax64(x: np.ndarray) -> np.ndarray:
    return np.exp(log_softmax64(x))


def _valid(shape: tuple[int, ...], mask: np.ndarray | None) -> np.ndarray:
    return np.ones(shape, dtype=bool) if mask is None else mask.astype(bool)


def kd_loss64(s: np.ndarray, t: np.ndarray, temperature: float, mask: np.ndarray | None = None) -> float:
    """T^2/n * sum over valid positions of KL(softmax(t/T) || softmax(s/T)), 0 log 0 = 0."""
    valid = _valid(s.shape[:-1], mask)
    log_p, log_q = log_softmax64(t[valid] / temperature), log_softmax64(s[valid] / temperature)
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):  # 0 * -inf where p = 0: those terms are taken as 0 below
        terms = np.where(p > 0, p * (log_p - log_q), 0.0)
    return float(temperature**2 / valid.sum() * terms.sum())


def kd_grad64(s: np.ndarray, t: np.ndarray, temperature: float, mask: np.ndarray | None = None) -> np.ndarray:
    """d loss / d s = T (softmax(s/T) - softmax(t/T)) / n at valid positions, 0 elsewhere."""
    valid = _valid(s.shape[:-1], mask)
    grad = temperature * (softmax64(s / temperature) - softmax64(t / temperature)) / valid.sum()
    return np.where(valid[..., None], grad, 0.0)
