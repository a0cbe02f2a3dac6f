"""The files of an export bundle: their names, which are checksummed, and the checksum.

Written by :mod:`nas_attn.export.bundle`, read by :mod:`nas_attn.export.loader`; this module is
the format both follow, so neither imports the other to learn it.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

SPEC_YAML = "spec.yaml"
SPEC_JSON = "spec.json"
WEIGHTS = "weights.safetensors"
LEGACY_WEIGHTS = "weights.pt"
ONNX = "model.onnx"
CARD_JSON = "card.json"
CARD_MD = "MODEL_CARD.md"
LOADING = "LOADING.md"
BUNDLE_FILES = (SPEC_YAML, SPEC_JSON, WEIGHTS, ONNX, CARD_JSON, CARD_MD, LOADING)
CHECKSUMMED = (SPEC_YAML, SPEC_JSON, WEIGHTS, ONNX, LOADING)


def sha256_file(path: Path) -> str:
    with path.open("rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()
