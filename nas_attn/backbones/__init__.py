"""Backbones with named insertion points. Importing this package registers every backbone
(one family per file: ``resnet.py``, ``mobilenetv2.py``, ...)."""

import importlib
import pkgutil

from nas_attn.backbones._registry import (
    BACKBONES,
    POSITIONS,
    BackboneEntry,
    BlockInfo,
    StageInfo,
    get_backbone,
    register_backbone,
    shipped_backbones,
)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_info.name}")

__all__ = ["BACKBONES", "POSITIONS", "BackboneEntry", "BlockInfo", "StageInfo", "get_backbone",
           "register_backbone", "shipped_backbones"]
