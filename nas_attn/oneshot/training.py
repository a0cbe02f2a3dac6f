"""Training a supernet, and scoring architectures with the weights they inherit.

Sampling (pure functions over the stages' option counts, tested directly):

- ``spos`` (Guo et al., arXiv 1904.00420): one path per batch, each stage's option drawn
  uniformly from that stage's options (every option of a stage equally likely, so a plain stage
  is drawn as often as each module-position choice; the space's ``suggest`` draws per decision).
- ``fairnas`` (Chu et al., arXiv 1907.01845, strict fairness): ``m`` paths per step, ``m`` the
  largest option count of a stage; stage ``s``'s column of the ``m`` paths is a random
  permutation of its options (repeated and cut to ``m`` when it has fewer), so every option of
  every stage is trained once per step (a stage with fewer options: ``m // n`` or ``m // n + 1``
  times). The ``m`` paths' gradients are averaged (FairNAS sums them; the mean keeps the
  recipe's step size) before one optimiser step.
- ``learned``: per-stage architecture logits trained beside the weights; each weight step's
  path is drawn from their softmax, the logits learn on held-out training images
  (:mod:`nas_attn.oneshot.learned`).

Training follows :mod:`nas_attn.train`'s recipe (optimiser, cosine schedule with warm-up,
batch, augmentation, per-step learning rate) through its own pieces; its cost is counted in
*path passes* (one forward and backward of one path on one batch; a held-out forward of
``learned`` counts a third of one), so ``cost_epochs`` is in epochs of a stand-alone network
on the whole training set.

Scoring (:func:`score`): the architecture's switches set, every BatchNorm's statistics reset and
re-estimated on ``calib_batches`` training batches (cumulative average, no augmentation;
Guo et al.'s recalibration), then validation accuracy; the milliseconds it took are returned.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from nas_attn.backbones.pretrained import make_optimizer
from nas_attn.config import config_from_mapping
from nas_attn.errors import ConfigError, NonFiniteLossError
from nas_attn.oneshot.checkpoint import restore_training, training_state
from nas_attn.oneshot.learned import (
    FORWARD_SHARE,
    ArchUpdater,
    LearnedSettings,
    arch_step_due,
    sample_path,
    split_training,
)
from nas_attn.train import (
    TrainConfig,
    evaluate,
    lr_at,
    resolve_device,
    training_runtime,
)

if TYPE_CHECKING:
    from nas_attn.arch import ArchSpec
    from nas_attn.data import DatasetBundle
    from nas_attn.oneshot.supernet import Supernet

MODES = ("spos", "fairnas", "learned")


def uniform_path(counts: Sequence[int], rng: random.Random) -> tuple[int, ...]:
    """One SPOS path: each stage's option uniform over its ``counts[s]`` options."""
    return tuple(rng.randrange(n) for n in counts)


def fair_paths(counts: Sequence[int], rng: random.Random) -> list[tuple[int, ...]]:
    """One FairNAS step's paths: ``max(counts)`` paths whose stage-``s`` column covers every
    option of stage ``s`` (a permutation, repeated and cut for a stage with fewer options)."""
    m = max(counts)
    columns = []
    for n in counts:
        col: list[int] = []
        while len(col) < m:
            perm = list(range(n))
            rng.shuffle(perm)
            col.extend(perm)
        columns.append(col[:m])
    return [tuple(c[k] for c in columns) for k in range(m)]


@dataclass
class SupernetEpoch:
    epoch: int
    train_loss: float
    path_passes: int  # cumulative
    elapsed_s: float


@dataclass
class SupernetTraining:
    mode: str
    epochs: list[SupernetEpoch] = field(default_factory=list)
    path_passes: int = 0
    steps_per_epoch: int = 0
    train_time_s: float = 0.0
    counts: list[list[int]] = field(default_factory=list)  # times each stage option was trained
    arch_passes: int = 0  # held-out forwards of ``learned`` (a third of a path pass each)
    arch_probs: list[list[float]] = field(default_factory=list)  # ``learned``: the result
    epoch_type: ClassVar[type] = SupernetEpoch

    @property
    def cost_epochs(self) -> float:
        """The training's compute in epochs of one stand-alone network (whole training set)."""
        passes = self.path_passes + self.arch_passes * FORWARD_SHARE
        return passes / max(self.steps_per_epoch, 1)


