"""The training loop: :func:`train_spec` trains one architecture spec on an in-memory dataset,
reporting after every epoch to a callback that may stop it (early stopping, pruning).

Recipe: SGD (Nesterov momentum) or AdamW; the learning rate rises linearly for
``warmup_epochs`` and then follows a cosine to zero (Loshchilov & Hutter, SGDR, arXiv
1608.03983, without restarts), updated every step; optional label smoothing (Szegedy et al.,
arXiv 1512.00567) and gradient-norm clipping. Weight decay applies to every parameter (as in
the original CIFAR ResNet recipe). Fine-tuning (docs/backbones.md): ``backbone_lr_mult`` scales
the backbone's learning rate against the new modules' (inserted zoo modules, a classifier not
loaded from ``backbone_weights``), ``freeze`` stops the gradient of ``stem``/``stageN``. The last incomplete training batch of an epoch is dropped
(each epoch draws a fresh permutation, so every image is still used).

Resuming: ``on_state`` receives the full training state (:mod:`nas_attn.train_state`) after
each epoch listed in ``save_state_at``, before the callback; ``resume_state`` continues a
training from such a state, bit for bit where the device is deterministic (CPU), as if it had
never stopped. The search runner uses the pair to promote stopped trials.

Lean by design: data stay resident (on the GPU when one is used), augmentation runs on whole
batches, and the loss is read back to the host only every ``_CHECK_EVERY`` steps to detect a
non-finite value; everything else stays on the device until the epoch ends.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_attn import train_state
from nas_attn.backbones.positions import check_freeze
from nas_attn.config import (
    check_bool,
    check_choice,
    check_float,
    check_int,
    config_from_mapping,
)
from nas_attn.errors import ConfigError, NonFiniteLossError, OutOfMemoryError

if TYPE_CHECKING:
    import torch
    from torch import nn

    from nas_attn.arch import ArchSpec
    from nas_attn.data import DataConfig, DatasetBundle

OPTIMIZERS = ("sgd", "adamw")
AMP_MODES = ("none", "bf16", "fp16")
_CHECK_EVERY = 32  # steps between host reads of the running loss (non-finite detection)


@dataclass(frozen=True)
class TrainConfig:
    """How to train one trial. Every field is validated on construction."""

    epochs: int = 10
    batch_size: int = 128
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    nesterov: bool = True
    weight_decay: float = 5e-4
    warmup_epochs: float = 0.0
    label_smoothing: float = 0.0
    grad_clip: float | None = None
    seed: int = 0
    deterministic: bool = False
    device: str = "auto"
    threads: int | None = None
    amp: str = "none"
    channels_last: bool = False
    eval_batch_size: int = 512
    backbone_lr_mult: float = 1.0
    freeze: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        check_int(self.epochs, "train.epochs", low=1)
        check_int(self.batch_size, "train.batch_size", low=1)
        check_choice(self.optimizer, "train.optimizer", OPTIMIZERS)
        check_float(self.lr, "train.lr", low=0, low_open=True)
        if not math.isfinite(self.lr):
            raise ConfigError("train.lr", self.lr, "must be finite")
        check_float(self.momentum, "train.momentum", low=0, high=1)
        check_bool(self.nesterov, "train.nesterov")
        if self.nesterov and self.optimizer == "sgd" and self.momentum == 0:
            raise ConfigError("train.nesterov", True, "Nesterov momentum needs momentum > 0")
        check_float(self.weight_decay, "train.weight_decay", low=0)
        check_float(self.warmup_epochs, "train.warmup_epochs", low=0)
        if self.warmup_epochs > self.epochs:
            raise ConfigError("train.warmup_epochs", self.warmup_epochs,
                              f"longer than the {self.epochs} epochs of training")
        check_float(self.label_smoothing, "train.label_smoothing", low=0, high=0.5)
        check_float(self.grad_clip, "train.grad_clip", low=0, low_open=True, none_ok=True)
        check_int(self.seed, "train.seed", low=0)
        check_bool(self.deterministic, "train.deterministic")
        if not isinstance(self.device, str) or not (
            self.device in ("auto", "cpu", "cuda")
            or (self.device.startswith("cuda:") and self.device[5:].isdigit())
        ):
            raise ConfigError("train.device", self.device, "unknown device",
                              ["auto", "cpu", "cuda", "cuda:N"])
        check_int(self.threads, "train.threads", low=1, none_ok=True)
        if self.amp is False or self.amp is None:
            object.__setattr__(self, "amp", "none")
        check_choice(self.amp, "train.amp", AMP_MODES)
        check_bool(self.channels_last, "train.channels_last")
        check_int(self.eval_batch_size, "train.eval_batch_size", low=1)
        check_float(self.backbone_lr_mult, "train.backbone_lr_mult", low=0, low_open=True)
        object.__setattr__(self, "freeze", check_freeze(self.freeze))


@dataclass(frozen=True)
class EpochResult:
    epoch: int  # 1-based
    train_loss: float  # mean over the epoch's training samples (with label smoothing, if any)
    val_accuracy: float  # fraction in [0, 1]
    val_loss: float  # plain cross-entropy
    elapsed_s: float  # wall time since training started (cumulative), evaluation included
    images_per_s: float  # training throughput of this epoch (evaluation excluded)


@dataclass
class TrainResult:
    epochs: list[EpochResult]
    val_accuracy: float
    best_val_accuracy: float
    test_accuracy: float | None
    epochs_trained: int
    stopped_early: bool
    train_time_s: float
    model: nn.Module = field(repr=False)
    spec: ArchSpec | None = field(default=None, repr=False)
    num_params: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready metrics (everything but the model)."""
        return {
            "val_accuracy": self.val_accuracy,
            "best_val_accuracy": self.best_val_accuracy,
            "test_accuracy": self.test_accuracy,
            "epochs_trained": self.epochs_trained,
            "stopped_early": self.stopped_early,
            "train_time_s": self.train_time_s,
            "num_params": self.num_params,
            "epochs": [vars(e) for e in self.epochs],
        }


