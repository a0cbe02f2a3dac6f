"""A resumable training state: what :func:`nas_attn.train.train_spec` needs to go on after an
epoch exactly as if it had never stopped.

The state is a plain dict of tensors and numbers (``torch.save`` / ``torch.load`` with
``weights_only=True``): the epoch and optimiser step reached, the model's and the optimiser's
state dicts, the AMP grad scaler's state, the data-order generator and the global RNG states,
the epoch history and the training recipe it was made with. Resuming with another recipe
(learning rate, schedule length, batch size, seed, ...) or another training-set size is refused
with the differing fields named: the learning-rate schedule and the data order depend on them.

Used by the search runner's promotion (docs/early-stopping.md): a trial stopped at a rung
keeps its state, and a later trial of the same architecture resumes from it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.files import write_atomically

FORMAT = "nas-attn-train-state"
VERSION = 1
# fields of TrainConfig that do not change the training trajectory (where and how fast it runs)
RUNTIME_FIELDS = ("device", "threads", "eval_batch_size", "deterministic", "channels_last")


def plain_config(cfg: Any) -> dict[str, Any]:
    """A TrainConfig as plain data, as JSON and YAML give it back (``freeze`` as a list)."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(cfg).items()}


def recipe(cfg: Any) -> dict[str, Any]:
    """The fields of a TrainConfig a resumed training must share with the saved one (pure)."""
    return {k: v for k, v in plain_config(cfg).items() if k not in RUNTIME_FIELDS}


def check_resumable(state: Mapping[str, Any], cfg: Any, steps_per_epoch: int,
                    source: str = "resume_state") -> int:
    """The epoch ``state`` was saved after; ConfigError naming what does not match."""
    if not isinstance(state, Mapping) or state.get("format") != FORMAT:
        raise ConfigError(source, type(state).__name__,
                          f"not a {FORMAT} (see nas_attn.train_state)")
    if state.get("version") != VERSION:
        raise ConfigError(f"{source}.version", state.get("version"), "unknown version", [VERSION])
    saved, now = dict(state["recipe"]), recipe(cfg)
    diff = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
    if diff:
        shown = ", ".join(f"train.{k}: saved {saved.get(k)!r}, now {now.get(k)!r}" for k in diff)
        raise ConfigError(f"{source}.recipe", diff[0],
                          f"the state was saved with another training recipe ({shown})")
    if int(state["steps_per_epoch"]) != steps_per_epoch:
        raise ConfigError(f"{source}.steps_per_epoch", int(state["steps_per_epoch"]),
                          "the state was saved with another training-set size or batch size",
                          [steps_per_epoch])
    epoch = int(state["epoch"])
    if not 1 <= epoch < int(cfg.epochs):
        raise ConfigError(f"{source}.epoch", epoch, f"must be in 1..{int(cfg.epochs) - 1}")
    return epoch


def save_state(state: Mapping[str, Any], path: str | Path) -> Path:
    """Write ``state`` to ``path`` atomically (temporary file + rename)."""
    import torch

    return write_atomically(path, lambda tmp: torch.save(dict(state), tmp))


def load_state(path: str | Path) -> dict[str, Any]:
    """Read a state written by :func:`save_state` (tensors and plain data only)."""
    import torch

    try:
        state = torch.load(Path(path), map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ConfigError("resume_state", str(path), "no such file") from None
    except Exception as e:
        if "weights_only" in str(e):
            # torch's text advises weights_only=False, which nas-attn never suggests
            raise ConfigError("resume_state", str(path),
                              "refused: the file holds Python objects other than tensors and "
                              "plain data, and loading them could run code from it; nothing "
                              "from it was run") from None
        raise ConfigError("resume_state", str(path),
                          f"not a readable training state ({type(e).__name__}: {e})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ConfigError("resume_state", str(path), f"not a {FORMAT} file")
    return state


def snapshot(cfg: Any, epoch: int, step: int, steps_per_epoch: int, model: Any, opt: Any,
             scaler: Any, gen: Any, device: Any, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The state of a live training after ``epoch`` (``history``: its epochs as dicts)."""
    import torch

    return {
        "format": FORMAT, "version": VERSION,
        "epoch": epoch, "step": step, "steps_per_epoch": steps_per_epoch,
        "recipe": recipe(cfg),
        "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "generator": gen.get_state(), "rng_cpu": torch.get_rng_state(),
        "rng_cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "history": list(history),
    }


def restore(state: Mapping[str, Any], cfg: Any, steps_per_epoch: int, model: Any, opt: Any,
            scaler: Any, gen: Any, device: Any) -> tuple[int, int, list[dict[str, Any]]]:
    """Load a :func:`snapshot` into the live objects; returns the epoch and step to go on from
    and the epoch history so far (as dicts)."""
    import torch

    epoch = check_resumable(state, cfg, steps_per_epoch)
    model.load_state_dict(state["model"])
    opt.load_state_dict(state["optimizer"])
    if scaler is not None and state.get("scaler") is not None:
        scaler.load_state_dict(state["scaler"])
    gen.set_state(state["generator"])
    torch.set_rng_state(state["rng_cpu"])
    if device.type == "cuda" and state.get("rng_cuda") is not None:
        torch.cuda.set_rng_state(state["rng_cuda"], device)
    return epoch, int(state["step"]), list(state["history"])