def train_supernet(supernet: Supernet, data: DatasetBundle, cfg: TrainConfig,
                   mode: str = "spos", *, seed: int | None = None,
                   fixed: Mapping[int, int] | None = None,
                   callback: Callable[[SupernetEpoch], Any] | None = None,
                   learned: LearnedSettings | Mapping[str, Any] | None = None,
                   resume: Mapping[str, Any] | None = None,
                   on_state: Callable[[dict[str, Any]], Any] | None = None
                   ) -> SupernetTraining:
    """Train ``supernet`` on ``data`` for ``cfg.epochs`` epochs of ``cfg``'s recipe, sampling
    paths by ``mode`` (:data:`MODES`); ``seed`` (default ``cfg.seed``) seeds weights' updates
    and the path draws. ``fixed`` (stage -> option) holds stages at one option: a few-shot
    sub-supernet (Zhao et al., ICML 2021, arXiv 2006.06863) trained from the supernet's
    weights. ``learned`` (:class:`~nas_attn.oneshot.learned.LearnedSettings` or its mapping;
    default settings) is for ``mode="learned"`` only; the logits it trains stay in
    ``supernet.arch_logits()``.
    ``on_state`` gets the resumable state after every epoch but the last
    (:func:`~nas_attn.oneshot.checkpoint.training_state`), before ``callback``; ``resume``
    (such a state) goes on after its epoch, ending with the weights of an uninterrupted run."""
    if mode not in MODES:
        raise ConfigError("oneshot.mode", mode, "unknown supernet training mode", MODES)
    if learned is not None and mode != "learned":
        raise ConfigError("learned", dict(learned) if isinstance(learned, Mapping)
                          else vars(learned), "architecture-parameter settings need mode "
                          f"'learned', not {mode!r}", ["learned"])
    settings = config_from_mapping(LearnedSettings, learned, "learned")
    device = resolve_device(cfg.device)
    seed = cfg.seed if seed is None else seed
    fixed = dict(fixed or {})
    for s, o in fixed.items():
        if not (0 <= s < len(supernet.options) and 0 <= o < len(supernet.options[s])):
            raise ConfigError(f"oneshot.fixed[{s}]", o, "no such stage option",
                              [f"{i}:{j}" for i in range(len(supernet.options))
                               for j in range(len(supernet.options[i]))][:20])
    counts = [1 if s in fixed else len(o) for s, o in enumerate(supernet.options)]
    result = SupernetTraining(mode, counts=[[0] * len(o) for o in supernet.options])
    rng = random.Random(seed)
    with training_runtime(cfg, device):
        model = supernet.to(device)
        normalize = data.normalizer(device)
        x_train, y_train = data.train
        n = len(y_train)
        bs = min(cfg.batch_size, n)
        result.steps_per_epoch = n // bs
        gen = torch.Generator().manual_seed(seed)
        weight_idx, arch_idx = torch.arange(n), torch.arange(0)
        arch: ArchUpdater | None = None
        if mode == "learned":
            weight_idx, arch_idx = split_training(n, bs, settings, gen)
            arch = ArchUpdater(supernet.arch_logits(), settings, sorted(fixed))
        steps, arch_steps = len(weight_idx) // bs, len(arch_idx) // bs
        total, warmup = steps * cfg.epochs, round(cfg.warmup_epochs * steps)
        opt = make_optimizer(model, cfg)
        t0 = time.perf_counter()
        step, first = 0, 1
        if resume is not None:
            first, step, elapsed = restore_training(resume, model, opt, rng, gen, result, arch)
            t0 -= elapsed
        for epoch in range(first, cfg.epochs + 1):
            model.train()
            perm = weight_idx[torch.randperm(len(weight_idx), generator=gen)]
            arch_perm = arch_idx[torch.randperm(len(arch_idx), generator=gen)]
            arch_done = 0
            loss_sum = 0.0
            for b in range(steps):
                idx = perm[b * bs:(b + 1) * bs]
                xb = normalize(data.augment(x_train[idx], gen).to(device))
                yb = y_train[idx].to(device)
                for g in opt.param_groups:
                    g["lr"] = lr_at(step, total, warmup, cfg.lr)
                paths = ([uniform_path(counts, rng)] if mode == "spos"
                         else fair_paths(counts, rng) if mode == "fairnas"
                         else [sample_path(supernet.arch_logits(), rng)])
                opt.zero_grad(set_to_none=True)
                step_loss = 0.0
                for path in paths:
                    if fixed:
                        path = tuple(fixed.get(s, o) for s, o in enumerate(path))
                    supernet.activate_path(path)
                    loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
                    (loss / len(paths)).backward()
                    step_loss += loss.item() / len(paths)
                    for s, o in enumerate(path):
                        result.counts[s][o] += 1
                if not math.isfinite(step_loss):
                    raise NonFiniteLossError(f"supernet epoch {epoch} step {b + 1}: loss is "
                                             "not finite")
                if cfg.grad_clip is not None:
                    nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
                step += 1
                result.path_passes += len(paths)
                loss_sum += step_loss
                if arch is not None and arch_step_due(b, steps, arch_steps):
                    a_idx = arch_perm[arch_done * bs:(arch_done + 1) * bs]
                    arch_done += 1
                    _arch_step(supernet, arch, fixed, normalize(x_train[a_idx].to(device)),
                               y_train[a_idx].to(device), rng)
                    result.arch_passes += 1
            ep = SupernetEpoch(epoch, loss_sum / max(steps, 1), result.path_passes,
                               time.perf_counter() - t0)
            result.epochs.append(ep)
            if on_state is not None and epoch < cfg.epochs:
                on_state(training_state(epoch, step, model, opt, rng, gen, result,
                                        time.perf_counter() - t0, arch))
            if callback is not None:
                callback(ep)
        result.train_time_s = time.perf_counter() - t0
        if arch is not None:
            arch.close()
            result.arch_probs = supernet.arch_probabilities()
    model.eval()
    return result


