"""A supernet checkpoint: ``supernet.safetensors`` (the weights, never a pickle) beside
``supernet.json`` (format, the space's hash, the recipe, the training mode and seed, what
was trained, and each stage's learned distribution ``arch_probs``: uniform unless trained by
``mode="learned"``; the logits themselves are in the weights file). :func:`load_supernet` refuses, naming the difference, a checkpoint of another
space or recipe; both files are written atomically, JSON last, so a checkpoint without its JSON
is an unfinished one.

An unfinished training keeps its progress after every epoch but the last in
``progress.pt`` (:func:`save_progress`): the weights, the optimiser's state, the step reached
(the learning rate is a function of the step), the path sampler's, data order's and global
RNG states, the epoch history and the path counts, with the space's hash and the recipe.
``torch.save`` of tensors and plain data, read back with ``torch.load(weights_only=True)``
(:func:`nas_attn.train_state.load_state`'s rule: nothing but tensors and plain data, so
loading it runs no code); :func:`load_progress` refuses one of another space or recipe with
:func:`check_meta`, the check of a finished checkpoint.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from nas_attn.errors import ConfigError
from nas_attn.files import write_atomically
from nas_attn.weights import apply_state, read_safetensors, save_weights

if TYPE_CHECKING:
    from nas_attn.oneshot.supernet import Supernet

FORMAT = "nas-attn-supernet/1"
WEIGHTS = "supernet.safetensors"
META = "supernet.json"
PROGRESS = "progress.pt"  # an unfinished training, after its last finished epoch
PROGRESS_FORMAT = "nas-attn-supernet-progress/1"


def recipe_of(cfg: Any, mode: str, seed: int) -> dict[str, Any]:
    """What a checkpoint must agree on besides the space: the training config (threads and
    device left out: they do not change what is learned), the mode and the seed."""
    from nas_attn.train_state import plain_config

    d = plain_config(cfg) if not isinstance(cfg, Mapping) else dict(cfg)  # as JSON gives it
    for k in ("threads", "device", "eval_batch_size"):
        d.pop(k, None)
    return {**d, "mode": mode, "seed": seed}


def save_supernet(supernet: Supernet, folder: str | Path, recipe: Mapping[str, Any],
                  extra: Mapping[str, Any] | None = None) -> Path:
    """Write the checkpoint into ``folder``; return the JSON's path."""
    folder = Path(folder)
    write_atomically(folder / WEIGHTS, lambda p: save_weights(supernet, p))
    meta = {"format": FORMAT, "space_hash": supernet.space_hash, "recipe": dict(recipe),
            "arch_probs": supernet.arch_probabilities(), **dict(extra or {})}
    text = json.dumps(meta, indent=2, sort_keys=True, default=str)
    return write_atomically(folder / META, lambda p: p.write_text(text))


def read_meta(folder: str | Path) -> dict[str, Any]:
    path = Path(folder) / META
    if not path.is_file():
        raise ConfigError("checkpoint", str(folder), f"no {META} here (not a supernet "
                          "checkpoint, or an unfinished one)")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(str(path), None, f"not valid JSON: {e}") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{path}.format", meta.get("format") if isinstance(meta, dict)
                          else None, "not a supernet checkpoint", [FORMAT])
    return meta


def check_meta(meta: Mapping[str, Any], supernet: Supernet, recipe: Mapping[str, Any]) -> None:
    """ConfigError naming the first difference between a checkpoint and what is asked for."""
    if meta.get("space_hash") != supernet.space_hash:
        raise ConfigError("checkpoint.space_hash", meta.get("space_hash"),
                          "the checkpoint was trained on another search space",
                          [supernet.space_hash])
    theirs = meta.get("recipe") or {}
    for k in sorted(set(theirs) | set(recipe)):
        if theirs.get(k) != recipe.get(k):
            raise ConfigError(f"checkpoint.recipe.{k}", theirs.get(k),
                              "the checkpoint was trained with another recipe",
                              [recipe.get(k)])


