"""Distributions the models score data with, where torch's own are slower than they need be."""

from __future__ import annotations

import torch
import pyro.distributions as dist

__all__ = ["BernoulliLogits"]


class _BernoulliLogProb(torch.autograd.Function):
    """log p(x | l) = x l - softplus(l), and its gradient x - sigmoid(l), in one pass each way.

    softplus(l) = max(l, 0) + log(1 + exp(-|l|)) avoids ``log1p``, which this project's CPU torch
    builds run unvectorised (about 10x slower than ``log``; docs/PERFORMANCE.md). ``1 + exp(-|l|)``
    lies in (1, 2], so ``log`` loses at most exp(-|l|) < 1.2e-7 of ``log1p``'s value, and only
    where |l| > 16, below float32's resolution of the term beside it.

    Each step after the first works in place on the tensor the step before allocated: under
    enumeration the logits are (slots x batch x pixels), and on the CPU a fresh tensor of that size
    per operation costs more than the arithmetic (about half this function's time; the values are
    the same to the bit).
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, value: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.save_for_backward(logits, value)
        softplus = logits.abs().neg_().exp_().add_(1).log_().add_(logits.clamp(min=0))
        return softplus.neg_().addcmul_(value, logits)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        logits, value = ctx.saved_tensors
        # Not sigmoid(...).neg_(): sigmoid's own backward would need its output if this backward
        # were itself differentiated.
        return (value - torch.sigmoid(logits)).mul_(grad), None


class BernoulliLogits(dist.Bernoulli):
    """Pyro's Bernoulli (given ``logits``) with a faster ``log_prob``; grey levels in [0, 1] are
    scored as soft targets, as ``binary_cross_entropy_with_logits`` does."""

    def log_prob(self, value: torch.Tensor) -> torch.Tensor:
        if self._validate_args:
            self._validate_sample(value)
        logits, value = torch.broadcast_tensors(self.logits, value)
        return _BernoulliLogProb.apply(logits, value.to(logits.dtype))
