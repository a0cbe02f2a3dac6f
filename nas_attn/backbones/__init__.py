"""Backbones with named insertion points.

The positions and block keywords (:mod:`nas_attn.backbones.positions`) load with the package and
need no torch. The registry loads on first use of any other name, and with it every family file
(one family per file: ``resnet.py``, ``mobilenetv2.py``, ...), each registering its backbones.
"""

from __future__ import annotations

import importlib
from typing import Any

from nas_attn.backbones.positions import BLOCK_KEYWORDS, DEFAULT_POSITION, POSITIONS, resolve_blocks

_REGISTRY_NAMES = ("BACKBONES", "BackboneEntry", "BlockInfo", "StageInfo", "get_backbone",
                   "register_backbone", "shipped_backbones")


def __getattr__(name: str) -> Any:
    if name in _REGISTRY_NAMES:
        from nas_attn._imports import import_family_files

        registry = importlib.import_module("nas_attn.backbones._registry")
        import_family_files(__name__, __path__)
        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["BACKBONES", "BLOCK_KEYWORDS", "DEFAULT_POSITION", "POSITIONS", "BackboneEntry",
           "BlockInfo", "StageInfo", "get_backbone", "register_backbone", "resolve_blocks",
           "shipped_backbones"]