Callback = Callable[[EpochResult], bool | None]


# ---------------------------------------------------------------------------------------------
# pure pieces


def lr_at(step: int, total_steps: int, warmup_steps: int, base_lr: float) -> float:
    """Learning rate at ``step`` (0-based): linear warm-up from base_lr/warmup_steps to
    base_lr, then a half cosine from base_lr down to 0 at ``total_steps``."""
    if step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    rest = max(1, total_steps - warmup_steps)
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * min(step - warmup_steps, rest) / rest))


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError("train.device", name, "CUDA is not available here", ["auto", "cpu"])
        dev = torch.device(name)
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ConfigError("train.device", name, "no such GPU",
                              [f"cuda:{i}" for i in range(torch.cuda.device_count())])
        return dev
    return torch.device(name)


def _check_cuda_only(cfg: TrainConfig, device: torch.device) -> TrainConfig:
    from dataclasses import replace

    if device.type == "cuda":
        return cfg
    for name, off in (("amp", "none"), ("channels_last", False)):
        if getattr(cfg, name) != off:
            if cfg.device == "cpu":
                raise ConfigError(f"train.{name}", getattr(cfg, name), "CUDA only; device is cpu",
                                  [off])
            warnings.warn(f"train.{name}={getattr(cfg, name)!r} ignored: no CUDA device",
                          stacklevel=3)
            cfg = replace(cfg, **{name: off})
    return cfg


# ---------------------------------------------------------------------------------------------
# the loop


@contextlib.contextmanager
def training_runtime(cfg: TrainConfig, device: torch.device):
    """Threads, determinism and a private RNG state for the duration of training; the caller's
    settings and global RNG are restored afterwards."""
    import torch

    old_threads = torch.get_num_threads()
    old_det = torch.are_deterministic_algorithms_enabled()
    old_cudnn = (torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark)
    devices = [device.index or 0] if device.type == "cuda" else []
    try:
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        if cfg.deterministic:
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
            torch.use_deterministic_algorithms(True)
            torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = True, False
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(cfg.seed)
            yield
    finally:
        torch.set_num_threads(old_threads)
        torch.use_deterministic_algorithms(old_det)
        torch.backends.cudnn.deterministic, torch.backends.cudnn.benchmark = old_cudnn