def _arch_step(supernet: Supernet, arch: ArchUpdater, fixed: Mapping[int, int],
               xb: torch.Tensor, yb: torch.Tensor, rng: random.Random) -> None:
    """One REINFORCE step of the logits: a path drawn from them, its loss on a held-out
    batch (batch statistics, as the weight steps see them; no gradient) the negative reward."""
    path = tuple(fixed.get(s, o) for s, o in enumerate(sample_path(supernet.arch_logits(),
                                                                    rng)))
    supernet.activate_path(path)
    with torch.no_grad():
        loss = F.cross_entropy(supernet(xb), yb).item()
    arch.step(path, -loss)


def recalibrate_bn(model: nn.Module, batches: Sequence[torch.Tensor]) -> None:
    """Reset every BatchNorm's running statistics and re-estimate them (cumulative average)
    from forward passes over ``batches`` (already normalised)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    with torch.no_grad():
        for xb in batches:
            model(xb)
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    model.eval()


@dataclass(frozen=True)
class Score:
    val_accuracy: float
    val_loss: float
    ms: float  # wall milliseconds of this score (recalibration and validation)


def calibration_batches(data: DatasetBundle, n_batches: int, batch_size: int, seed: int = 0,
                        device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """``n_batches`` normalised training batches (a fixed draw, no augmentation)."""
    x, _ = data.train
    gen = torch.Generator().manual_seed(seed)
    perm = torch.randperm(len(x), generator=gen)
    normalize = data.normalizer(device)
    return [normalize(x[perm[i * batch_size:(i + 1) * batch_size]].to(device))
            for i in range(n_batches) if i * batch_size < len(x)]


def score(supernet: Supernet, spec: ArchSpec | Sequence[int], data: DatasetBundle,
          calib: Sequence[torch.Tensor], eval_batch_size: int = 512,
          device: torch.device | str = "cpu") -> Score:
    """Validation accuracy of an architecture (a spec or a path) with inherited weights, after
    BatchNorm recalibration on ``calib`` (:func:`calibration_batches`)."""
    t0 = time.perf_counter()
    if isinstance(spec, Sequence) and not isinstance(spec, str):
        supernet.activate_path(spec)
    else:
        supernet.activate(spec)
    recalibrate_bn(supernet, calib)
    acc, loss = evaluate(supernet, data.val, data.normalizer(device), eval_batch_size,
                         torch.device(device))
    return Score(acc, loss, (time.perf_counter() - t0) * 1000)
