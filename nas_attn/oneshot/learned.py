"""Learned switch weights: per-stage architecture parameters trained beside the supernet's
weights (``mode: learned``, docs/one-shot.md; the choice of estimator is in docs/decisions.md,
issue 23).

Each stage ``s`` holds logits over its options (``Supernet.arch_logits()[s]``, buffers saved
with the checkpoint); ``softmax(logits)`` is the stage's learned distribution over its switch
settings. Training (:func:`nas_attn.oneshot.train_supernet` with ``mode="learned"``) holds out
``arch_split`` of the training images for the architecture parameters and, per batch:

- **weights**: one path drawn from the learned distributions (stage by stage), trained on a
  batch of the other images with the recipe's optimiser, as SPOS trains its uniform path;
- **architecture**, spread evenly between the weight steps: one path drawn from the same
  distributions, its loss on a held-out batch (a forward, no augmentation, no gradient through
  the network) is the reward ``-loss``, and the logits take one REINFORCE step (Williams 1992;
  ProxylessNAS's estimator for a sampled single path, Cai et al., ICLR 2019, arXiv 1812.00332,
  section 3.2.1) with a moving-average baseline, by their own Adam (DARTS's settings: betas
  0.5 / 0.999, weight decay 1e-3, Liu et al., ICLR 2019, arXiv 1806.09055).

A held-out forward costs a third of a path pass (forward and backward), so its cost is counted
as such (``SupernetTraining.cost_epochs``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from nas_attn.config import check_float
from nas_attn.errors import ConfigError

FORWARD_SHARE = 1 / 3  # a forward's share of a forward + backward (a path pass)


@dataclass(frozen=True)
class LearnedSettings:
    """The architecture parameters' training (``mode: learned``)."""

    arch_lr: float = 3e-3  # Adam's step; the top of DARTS's range (3e-4)
    arch_split: float = 0.25  # share of the training images held out for the logits
    baseline_decay: float = 0.9  # the reward's moving average (the REINFORCE baseline)

    def __post_init__(self) -> None:
        check_float(self.arch_lr, "learned.arch_lr", low=0.0, low_open=True, high=1.0)
        check_float(self.arch_split, "learned.arch_split", low=0.0, low_open=True, high=0.9)
        check_float(self.baseline_decay, "learned.baseline_decay", low=0.0, high=0.999)


def probabilities(logits: Sequence[torch.Tensor]) -> list[list[float]]:
    """Each stage's learned distribution over its options."""
    return [torch.softmax(lg.detach().float(), 0).tolist() for lg in logits]


def sample_path(logits: Sequence[torch.Tensor], rng: random.Random) -> tuple[int, ...]:
    """One path, each stage's option drawn from ``softmax(logits[s])``."""
    return tuple(rng.choices(range(len(p)), weights=p)[0] for p in probabilities(logits))


def split_training(n: int, batch_size: int, settings: LearnedSettings,
                   gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the training images for the weights and for the logits (a fixed draw);
    ConfigError when either side holds less than one batch."""
    n_arch = round(n * settings.arch_split)
    if n_arch < batch_size or n - n_arch < batch_size:
        raise ConfigError("learned.arch_split", settings.arch_split,
                          f"leaves {n_arch} held-out and {n - n_arch} training images of "
                          f"{n}; each side needs at least one batch ({batch_size})")
    perm = torch.randperm(n, generator=gen)
    return perm[n_arch:], perm[:n_arch]


def arch_step_due(step_in_epoch: int, weight_steps: int, arch_steps: int) -> bool:
    """Whether an architecture step follows weight step ``step_in_epoch`` (0-based): the
    epoch's ``arch_steps`` spread evenly over its ``weight_steps``."""
    before = step_in_epoch * arch_steps // weight_steps
    return (step_in_epoch + 1) * arch_steps // weight_steps > before


class ArchUpdater:
    """REINFORCE on the stages' logits with a moving-average baseline and Adam (see the
    module docstring). ``fixed`` stages are left out of the update."""

    def __init__(self, logits: Sequence[torch.Tensor], settings: LearnedSettings,
                 fixed: Sequence[int] = ()) -> None:
        self.logits = list(logits)
        self.fixed = set(fixed)
        self.decay = settings.baseline_decay
        self.baseline: float | None = None
        for lg in self.logits:
            lg.requires_grad_(True)
        self.opt = torch.optim.Adam(self.logits, lr=settings.arch_lr, betas=(0.5, 0.999),
                                    weight_decay=1e-3)

    def step(self, path: Sequence[int], reward: float) -> None:
        if not math.isfinite(reward):
            return  # a diverged batch teaches the distribution nothing
        if self.baseline is None:
            self.baseline = reward
        advantage = reward - self.baseline
        self.baseline = self.decay * self.baseline + (1 - self.decay) * reward
        log_p = sum(torch.log_softmax(lg, 0)[o] for s, (lg, o) in
                    enumerate(zip(self.logits, path, strict=True)) if s not in self.fixed)
        self.opt.zero_grad(set_to_none=True)
        if isinstance(log_p, torch.Tensor):
            (-advantage * log_p).backward()
            self.opt.step()

    def close(self) -> None:
        for lg in self.logits:
            lg.grad = None
            lg.requires_grad_(False)