def _resolve_spec(spec: ArchSpec | Mapping[str, Any] | str | Path, data: DatasetBundle
                  ) -> ArchSpec:
    from nas_attn.arch import load_spec

    canon = load_spec(spec)
    if canon.num_classes != data.num_classes:
        raise ConfigError("num_classes", canon.num_classes,
                          f"the spec's classes differ from dataset {data.name!r}",
                          [data.num_classes])
    if canon.in_chans != data.input_size[0]:
        raise ConfigError("in_chans", canon.in_chans,
                          f"the spec's input channels differ from dataset {data.name!r} "
                          "(set the spec's in_chans or data.in_chans)", [data.input_size[0]])
    return canon


def _place_data(data: DatasetBundle, device: torch.device) -> DatasetBundle:
    """Move the splits to the GPU once when they fit comfortably (half the free memory)."""
    import torch

    if device.type != "cuda":
        return data
    free, _ = torch.cuda.mem_get_info(device)
    return data.to(device) if data.nbytes < free // 2 else data


def evaluate(model: nn.Module, split: tuple[torch.Tensor, torch.Tensor], normalize,
             batch_size: int, device: torch.device, amp: str = "none",
             channels_last: bool = False) -> tuple[float, float]:
    """(accuracy, mean cross-entropy) of ``model`` on a split; one host sync at the end."""
    import torch
    import torch.nn.functional as F

    x, y = split
    model.eval()
    correct = torch.zeros((), dtype=torch.int64, device=device)
    loss_sum = torch.zeros((), dtype=torch.float64, device=device)
    with torch.inference_mode(), _autocast(device, amp):
        for i in range(0, len(y), batch_size):
            xb = normalize(x[i:i + batch_size].to(device, non_blocking=True))
            yb = y[i:i + batch_size].to(device, non_blocking=True)
            if channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            out = model(xb).float()
            loss_sum += F.cross_entropy(out, yb, reduction="sum")
            correct += (out.argmax(1) == yb).sum()
    n = max(len(y), 1)
    return correct.item() / n, loss_sum.item() / n


def _autocast(device: torch.device, amp: str):
    import torch

    if amp == "none":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if amp == "bf16" else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype)


def train_spec(
    spec: ArchSpec | Mapping[str, Any] | str | Path,
    data: DatasetBundle | DataConfig | Mapping[str, Any] | str,
    cfg: TrainConfig | Mapping[str, Any] | None = None,
    callback: Callback | None = None,
    *,
    evaluate_test: bool = False,
    resume_state: Mapping[str, Any] | None = None,
    save_state_at: Collection[int] = (),
    on_state: Callable[[dict[str, Any]], None] | None = None,
) -> TrainResult:
    """Build ``spec`` and train it on ``data``; see the module docstring for the recipe.

    ``callback(EpochResult)`` runs after every epoch; returning ``False`` stops training
    (``stopped_early=True``). The test split is evaluated only with ``evaluate_test=True``
    (searches select on validation). Raises ConfigError for a spec that does not fit the data,
    NonFiniteLossError for a NaN/inf loss, OutOfMemoryError for a CUDA OOM.

    ``on_state(state)`` is called after each epoch in ``save_state_at`` (before the
    callback; never after the last epoch) with the state to resume from; it must write or copy
    it at once (the tensors are the live ones). ``resume_state`` (such a state, e.g. read by
    :func:`nas_attn.train_state.load_state`) starts after the epoch it was saved at; a state
    saved with another recipe or training-set size raises ConfigError naming the difference.
    """
    import torch

    from nas_attn.data import DatasetBundle, load_dataset

    cfg = config_from_mapping(TrainConfig, cfg, "train")
    if not isinstance(data, DatasetBundle):
        data = load_dataset(data)
    canon = _resolve_spec(spec, data)
    device = resolve_device(cfg.device)
    cfg = _check_cuda_only(cfg, device)
    try:
        with training_runtime(cfg, device):
            return _train(canon, data, cfg, device, callback, evaluate_test,
                          resume_state, frozenset(int(e) for e in save_state_at), on_state)
    except torch.cuda.OutOfMemoryError as e:
        if device.type == "cuda":
            torch.cuda.empty_cache()
        raise OutOfMemoryError(str(e).splitlines()[0] if str(e) else "CUDA out of memory") from e


