"""The arguments of the ``factory`` backbone and the module-path patterns they hold (no torch).

A factory backbone is any ``nn.Module`` a user's function returns::

    backbone: factory
    backbone_args:
      factory: my_models:resnet50        # module:function or file.py:function (user code:
                                         # imported only with --allow-plugins)
      kwargs: {width: 64}                # keyword arguments of the function (plain YAML values)
      input_size: [224, 224]             # H, W the channels are inferred at (the natural input)
      stages: layer*                     # a pattern (or a list): each module it matches is a stage
      blocks: layer*.*                   # optional: the blocks (default: a stage's children)
      positions:                         # where gate modules go, by position name
        post_bn: {after: layer*.*.bn3}
        pre: {before: layer*.*.conv1}
      replace: layer*.*.conv2            # the 3x3 convs a conv module may replace
      classifier: fc                     # the nn.Linear resized to the spec's num_classes

A pattern names module paths (``model.named_modules()``) one dot-separated part at a time:
``*``, ``?`` and ``[...]`` match within one part (``layer3.*.bn2`` is every block of layer3),
``**`` matches any number of parts. :func:`check_factory_args` gives the canonical form every
spec hashes (patterns as lists, defaults written out); docs/backbones.md is the user's page.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from nas_attn.backbones.positions import POSITIONS
from nas_attn.errors import SpecError

FACTORY_KEYS = ("factory", "kwargs", "input_size", "stages", "blocks", "positions", "replace",
                "classifier")
POINT_KINDS = ("after", "before")
DEFAULT_INPUT_SIZE = (224, 224)
_REF = re.compile(r"^(?:[A-Za-z_][\w.]*|.+\.py):[A-Za-z_][\w.]*$")  # module:fn, file.py:fn


def match_parts(pattern: Sequence[str], name: Sequence[str]) -> bool:
    """Whether a module path (split on dots) matches a pattern (split on dots)."""
    if not pattern:
        return not name
    if pattern[0] == "**":
        return any(match_parts(pattern[1:], name[i:]) for i in range(len(name) + 1))
    return bool(name) and fnmatchcase(name[0], pattern[0]) and match_parts(pattern[1:], name[1:])


def match(pattern: str, paths: Sequence[str], field: str) -> list[str]:
    """The paths ``pattern`` matches, in the order given; SpecError naming ``field``, the
    pattern and the nearest module names when it matches none."""
    parts = pattern.split(".")
    found = [p for p in paths if match_parts(parts, p.split("."))]
    if not found:
        raise SpecError(field, pattern, "matches no module of the factory's network; nearest "
                        "module names", nearest(pattern, paths))
    return found


def nearest(pattern: str, paths: Sequence[str], n: int = 5) -> list[str]:
    """The module names closest to a pattern (difflib), the shallowest names if none is."""
    close = difflib.get_close_matches(pattern, list(paths), n=n, cutoff=0.5)
    if close:
        return close
    depth = pattern.count(".")
    return [p for p in paths if p.count(".") == depth][:n] or list(paths)[:n]


def _patterns(value: Any, field: str) -> list[str]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list | tuple) or not items or not all(
        isinstance(p, str) and p and all(part for part in p.split(".")) for p in items
    ):
        raise SpecError(field, value, "expected a module-path pattern (e.g. 'layer3.*.bn2') "
                        "or a non-empty list of them")
    return list(items)


def check_ref(ref: Any, field: str) -> str:
    if not isinstance(ref, str) or not _REF.match(ref):
        raise SpecError(field, ref, "expected 'module:function' or 'path/to/file.py:function' "
                        "(e.g. 'my_models:resnet50')")
    return ref


def check_factory_args(args: Mapping[str, Any], field: str = "backbone_args") -> dict[str, Any]:
    """The canonical arguments of a factory backbone; SpecError naming ``field.key``."""
    if not isinstance(args, Mapping):
        raise SpecError(field, args, "expected a mapping", FACTORY_KEYS)
    for k in args:
        if k not in FACTORY_KEYS:
            raise SpecError(f"{field}.{k}", k, "unknown key", FACTORY_KEYS)
    if "factory" not in args:
        raise SpecError(f"{field}.factory", None, "missing: the 'module:function' that "
                        "returns the network")
    kwargs = args.get("kwargs") or {}
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise SpecError(f"{field}.kwargs", kwargs, "expected a mapping of keyword arguments")
    try:
        kwargs = json.loads(json.dumps(dict(kwargs)))
    except (TypeError, ValueError):
        raise SpecError(f"{field}.kwargs", kwargs, "expected plain values (numbers, strings, "
                        "booleans, lists, mappings): they are part of the spec's hash") from None
    size = args.get("input_size", list(DEFAULT_INPUT_SIZE))
    if not isinstance(size, list | tuple) or len(size) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in size
    ):
        raise SpecError(f"{field}.input_size", size, "expected [height, width], positive "
                        "integers")
    if "stages" not in args:
        raise SpecError(f"{field}.stages", None, "missing: a pattern whose every match is one "
                        "stage (e.g. 'layer*')")
    raw_pos = args.get("positions") or {}
    if not isinstance(raw_pos, Mapping):
        raise SpecError(f"{field}.positions", raw_pos, "expected a mapping of position names "
                        "to {after: PATTERN} or {before: PATTERN}", POSITIONS)
    positions: dict[str, dict[str, list[str]]] = {}
    for pos in POSITIONS:  # canonical order
        if pos not in raw_pos:
            continue
        rule, f = raw_pos[pos], f"{field}.positions.{pos}"
        if not isinstance(rule, Mapping) or len(rule) != 1 or next(iter(rule)) not in POINT_KINDS:
            raise SpecError(f, rule, "expected {after: PATTERN} or {before: PATTERN}",
                            POINT_KINDS)
        kind, pattern = next(iter(rule.items()))
        positions[pos] = {kind: _patterns(pattern, f"{f}.{kind}")}
    for pos in raw_pos:
        if pos not in POSITIONS:
            raise SpecError(f"{field}.positions.{pos}", pos, "unknown position", POSITIONS)
    blocks = args.get("blocks")
    replace = args.get("replace")
    classifier = args.get("classifier")
    if classifier is not None and (not isinstance(classifier, str) or not classifier):
        raise SpecError(f"{field}.classifier", classifier, "expected the module path of the "
                        "network's final nn.Linear (e.g. 'fc')")
    return {
        "factory": check_ref(args["factory"], f"{field}.factory"),
        "kwargs": kwargs,
        "input_size": list(size),
        "stages": _patterns(args["stages"], f"{field}.stages"),
        "blocks": None if blocks is None else _patterns(blocks, f"{field}.blocks"),
        "positions": positions,
        "replace": [] if replace is None else _patterns(replace, f"{field}.replace"),
        "classifier": classifier,
    }


def args_key(args: Mapping[str, Any]) -> str:
    """A canonical argument set as one string (the cache key of its layout)."""
    return json.dumps(args, sort_keys=True, separators=(",", ":"))
