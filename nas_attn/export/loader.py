"""``nas_attn.load``: a bundle (or a bare weights file plus its spec) back to an ``nn.Module``.

The network is rebuilt from the spec with :func:`nas_attn.arch.build_model` and the weights are
read from safetensors, which cannot run code. A legacy ``torch.save`` state dict (``.pt``,
``.pth``) is read with ``torch.load(weights_only=True)`` only: a checkpoint that holds pickled
objects (which could run code on load) is refused without being run. When ``card.json`` is
present every file it lists is checked against its SHA-256 and the spec against its hash.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nas_attn.errors import ConfigError
from nas_attn.export.layout import (
    CARD_JSON,
    LEGACY_WEIGHTS,
    SPEC_JSON,
    SPEC_YAML,
    WEIGHTS,
    sha256_file,
)
from nas_attn.weights import read_weights


def _device(device: Any) -> Any:
    import torch

    try:
        return torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError("device", device, "unknown device", ["cpu", "cuda", "cuda:0", "mps"]
                          ) from None


def _read_card(folder: Path) -> dict[str, Any] | None:
    path = folder / CARD_JSON
    if not path.exists():
        return None
    from nas_attn.export.card import FORMAT

    try:
        card = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ConfigError(str(path), None, f"not readable JSON: {e}") from None
    if not isinstance(card, Mapping) or card.get("format") != FORMAT:
        raise ConfigError(str(path), card.get("format") if isinstance(card, Mapping) else None,
                          "not a nas-attn bundle card", [FORMAT])
    return dict(card)


def _verify_files(folder: Path, card: Mapping[str, Any]) -> None:
    files = card.get("files") or {}
    for name, info in files.items():
        path = folder / name
        if not path.exists():
            raise ConfigError(str(path), None, f"missing: {CARD_JSON} lists it")
        if sha256_file(path) != info.get("sha256"):
            raise ConfigError(str(path), None, f"SHA-256 differs from the one in {CARD_JSON}: "
                              "the file was changed or is corrupt")


def _read_spec(path: Path) -> Any:
    from nas_attn.arch import canonicalize

    try:
        if path.suffix == ".json":
            data = json.loads(path.read_text())
        else:
            from nas_attn.yamlio import load_yaml

            data = load_yaml(path)
    except ConfigError:
        raise
    except (OSError, ValueError) as e:
        raise ConfigError(str(path), None, f"not a readable spec: {e}") from None
    try:
        return canonicalize(data)
    except ConfigError as e:
        raise ConfigError(str(path), None, f"invalid spec: {e}") from None


def _bundle_parts(folder: Path) -> tuple[Any, Path]:
    """The canonical spec and the weights file of a bundle folder, checked against its card."""
    from nas_attn.arch import spec_hash

    spec_files = [folder / n for n in (SPEC_JSON, SPEC_YAML) if (folder / n).exists()]
    weights = [folder / n for n in (WEIGHTS, LEGACY_WEIGHTS) if (folder / n).exists()]
    if not spec_files or not weights:
        missing = ([f"{SPEC_JSON} (or {SPEC_YAML})"] if not spec_files else []) + (
            [f"{WEIGHTS} (or {LEGACY_WEIGHTS})"] if not weights else [])
        present = sorted(p.name for p in folder.iterdir())[:10]
        raise ConfigError(str(folder), None,
                          f"not a nas-attn bundle: missing {', '.join(missing)}; found "
                          f"{present or 'nothing'}",
                          [SPEC_JSON, SPEC_YAML, WEIGHTS, LEGACY_WEIGHTS, CARD_JSON])
    card = _read_card(folder)
    if card is not None:
        _verify_files(folder, card)
    specs = [(p, _read_spec(p)) for p in spec_files]
    hashes = {p.name: spec_hash(s) for p, s in specs}
    if len(set(hashes.values())) > 1:
        raise ConfigError(str(folder / SPEC_YAML), hashes[SPEC_YAML],
                          f"describes another network than {SPEC_JSON} ({hashes[SPEC_JSON]})")
    spec = specs[0][1]
    if card is not None and card.get("spec_hash") != spec_hash(spec):
        raise ConfigError(str(specs[0][0]), spec_hash(spec),
                          f"spec hash differs from {CARD_JSON}'s {card.get('spec_hash')!r}")
    return spec, weights[0]


def load(bundle_path: str | Path, device: Any = "cpu", *, spec: Any = None) -> Any:
    """Rebuild the network of an export bundle and load its weights.

    ``bundle_path``: a bundle folder (``spec.json``/``spec.yaml`` + ``weights.safetensors`` or a
    legacy ``weights.pt``), or a bare weights file (``.safetensors``, ``.pt``...) together with
    ``spec=`` (ArchSpec, dict or spec file). Returns the ``nn.Module`` in eval mode on
    ``device``, with its canonical spec as ``model.spec``. Raises ConfigError naming the file
    for a missing or incomplete bundle, a changed file, weights that do not fit the spec, or a
    checkpoint that holds pickled code.
    """
    from nas_attn.arch import build_model, load_spec, spec_hash
    from nas_attn.weights import apply_state

    dev = _device(device)
    path = Path(bundle_path).expanduser()
    if not path.exists():
        raise ConfigError("bundle_path", str(path), "no such file or folder")
    if path.is_dir():
        canon, weights_path = _bundle_parts(path)
        if spec is not None and spec_hash(spec) != spec_hash(canon):
            raise ConfigError("spec", spec_hash(spec),
                              f"differs from the bundle's spec ({spec_hash(canon)})")
    else:
        if spec is None:
            raise ConfigError("spec", None, f"{path.name} is a bare weights file; pass the "
                              "spec it was trained with (spec=...) or give a bundle folder")
        canon, weights_path = load_spec(spec), path
    if canon.backbone_weights is not None:  # the bundle's weights cover the whole network
        canon = dataclasses.replace(canon, backbone_weights=None)
    state = read_weights(weights_path)
    model = build_model(canon)
    apply_state(model, state, str(weights_path))
    return model.to(dev).eval()
