"""Weights in and out of safetensors, with shared (tied) tensors and precise mismatch errors.

safetensors refuses two names for one storage; :func:`save_weights` keeps one name per shared
group (safetensors' ``save_model``) and :func:`load_weights` accepts a file that lacks a name
when another name of the same shared group is present. Every other difference between the file
and the network (a missing or unexpected name, a shape or dtype) is a ConfigError naming the
file and the tensors.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError

_SHOWN = 5


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_SHOWN])
    return shown + (f" and {len(names) - _SHOWN} more" if len(names) > _SHOWN else "")


def shared_groups(state: Mapping[str, Any]) -> dict[str, set[str]]:
    """For each tensor name, the set of names sharing its storage (itself included)."""
    by_key: dict[tuple[Any, ...], set[str]] = {}
    for name, t in state.items():
        if t.device.type == "meta" or t.numel() == 0:
            key: tuple[Any, ...] = ("own", name)
        else:
            key = (t.device, t.untyped_storage().data_ptr(), t.storage_offset(), tuple(t.shape),
                   tuple(t.stride()), t.dtype)
        by_key.setdefault(key, set()).add(name)
    return {n: g for g in by_key.values() for n in g}


def save_weights(model: Any, path: Path, metadata: Mapping[str, str] | None = None) -> None:
    """Write ``model``'s state dict to ``path`` (safetensors), one name per shared group."""
    from safetensors.torch import save_model

    save_model(model, str(path), metadata=dict(metadata or {}))


def check_state(state: Mapping[str, Any], model: Any, source: str,
                expected: Mapping[str, Any] | None = None) -> list[str]:
    """Compare ``state`` with ``expected`` (default ``model.state_dict()``); return the names
    to skip (aliases of a loaded tensor). ConfigError naming ``source`` for any mismatch, with
    every missing, unexpected and mis-shaped tensor named in one message."""
    import torch

    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise ConfigError(source, None, "expected a state dict (tensor names -> tensors)")
    if expected is None:
        expected = model.state_dict()
    groups = shared_groups(expected)
    unexpected = sorted(k for k in state if k not in expected)
    missing = sorted(k for k in expected if k not in state and not (groups[k] & state.keys()))
    shapes = [f"{k} {list(state[k].shape)} (network: {list(v.shape)})"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    parts = []
    if missing:
        parts.append(f"{len(missing)} tensor(s) of the network missing: {_names(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} tensor(s) the network does not have: "
                     f"{_names(unexpected)}")
    if shapes:
        parts.append(f"shape of {_names(shapes)}")
    if parts:
        raise ConfigError(source, None, "weights do not match the spec's network: "
                          + "; ".join(parts))
    wrong = [f"{k} {state[k].dtype} (network: {v.dtype})" for k, v in expected.items()
             if k in state and state[k].is_floating_point() != v.is_floating_point()]
    if wrong:
        raise ConfigError(source, None, f"weights do not match the spec's network: dtype of "
                          f"{_names(wrong)}")
    return [k for k in expected if k not in state]


def apply_state(model: Any, state: Mapping[str, Any], source: str) -> None:
    """Load ``state`` into ``model`` after :func:`check_state` (strict up to shared aliases)."""
    check_state(state, model, source)
    model.load_state_dict(dict(state), strict=False)


def read_safetensors(path: Path) -> dict[str, Any]:
    """The tensors of a safetensors file (never runs code); ConfigError if unreadable."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as e:
        raise ConfigError(str(path), None, f"not a readable safetensors file: {e}") from None


_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model")
TORCH_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt")


def read_weights(path: Path) -> dict[str, Any]:
    """A state dict from ``.safetensors`` or a torch file (``weights_only=True``), by suffix."""
    if path.suffix == ".safetensors":
        return read_safetensors(path)
    if path.suffix in TORCH_SUFFIXES:
        return read_torch_checkpoint(path)
    raise ConfigError(str(path), path.suffix, "unknown weights file type",
                      [".safetensors", *TORCH_SUFFIXES])


def read_torch_checkpoint(path: Path) -> dict[str, Any]:
    """The state dict of a legacy ``torch.save`` file, read with ``weights_only=True`` only.

    A checkpoint holding anything but tensors and plain containers (a pickled object that
    would run code on load) is refused without being run. A plain state dict and the common
    wrappers ``{"state_dict": ...}``, ``{"model_state_dict": ...}``, ``{"model": ...}`` are
    accepted.
    """
    import pickle

    import torch

    try:
        obj = torch.load(str(path), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else ""
        raise ConfigError(
            str(path), None,
            "refused: the checkpoint holds Python objects other than tensors, and loading "
            "them could run code from the file; nothing from it was run. Save a plain "
            f"state_dict (torch.save(model.state_dict(), ...)) or use safetensors ({first})",
        ) from None
    except (RuntimeError, OSError, EOFError, ValueError) as e:
        raise ConfigError(str(path), None, f"not a readable PyTorch checkpoint: {e}") from None
    if isinstance(obj, Mapping) and not all(isinstance(v, torch.Tensor) for v in obj.values()):
        for key in _WRAPPER_KEYS:
            if isinstance(obj.get(key), Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping):
        raise ConfigError(str(path), type(obj).__name__, "expected a state dict",
                          ["{name: tensor}", *(f"{{{k!r}: {{name: tensor}}}}" for k in _WRAPPER_KEYS)])
    return dict(obj)
