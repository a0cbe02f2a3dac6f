"""A supernet checkpoint: ``supernet.safetensors`` (the weights, never a pickle) beside
``supernet.json`` (format, the space's hash, the recipe, the training mode and seed, what
was trained, and each stage's learned distribution ``arch_probs``: uniform unless trained by
``mode="learned"``; the logits themselves are in the weights file). :func:`load_supernet` refuses, naming the difference, a checkpoint of another
space or recipe; both files are written atomically, JSON last, so a checkpoint without its JSON
is an unfinished one."""

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
