"""Backbones with named insertion points. Importing this package registers every backbone
(one family per file: ``resnet.py``, ``mobilenetv2.py``, ...)."""

from nas_attn._imports import import_family_files
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

import_family_files(__name__, __path__)

__all__ = ["BACKBONES", "POSITIONS", "BackboneEntry", "BlockInfo", "StageInfo", "get_backbone",
           "register_backbone", "shipped_backbones"]
