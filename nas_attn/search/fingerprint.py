"""The study fingerprint: what must not change between runs that share an Optuna study.

A study's trials are only comparable when they were produced by the same objectives (and
directions), the same search space, the same data and training settings (with the SHA-256 of
pretrained ``backbone_weights`` and of plugin sources, a factory backbone's module included)
and the same tool version. The fingerprint is a plain dict of those settings, stored in the study's user attrs
(``nas_attn_fingerprint``) together with its hash. Reusing a study name with a different
fingerprint is refused with a message naming every differing entry; an identical fingerprint
continues the study. Sampler, seed, trial count and resources are deliberately *not* part of
it: changing them does not make old trials incomparable.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from nas_attn.errors import ConfigError

ATTR = "nas_attn_fingerprint"
HASH_ATTR = "nas_attn_fingerprint_hash"


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def fingerprint_hash(fingerprint: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_json(fingerprint).encode()).hexdigest()[:16]


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: canonical_json(value)}


def differences(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """Dotted keys whose values differ between two fingerprints (pure)."""
    a, b = _flatten(stored), _flatten(current)
    return sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))


def check_compatible(study_name: str, stored: Mapping[str, Any] | None,
                     current: Mapping[str, Any]) -> None:
    """Raise ConfigError when a stored study was made with another setup."""
    if stored is None:
        raise ConfigError(
            "study", study_name,
            "a study of this name exists in the storage but was not created by nas-attn "
            "(no fingerprint); choose another study name or storage")
    diff = differences(stored, current)
    if diff:
        shown = ", ".join(diff[:8]) + (f" (+{len(diff) - 8} more)" if len(diff) > 8 else "")
        raise ConfigError(
            "study", study_name,
            f"a study of this name already exists with a different setup ({shown} differ); "
            "rename the study, use another --storage/--out, or restore the original settings")
