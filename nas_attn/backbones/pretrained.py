"""Pretrained backbone weights (``backbone_weights: PATH``) and the fine-tuning recipe's parts.

:func:`load_backbone_weights` loads a safetensors file or a ``torch.load(weights_only=True)``
state dict into a built network under the backbone's own names (torchvision's for the built-in
ResNets and MobileNetV2, the factory's own for a factory backbone), strictly: every missing,
unexpected or mis-shaped tensor is named (:func:`nas_attn.weights.check_state`). Left out on
purpose, so they keep their own initialisation:

- the inserted zoo modules (the file has none), and a file's tensors of a 3x3 conv that a conv
  module replaced (``layer2.0.conv2.weight`` when ``conv: rfaconv``);
- the classifier (``fc``, ``classifier.1``, a factory's ``classifier``) when the file's shape
  differs (another class count) or the file has none.

:func:`param_groups` and :func:`frozen_modules` are the recipe's ``backbone_lr_mult`` and
``freeze`` (nas_attn.train).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from nas_attn.errors import ConfigError

FIELD = "backbone_weights"
_SHA: dict[tuple[str, int, int], str] = {}


@dataclass(frozen=True)
class LoadedWeights:
    """What :func:`load_backbone_weights` did: the file, its SHA-256, the network's tensors it
    loaded and the file's tensors it left out (with why)."""

    path: str
    sha256: str
    loaded: frozenset[str]
    left_out: tuple[str, ...] = ()


