"""The optimizer and the learning-rate schedule, for the warm start and the RL loop alike.

AdamW over the trainable parameters only (with LoRA: the adapters, so its state is theirs alone),
betas (0.9, beta2). The schedule is a linear warmup to the peak, then the peak (constant) or a
cosine decay to 10 % of it at the last step. Left out: other optimizers, per-group learning rates.
"""

import math

import torch


def make_optimizer(policy, lr, weight_decay, beta2=0.95):
    """AdamW over the parameters that train (LoRA: the adapters; AdamW state for them alone)."""
    trainable = [p for p in policy.parameters() if p.requires_grad]
    return torch.optim.AdamW(trainable, lr=lr, weight_decay=weight_decay, betas=(0.9, beta2))


def scheduled_lr(peak: float, step: int, warmup: int, steps: int, cosine: bool) -> float:
    """Linear warmup to `peak`, then `peak` (constant) or a cosine decay to 10 % of it at
    `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if not cosine:
        return peak
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))