def _train(canon: ArchSpec, data: DatasetBundle, cfg: TrainConfig, device: torch.device,
           callback: Callback | None, evaluate_test: bool,
           resume_state: Mapping[str, Any] | None = None,
           save_state_at: frozenset[int] = frozenset(),
           on_state: Callable[[dict[str, Any]], None] | None = None) -> TrainResult:
    import torch
    import torch.nn.functional as F

    from nas_attn.arch import build_model
    from nas_attn.backbones.pretrained import (
        freeze_,
        frozen_modules,
        keep_frozen_in_eval,
        make_optimizer,
    )

    model = build_model(canon).to(device)
    frozen = frozen_modules(model, cfg.freeze)
    freeze_(frozen)
    if cfg.channels_last:
        model = model.to(memory_format=torch.channels_last)
    num_params = sum(p.numel() for p in model.parameters())
    data = _place_data(data, device)
    normalize = data.normalizer(device)
    x_train, y_train = data.train
    n = len(y_train)
    bs = min(cfg.batch_size, n)
    steps_per_epoch = n // bs
    total_steps = steps_per_epoch * cfg.epochs
    warmup_steps = round(cfg.warmup_epochs * steps_per_epoch)
    opt = make_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type) if cfg.amp == "fp16" else None
    gen = torch.Generator(device=x_train.device).manual_seed(cfg.seed)
    on_device = x_train.device == device
    history: list[EpochResult] = []
    stopped, step, start_epoch = False, 0, 0
    t_start = time.perf_counter()
    if resume_state is not None:
        start_epoch, step, done = train_state.restore(resume_state, cfg, steps_per_epoch, model,
                                                      opt, scaler, gen, device)
        history.extend(EpochResult(**e) for e in done)
        t_start -= history[-1].elapsed_s if history else 0.0
    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        model.train()
        keep_frozen_in_eval(frozen)
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen, device=x_train.device)
        loss_sum = torch.zeros((), dtype=torch.float32, device=device)
        for b in range(steps_per_epoch):
            idx = perm[b * bs:(b + 1) * bs]
            xb = data.augment(x_train[idx], gen)
            yb = y_train[idx]
            if not on_device:
                xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            xb = normalize(xb)
            if cfg.channels_last:
                xb = xb.contiguous(memory_format=torch.channels_last)
            lr = lr_at(step, total_steps, warmup_steps, cfg.lr)
            for g in opt.param_groups:
                g["lr"] = lr * g["lr_mult"]
            with _autocast(device, cfg.amp):
                loss = F.cross_entropy(model(xb), yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                if cfg.grad_clip is not None:
                    scaler.unscale_(opt)
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                if cfg.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
                opt.step()
            loss_sum += loss.detach().float()
            step += 1
            if (b + 1) % _CHECK_EVERY == 0 and not math.isfinite(loss_sum.item()):
                raise NonFiniteLossError(f"epoch {epoch} step {b + 1}: loss is not finite "
                                         f"(lr {lr:.3g})")
        train_loss = loss_sum.item() / max(steps_per_epoch, 1)
        if not math.isfinite(train_loss):
            raise NonFiniteLossError(f"epoch {epoch}: mean training loss is {train_loss}")
        train_s = time.perf_counter() - t0
        val_acc, val_loss = evaluate(model, data.val, normalize, cfg.eval_batch_size, device,
                                     cfg.amp, cfg.channels_last)
        if not math.isfinite(val_loss):
            raise NonFiniteLossError(f"epoch {epoch}: validation loss is {val_loss}")
        res = EpochResult(epoch, train_loss, val_acc, val_loss, time.perf_counter() - t_start,
                          steps_per_epoch * bs / max(train_s, 1e-9))
        history.append(res)
        if on_state is not None and epoch in save_state_at and epoch < cfg.epochs:
            on_state(train_state.snapshot(cfg, epoch, step, steps_per_epoch, model, opt,
                                          scaler, gen, device, [vars(e) for e in history]))
        if callback is not None and callback(res) is False:
            stopped = epoch < cfg.epochs
            break
    train_time = time.perf_counter() - t_start
    test_acc = None
    if evaluate_test:
        test_acc, _ = evaluate(model, data.test, normalize, cfg.eval_batch_size, device,
                               cfg.amp, cfg.channels_last)
    model.eval()
    return TrainResult(
        epochs=history,
        val_accuracy=history[-1].val_accuracy,
        best_val_accuracy=max(e.val_accuracy for e in history),
        test_accuracy=test_acc,
        epochs_trained=len(history),
        stopped_early=stopped,
        train_time_s=train_time,
        model=model,
        spec=canon,
        num_params=num_params,
    )
