"""``export_bundle``: an architecture with its trained weights, as a folder a user takes away.

Bundle layout::

    spec.yaml            canonical spec (nas_attn.arch.canonicalize), for people
    spec.json            the same, canonical JSON (spec_hash hashes it, see arch.hash_json)
    weights.safetensors  the state dict (no pickle: nothing runs on load)
    model.onnx           opset 17, dynamic batch axis, checked with onnxruntime at export time
    card.json            objectives, params/FLOPs, latency, training, seed, spec hash, where it
                         sits on the front, the ONNX check, software versions, file SHA-256s
    MODEL_CARD.md        card.json for people
    LOADING.md           how to load it (nas_attn.load, or onnxruntime alone)

Writing is atomic: everything goes into a hidden temporary sibling folder, is checked (the ONNX
graph against PyTorch, the weights reloaded from the written files), then renamed into place.
On any failure the temporary folder is removed and nothing is left at the output path. An
existing output path is refused unless ``force=True``; even then only a previous bundle or an
empty folder is replaced (never an unrelated folder), and the swap is two renames with the old
bundle restored if the second fails.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError, SpecError
from nas_attn.export.layout import (
    CARD_JSON,
    CARD_MD,
    CHECKSUMMED,
    LOADING,
    ONNX,
    SPEC_JSON,
    SPEC_YAML,
    WEIGHTS,
    sha256_file,
)


def resolve_output(out_dir: str | Path, base_dir: str | Path | None = None) -> Path:
    """The absolute output path; with ``base_dir``, refuse one that escapes it.

    ``out_dir`` is taken relative to ``base_dir`` when one is given (an absolute ``out_dir`` must
    still lie inside it); symlinks are resolved first, so a link pointing outside is refused.
    """
    raw = Path(out_dir)
    if str(out_dir) in ("", ".") or raw.name in ("", ".", ".."):
        raise ConfigError("out_dir", str(out_dir), "expected a folder name for the bundle")
    if base_dir is None:
        return raw.expanduser().resolve()
    base = Path(base_dir).expanduser().resolve()
    target = (base / raw.expanduser()).resolve()
    if target == base or not target.is_relative_to(base):
        raise ConfigError("out_dir", str(out_dir),
                          f"escapes the output folder {base}; give a path inside it")
    return target


def _is_replaceable(path: Path) -> bool:
    """A previous bundle, or an empty folder: what ``force=True`` may replace."""
    if path.is_symlink() or not path.is_dir():
        return False
    if not any(path.iterdir()):
        return True
    try:
        card = json.loads((path / CARD_JSON).read_text())
    except (OSError, ValueError):
        return False
    from nas_attn.export.card import FORMAT

    return isinstance(card, Mapping) and card.get("format") == FORMAT


def check_target(target: Path, force: bool) -> None:
    if not (target.exists() or target.is_symlink()):
        return
    if not force:
        raise ConfigError("out_dir", str(target), "already exists; pass force=True (--force) "
                          "to replace it")
    if not _is_replaceable(target):
        raise ConfigError("out_dir", str(target), "exists and is not a nas-attn bundle or an "
                          "empty folder; refusing to replace it even with force")


def _input_shape(canon: Any, input_size: Sequence[int] | None) -> tuple[int, int, int]:
    from nas_attn.backbones import get_backbone

    if input_size is None:
        _, h, w = get_backbone(canon.backbone).natural_input_size(canon.backbone_args)
        return (canon.in_chans, h, w)
    size = tuple(input_size)
    if len(size) == 2:
        size = (canon.in_chans, *size)
    if len(size) != 3 or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
                                 for v in size):
        raise ConfigError("input_size", input_size, "expected (C, H, W) or (H, W) of positive "
                          "integers")
    if size[0] != canon.in_chans:
        raise ConfigError("input_size", input_size,
                          f"channels {size[0]} differ from the spec's in_chans {canon.in_chans}")
    return size  # type: ignore[return-value]


def _state_of(model_or_state_dict: Any, canon: Any) -> Mapping[str, Any]:
    from torch import nn

    from nas_attn.arch import spec_hash

    if isinstance(model_or_state_dict, nn.Module):
        model = getattr(model_or_state_dict, "_orig_mod", model_or_state_dict)  # torch.compile
        own = getattr(model, "spec", None)
        if own is not None and spec_hash(own) != spec_hash(canon):
            raise SpecError("spec", spec_hash(canon), "the model was built from another spec "
                            f"(hash {spec_hash(own)})")
        return model.state_dict()
    if isinstance(model_or_state_dict, Mapping):
        return model_or_state_dict
    raise ConfigError("model_or_state_dict", type(model_or_state_dict).__name__,
                      "expected an nn.Module or a state dict")


def _write_bundle(tmp: Path, canon: Any, model: Any, input_shape: tuple[int, int, int],
                  metadata: Mapping[str, Any], final_name: str, atol: float, rtol: float,
                  pretrained: Mapping[str, str] | None = None,
                  latency_table: str | Path | None = None) -> None:
    import torch

    from nas_attn import onnx_export as onnx_mod
    from nas_attn.arch import spec_hash
    from nas_attn.export import card as card_mod
    from nas_attn.export.loader import load
    from nas_attn.weights import save_weights

    h = spec_hash(canon)
    spec_yaml = canon.to_yaml()
    (tmp / SPEC_YAML).write_text(spec_yaml)
    (tmp / SPEC_JSON).write_text(canon.to_json() + "\n")
    # one metadata key: safetensors stores metadata in a hash map, so several keys would
    # come out in a random order and the same weights would give different files
    save_weights(model, tmp / WEIGHTS,
                 {"nas_attn": json.dumps({"format": card_mod.FORMAT, "spec_hash": h})})
    onnx_mod.export_onnx(model, tmp / ONNX, input_shape)
    check = onnx_mod.check_onnx(model, tmp / ONNX, input_shape, atol=atol, rtol=rtol)
    factory = canon.backbone_args.get("factory") if canon.backbone == "factory" else None
    (tmp / LOADING).write_text(card_mod.loading_note(final_name, input_shape, factory))
    if latency_table is not None:
        from nas_attn.export.latency_card import latency_entry

        entry = latency_entry(latency_table, canon, tmp / ONNX, input_shape)
        metadata = {**metadata, "latency": {**metadata.get("latency", {}), **entry}}
    files = {n: {"sha256": sha256_file(tmp / n), "bytes": (tmp / n).stat().st_size}
             for n in CHECKSUMMED}
    card = card_mod.build_card(
        spec=canon,
        spec_hash=h,
        input_shape=input_shape,
        num_params=sum(p.numel() for p in model.parameters()),
        cost=card_mod.cost_summary(canon, input_shape),
        onnx_check=check.to_dict(),
        metadata=metadata,
        files=files,
        created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        backbone_weights=pretrained,
    )
    (tmp / CARD_JSON).write_text(json.dumps(card, indent=2, sort_keys=False) + "\n")
    (tmp / CARD_MD).write_text(card_mod.render_markdown(card, spec_yaml))
    # the bundle must load back to the very same network
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(7))
    with torch.no_grad():
        same = torch.equal(model.eval()(x), load(tmp)(x))
    if not same:
        raise onnx_mod.ExportError(f"{WEIGHTS}: the written bundle does not reproduce the "
                                   "network's output; the bundle was not written")


def commit_bundle(tmp: Path, target: Path) -> None:
    """Move ``tmp`` to ``target``; an existing target (already vetted) is swapped out."""
    if not (target.exists() or target.is_symlink()):
        try:
            os.rename(tmp, target)
        except OSError as e:  # created meanwhile by someone else
            raise ConfigError("out_dir", str(target), f"could not be created: {e}") from None
        return
    aside = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:8]}")
    os.replace(target, aside)
    try:
        os.replace(tmp, target)
    except BaseException:
        os.replace(aside, target)
        raise
    shutil.rmtree(aside, ignore_errors=True)


def export_bundle(
    spec: Any,
    model_or_state_dict: Any,
    out_dir: str | Path,
    *,
    metadata: Mapping[str, Any],
    input_size: Sequence[int] | None = None,
    force: bool = False,
    base_dir: str | Path | None = None,
    atol: float = 1e-4,
    rtol: float = 1e-3,
    name: str | None = None,
    latency_table: str | Path | None = None,
) -> Path:
    """Write an export bundle of ``spec`` with the weights of ``model_or_state_dict``.

    ``spec``: an ArchSpec, a spec dict or a spec file (canonicalised here). The weights must fit
    the network ``build_model(spec)`` builds exactly (ConfigError naming the tensors otherwise);
    a model that carries its own ``.spec`` must have the same spec hash. ``metadata`` goes into
    the card (keys: :data:`nas_attn.export.card.METADATA_KEYS`). ``input_size`` is (C, H, W) or
    (H, W); by default the backbone's natural input. ``base_dir``: when given, ``out_dir`` is
    relative to it and must not escape it. ``atol``/``rtol``: the ONNX check's tolerance.
    ``name``: the bundle's folder name that ``LOADING.md`` loads (default: ``out_dir``'s
    last part; give it when the bundle is written in a staging folder and moved afterwards).
    ``latency_table``: a latency table (``nas-attn latency build``); the card's ``latency`` then
    states its prediction and the measured latency of ``model.onnx`` here
    (:func:`nas_attn.export.latency_card.latency_entry`).

    Returns the bundle's absolute path. Raises ConfigError for bad input or an existing output
    path without ``force``, :class:`~nas_attn.onnx_export.ExportError` (or its subclass
    ``OnnxMismatchError``) when the ONNX graph cannot be made or does not match PyTorch; in
    every failure case nothing is left at the output path.
    """
    from nas_attn.arch import build_model, load_spec
    from nas_attn.export.card import validate_metadata
    from nas_attn.weights import apply_state

    canon = load_spec(spec)
    pretrained = None  # the bundle's weights cover the whole network: its spec names no file
    if canon.backbone_weights is not None:
        from nas_attn.backbones.pretrained import weights_sha256

        pretrained = {"path": canon.backbone_weights,
                      "sha256": weights_sha256(canon.backbone_weights)}
        canon = dataclasses.replace(canon, backbone_weights=None)
    meta = validate_metadata(metadata)
    target = resolve_output(out_dir, base_dir)
    check_target(target, force)
    shape = _input_shape(canon, input_size)
    model = build_model(canon)
    apply_state(model, _state_of(model_or_state_dict, canon), "weights")
    model.eval()

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    try:
        _write_bundle(tmp, canon, model, shape, meta, name or target.name, atol, rtol,
                      pretrained, latency_table)
        check_target(target, force)  # again: the export took a while
        commit_bundle(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target
