"""Where a zoo module can go in a backbone: the insertion positions and the block keywords.

These names belong to the backbone layer (every block exposes its positions); the spec, the
search-space language and the ablation designs read them from here. Light on purpose: no torch.
"""

from __future__ import annotations

import re
from typing import Any

from nas_attn.errors import ConfigError, SpecError

DEFAULT_POSITION = "post_bn"
POSITIONS = ("pre", "mid", "post_bn", "post_add", "identity")
BLOCK_KEYWORDS = ("all", "first", "last")
FREEZE_WORD = re.compile(r"^(stem|stage\d+)$")  # the parts train.freeze names


def resolve_blocks(sel: str | tuple[int, ...], n: int, field: str) -> list[int]:
    """The sorted block indices a selection names in a stage of ``n`` blocks: a keyword of
    BLOCK_KEYWORDS or indices (negative ones count from the end). SpecError naming ``field``
    for an index out of range or a repeated one."""
    if sel == "all":
        return list(range(n))
    if sel == "first":
        return [0]
    if sel == "last":
        return [n - 1]
    out = []
    for i in sel:
        j = i + n if i < 0 else i
        if not 0 <= j < n:
            raise SpecError(field, i, f"block index out of range for a stage of {n} blocks",
                            list(range(n)))
        out.append(j)
    if len(set(out)) != len(out):
        raise SpecError(field, list(sel), "duplicate block indices")
    return sorted(out)


def check_freeze(value: Any) -> tuple[str, ...]:
    """``train.freeze``: distinct parts, ``stem`` (what runs before the first stage) and
    ``stageN`` (0-based, as ``stages[N]``); whether the network has stage N is checked when
    it is built (:func:`nas_attn.backbones.pretrained.frozen_modules`)."""
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or len(set(items)) < len(items) or not all(
        isinstance(w, str) and FREEZE_WORD.match(w) for w in items
    ):
        raise ConfigError("train.freeze", value, "expected a list of distinct network parts",
                          ["stem", "stage0", "stage1", "..."])
    return tuple(items)