def load_supernet(supernet: Supernet, folder: str | Path, recipe: Mapping[str, Any]
                  ) -> dict[str, Any]:
    """Load the checkpoint in ``folder`` into ``supernet`` after checking its space and recipe;
    return its JSON."""
    meta = read_meta(folder)
    check_meta(meta, supernet, recipe)
    path = Path(folder) / WEIGHTS
    apply_state(supernet, read_safetensors(path), str(path))
    return meta


# -- an unfinished training: epoch-level resume ----------------------------------------------


def training_state(epoch: int, step: int, model: Any, opt: Any, rng: Any, gen: Any,
                   result: Any, elapsed_s: float, arch: Any = None) -> dict[str, Any]:
    """Everything :func:`~nas_attn.oneshot.training.train_supernet` needs to go on after
    ``epoch`` as if it had not stopped (tensors and plain data only). ``arch``: the
    ``learned`` mode's :class:`~nas_attn.oneshot.learned.ArchUpdater` (its logits are model
    buffers; its Adam state and baseline are kept here)."""
    import dataclasses

    import torch

    version, internal, gauss = rng.getstate()
    return {"epoch": int(epoch), "step": int(step), "elapsed_s": float(elapsed_s),
            "model": {k: v.detach().to("cpu").clone() for k, v in model.state_dict().items()},
            "optimizer": opt.state_dict(), "rng": [version, list(internal), gauss],
            "generator": gen.get_state(), "torch_rng": torch.get_rng_state(),
            "epochs": [dataclasses.asdict(e) for e in result.epochs],
            "path_passes": int(result.path_passes), "counts": [list(c) for c in result.counts],
            "arch_passes": int(result.arch_passes),
            "arch": None if arch is None else {"optimizer": arch.opt.state_dict(),
                                               "baseline": arch.baseline}}


def restore_training(state: Mapping[str, Any], model: Any, opt: Any, rng: Any, gen: Any,
                     result: Any, arch: Any = None) -> tuple[int, int, float]:
    """Put ``state`` (:func:`training_state`) back; return (next epoch, step, elapsed s)."""
    import torch

    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    version, internal, gauss = state["rng"]
    rng.setstate((version, tuple(internal), gauss))
    gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    result.epochs = [type(result).epoch_type(**e) for e in state["epochs"]]
    result.path_passes = int(state["path_passes"])
    result.counts = [list(c) for c in state["counts"]]
    result.arch_passes = int(state.get("arch_passes", 0))
    if arch is not None and state.get("arch") is not None:
        arch.opt.load_state_dict(state["arch"]["optimizer"])
        arch.baseline = state["arch"]["baseline"]
    return int(state["epoch"]) + 1, int(state["step"]), float(state["elapsed_s"])


def save_progress(folder: str | Path, state: Mapping[str, Any], space_hash: str,
                  recipe: Mapping[str, Any]) -> Path:
    """Write ``folder/progress.pt`` atomically: ``state`` with the space's hash and recipe."""
    import torch

    full = {**dict(state), "format": PROGRESS_FORMAT, "space_hash": space_hash,
            "recipe": dict(recipe)}
    return write_atomically(Path(folder) / PROGRESS, lambda p: torch.save(full, p))


def load_progress(folder: str | Path, supernet: Supernet, recipe: Mapping[str, Any]
                  ) -> dict[str, Any] | None:
    """The progress in ``folder`` (None when there is none), refused naming the difference
    when it is of another space or recipe (:func:`check_meta`)."""
    import torch

    path = Path(folder) / PROGRESS
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a file of another kind: never unpickled beyond plain data
        raise ConfigError(str(path), None, "not a readable supernet progress file "
                          f"({type(e).__name__}); delete it to train from the start") from None
    if not isinstance(state, dict) or state.get("format") != PROGRESS_FORMAT:
        raise ConfigError(f"{path}.format", state.get("format") if isinstance(state, dict)
                          else None, "not a supernet progress file", [PROGRESS_FORMAT])
    check_meta(state, supernet, recipe)
    return state