def weights_sha256(path: str | Path) -> str:
    """SHA-256 of a weights file (cached by path, size and modification time)."""
    p = Path(path)
    try:
        st = p.stat()
    except OSError as e:
        raise ConfigError(FIELD, str(path), f"cannot read the weights file: {e.strerror}") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _SHA:
        h = hashlib.sha256()
        with p.open("rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        _SHA[key] = h.hexdigest()
    return _SHA[key]


def read_weights(path: str | Path) -> dict[str, Any]:
    """The tensors of a safetensors file or a torch state dict (``weights_only=True``);
    ConfigError naming the file otherwise."""
    from nas_attn.weights import read_weights as read

    p = Path(path)
    if not p.is_file():
        raise ConfigError(FIELD, str(path), "no such file")
    return read(p)


def load_backbone_weights(model: nn.Module, path: str | Path) -> LoadedWeights:
    """Load ``path`` into ``model`` (a built nas-attn network) as described in the module
    docstring; ConfigError (field ``backbone_weights``) naming the file and the tensors."""
    from nas_attn.weights import check_state

    state = read_weights(path)
    names: dict[str, str] = model.backbone_names()  # type: ignore[operator]
    own = model.state_dict()
    prefix: str = getattr(model, "backbone_prefix", "")
    replaced = tuple(f"{n[len(prefix):]}." for n, _ in model.attention_modules()  # type: ignore[operator]
                     if n.startswith(prefix))
    head = getattr(model, "classifier_name", None)
    in_head = {k for k, ours in names.items() if head and ours.startswith(f"{head}.")}
    left_out = [f"{k} (replaced by a conv module)" for k in state if k.startswith(replaced)]
    kept = {k: t for k, t in state.items() if not k.startswith(replaced)}
    for k in in_head:
        if k in kept and tuple(kept[k].shape) != tuple(own[names[k]].shape):
            left_out.append(f"{k} {list(kept.pop(k).shape)} (classifier of another class count)")
    expected = {k: own[ours] for k, ours in names.items() if k not in in_head or k in kept}
    check_state(kept, model, f"{FIELD} {path}", expected=expected)
    model.load_state_dict({names[k]: t for k, t in kept.items()}, strict=False)
    return LoadedWeights(str(path), weights_sha256(path), frozenset(names[k] for k in kept),
                         tuple(sorted(left_out)))


def new_parameter_names(model: nn.Module, loaded: LoadedWeights | None) -> set[str]:
    """The parameters of new modules: the inserted zoo modules, and the classifier unless it
    was loaded from the backbone weights."""
    zoo = tuple(f"{n}." for n, _ in model.attention_modules())  # type: ignore[operator]
    head = getattr(model, "classifier_name", None)
    out = set()
    for k, _ in model.named_parameters():
        if k.startswith(zoo):
            out.add(k)
        elif head and k.startswith(f"{head}.") and (loaded is None or k not in loaded.loaded):
            out.add(k)
    return out


def param_groups(model: nn.Module, base_lr: float, backbone_lr_mult: float,
                 loaded: LoadedWeights | None) -> list[dict[str, Any]]:
    """Optimizer groups: the backbone's trainable parameters at ``base_lr * backbone_lr_mult``,
    the new modules' at ``base_lr``; each group's ``lr_mult`` scales the schedule."""
    if backbone_lr_mult == 1.0:  # one rate for all: no need to tell the backbone apart
        trainable = [p for p in model.parameters() if p.requires_grad]
        return [{"params": trainable, "lr": base_lr, "lr_mult": 1.0}] if trainable else []
    new = new_parameter_names(model, loaded)
    groups: dict[bool, list[Any]] = {True: [], False: []}
    for k, p in model.named_parameters():
        if p.requires_grad:
            groups[k in new].append(p)
    out = []
    for is_new, params in ((False, groups[False]), (True, groups[True])):
        mult = 1.0 if is_new else backbone_lr_mult
        if params:
            out.append({"params": params, "lr": base_lr * mult, "lr_mult": mult})
    return out


def stem_modules(model: nn.Module) -> list[nn.Module]:
    """The modules that run before the first stage: the children, in definition order, that
    come before the first child holding a stage (descending into that one)."""
    stages = {id(s) for s in model.stage_modules()}  # type: ignore[operator]
    out: list[nn.Module] = []
    node = model
    while True:
        for child in node.children():
            if id(child) in stages:
                return out
            if any(id(m) in stages for m in child.modules()):
                node = child
                break
            out.append(child)
        else:
            return out


def frozen_modules(model: nn.Module, freeze: Sequence[str]) -> list[nn.Module]:
    """The modules ``train.freeze`` names (``stem``, ``stage0``, ...); ConfigError for a stage
    the network does not have."""
    stages = model.stage_modules()  # type: ignore[operator]
    valid = ["stem", *(f"stage{i}" for i in range(len(stages)))]
    out: list[nn.Module] = []
    for word in freeze:
        if word not in valid:
            raise ConfigError("train.freeze", word, f"the network has {len(stages)} stages",
                              valid)
        out.extend(stem_modules(model) if word == "stem" else [stages[int(word[5:])]])
    return out


def freeze_(modules: Sequence[nn.Module]) -> None:
    """No gradient for the modules' parameters; inserted zoo modules inside them stay trainable
    (they are new). Call :func:`keep_frozen_in_eval` after every ``model.train()``."""
    from nas_attn.backbones._net import zoo_classes

    zoo = zoo_classes()
    for m in modules:
        inside = {id(p) for z in m.modules() if isinstance(z, zoo) for p in z.parameters()}
        for p in m.parameters():
            if id(p) not in inside:
                p.requires_grad_(False)


def keep_frozen_in_eval(modules: Sequence[nn.Module]) -> None:
    """Frozen BatchNorm layers keep their running statistics (eval mode while training); those
    of zoo modules inside them train on."""
    from nas_attn.backbones._net import zoo_classes

    zoo = zoo_classes()
    for m in modules:
        inside = {id(s) for z in m.modules() if isinstance(z, zoo) for s in z.modules()}
        for sub in m.modules():
            if isinstance(sub, nn.modules.batchnorm._BatchNorm) and id(sub) not in inside:
                sub.eval()


def make_optimizer(model: nn.Module, cfg: Any) -> Any:
    """The optimizer of a training recipe (``nas_attn.train.TrainConfig``), its parameters in
    the groups of :func:`param_groups`."""
    import torch

    loaded = getattr(model, "pretrained", None)
    params = param_groups(model, cfg.lr, cfg.backbone_lr_mult, loaded)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum,
                               nesterov=cfg.nesterov, weight_decay=cfg.weight_decay)
    return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def resolve_path(path: str, base_dir: str | Path | None) -> str:
    """``path`` relative to ``base_dir`` (the spec's or study's folder) unless absolute, as an
    absolute path (a run folder or a worker may work in another folder)."""
    p = Path(os.path.expanduser(path))
    return os.path.abspath(p if p.is_absolute() or base_dir is None else Path(base_dir) / p)
