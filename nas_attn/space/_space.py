"""The validated search space and its three uses: Optuna suggestions, enumeration, size.

All three walk the same decision sequence (:meth:`SearchSpace._walk`), so the parameter names an
Optuna trial records, the points :meth:`SearchSpace.enumerate` yields and the count
:meth:`SearchSpace.size` returns always agree. Decisions, in order, with their Optuna names
(stages counted from 0, as in the spec's ``stages[i]``)::

    backbone                      only when the space lists several backbones
    backbone_args.{name}          only for an argument the space searches (``width: [8, 16]``)
    stage{i}.attention            module name or "none"
    stage{i}.{module}.{hparam}    only when that module is chosen
    stage{i}.position             only when the stage has attention
    stage{i}.blocks               only when the stage has attention ("all", "last", "0,2", ...)
    stage{i}.conv                 "standard" or a conv module
    stage{i}.{conv module}.{hparam}
    stage{i}.fusion               "none" or a fusion module
    stage{i}.{fusion module}.{hparam}

A decision with a single option is fixed: it goes into the spec but is never suggested.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from nas_attn.errors import ConfigError, SpecError
from nas_attn.space._constraints import Constraints, Violation
from nas_attn.space._dist import Choice, Dist

NO_ATTENTION = "none"
STANDARD_CONV = "standard"
NO_FUSION = "none"
TIED_PREFIX = "all_stages"

ModuleSpace = Mapping[str, Mapping[str, Dist]]  # candidate name -> hparam name -> distribution
Pick = Callable[[str, Dist], Any]  # (optuna name, distribution) -> encoded value


@dataclass(frozen=True)
class StageSpace:
    """The candidates of one stage. ``attention``/``conv``/``fusion`` map each candidate (the
    none word included) to its hyperparameter sub-space."""

    attention: ModuleSpace = field(default_factory=lambda: {NO_ATTENTION: {}})
    position: Choice = field(default_factory=lambda: Choice.of(["post_bn"]))
    blocks: Choice = field(default_factory=lambda: Choice.of(["all"]))
    conv: ModuleSpace = field(default_factory=lambda: {STANDARD_CONV: {}})
    fusion: ModuleSpace = field(default_factory=lambda: {NO_FUSION: {}})

    def size(self) -> float:
        att = sum(
            1 if name == NO_ATTENTION
            else _prod(hp) * self.position.size * self.blocks.size
            for name, hp in self.attention.items()
        )
        return att * _module_size(self.conv) * _module_size(self.fusion)

    def to_dict(self) -> dict[str, Any]:
        return {
            "attention": _module_dict(self.attention),
            "position": self.position.to_plain(),
            "blocks": self.blocks.to_plain(),
            "conv": _module_dict(self.conv),
            "fusion": _module_dict(self.fusion),
        }


def _prod(hp: Mapping[str, Dist]) -> float:
    return math.prod(d.size for d in hp.values())


def _module_size(ms: ModuleSpace) -> float:
    return sum(_prod(hp) for hp in ms.values())


def _module_dict(ms: ModuleSpace) -> dict[str, Any]:
    return {name: {k: d.to_plain() for k, d in hp.items()} for name, hp in ms.items()}


@dataclass(frozen=True)
class Point:
    """One point of a finite space: the Optuna parameters, and the canonical spec they build or
    the reason they cannot be built."""

    params: dict[str, Any]
    spec: Any = None  # ArchSpec
    error: SpecError | None = None


@dataclass(frozen=True)
class SearchSpace:
    """A validated search space. Build one with :func:`load_space` or :func:`parse_space`."""

    backbones: tuple[str, ...]
    stages: tuple[StageSpace, ...]
    backbone_args: Mapping[str, Any] = field(default_factory=dict)  # the fixed ones
    num_classes: int = 10
    in_chans: int = 3
    input_size: tuple[int, int, int] | None = None
    constraints: Constraints = field(default_factory=Constraints)
    name: str = ""
    description: str = ""
    tie_stages: bool = False  # one set of decisions (named all_stages.*) shared by every stage
    searched_backbone_args: Mapping[str, Dist] = field(default_factory=dict)  # name -> values

    # -- construction -------------------------------------------------------------------------
    def with_data(self, num_classes: int | None = None, in_chans: int | None = None,
                  input_size: tuple[int, int, int] | None = None) -> SearchSpace:
        """A copy for a dataset: its class count, channels and input size."""
        return replace(
            self,
            num_classes=self.num_classes if num_classes is None else num_classes,
            in_chans=self.in_chans if in_chans is None else in_chans,
            input_size=self.input_size if input_size is None else tuple(input_size),
        )

    def to_dict(self) -> dict[str, Any]:
        """The canonical dict: every stage written out, every hyperparameter's sub-space explicit
        (defaults included). ``from_dict(to_dict())`` gives an equal space."""
        out: dict[str, Any] = {
            "name": self.name,
            "description": self.description,
            "backbone": self.backbones[0] if len(self.backbones) == 1 else list(self.backbones),
            "backbone_args": {**self.backbone_args,
                              **{k: d.to_plain() for k, d in self.searched_backbone_args.items()}},
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "input_size": list(self.input_size) if self.input_size else None,
            "stages": [s.to_dict() for s in self.stages],
            "constraints": self.constraints.to_dict(),
            "tie_stages": self.tie_stages,
        }
        return out

    @property
    def hash(self) -> str:
        """16 hex chars of the canonical dict's hash (name and description left out). As for
        spec hashes, hyperparameters renamed to the zoo's shared names are hashed under their
        first name (``HParamSet.hash_form``), so spaces written before keep their hash."""
        from nas_attn.modules import MODULES

        d = self.to_dict()
        d.pop("name")
        d.pop("description")
        for st in d["stages"]:
            for slot in ("attention", "conv", "fusion"):
                st[slot] = {
                    name: MODULES.get(name).hparams.hash_form(hp, sub_spaces=True)
                    if name in MODULES else hp
                    for name, hp in st[slot].items()
                }
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    # -- the decision sequence ----------------------------------------------------------------
    def _walk(self, pick: Pick) -> dict[str, Any]:
        """Walk the decisions, asking ``pick`` for every non-fixed one; return the raw spec."""

        def choose(name: str, d: Dist) -> Any:
            return d.fixed() if d.is_fixed else d.decode(pick(name, d), name)

        def module(prefix: str, ms: ModuleSpace, key: str) -> tuple[str, dict[str, Any]]:
            chosen = choose(f"{prefix}.{key}", Choice.of(list(ms)))
            hp = {k: choose(f"{prefix}.{chosen}.{k}", d) for k, d in ms[chosen].items()}
            return chosen, hp

        backbone = choose("backbone", Choice.of(list(self.backbones)))
        args = dict(self.backbone_args)
        for k, d in self.searched_backbone_args.items():
            args[k] = choose(f"backbone_args.{k}", d)
        stages: list[dict[str, Any]] = []
        for i, st in enumerate(self.stages):
            if self.tie_stages and stages:
                stages.append(dict(stages[0]))
                continue
            p = TIED_PREFIX if self.tie_stages else f"stage{i}"
            entry: dict[str, Any] = {}
            att, hp = module(p, st.attention, "attention")
            if att != NO_ATTENTION:
                entry["attention"] = {"type": att, **hp}
                entry["position"] = choose(f"{p}.position", st.position)
                entry["blocks"] = choose(f"{p}.blocks", st.blocks)
            conv, hp = module(p, st.conv, "conv")
            if conv != STANDARD_CONV:
                entry["conv"] = {"type": conv, **hp}
            fusion, hp = module(p, st.fusion, "fusion")
            if fusion != NO_FUSION:
                entry["fusion"] = {"type": fusion, **hp}
            stages.append(entry)
        return {
            "backbone": backbone,
            "backbone_args": args,
            "num_classes": self.num_classes,
            "in_chans": self.in_chans,
            "stages": stages,
        }

    # -- Optuna --------------------------------------------------------------------------------
    def suggest(self, trial: Any) -> Any:
        """Ask an Optuna trial (define-by-run) for one architecture; return its canonical spec.

        Raises SpecError for a combination that cannot be built (the trial's parameters are
        recorded by then, so the caller can tell Optuna the trial failed)."""
        from nas_attn.arch import canonicalize

        return canonicalize(self._walk(lambda name, d: d.suggest(trial, name)))

    def build(self, params: Mapping[str, Any]) -> Any:
        """The canonical spec of a recorded parameter set (``trial.params``). Missing or
        unexpected parameters are ConfigErrors; impossible combinations SpecErrors."""
        from nas_attn.arch import canonicalize

        used: set[str] = set()

        def pick(name: str, d: Dist) -> Any:
            if name not in params:
                raise ConfigError(name, None, "missing parameter", sorted(params))
            used.add(name)
            return params[name]

        raw = self._walk(pick)
        extra = sorted(set(params) - used)
        if extra:
            raise ConfigError(extra[0], params[extra[0]],
                              "parameter not used by this space (or its branch)", sorted(used))
        return canonicalize(raw)

    def sample_params(self, rng: Any) -> dict[str, Any]:
        """Random parameters (uniform per decision; log-uniform on log ranges)."""
        params: dict[str, Any] = {}

        def pick(name: str, d: Dist) -> Any:
            params[name] = d.sample(rng)
            return params[name]

        self._walk(pick)
        return params

    # -- size and enumeration ------------------------------------------------------------------
    def size(self) -> float:
        """Number of distinct parameter assignments (an int; ``math.inf`` when a float range has
        no step). Impossible combinations count: the dry run reports how many there are."""
        n = self.layout_count
        if self.tie_stages:
            return n * self.stages[0].size()
        return n * math.prod(s.size() for s in self.stages)

    @property
    def layout_count(self) -> float:
        """Backbone layouts a spec can have: backbones x combinations of searched arguments."""
        return len(self.backbones) * math.prod(
            d.size for d in self.searched_backbone_args.values())

    def distributions(self) -> dict[str, Dist]:
        """Every decision any branch can ask for (fixed ones left out), by Optuna name."""
        out: dict[str, Dist] = {}

        def add(name: str, d: Dist) -> None:
            if not d.is_fixed:
                out[name] = d

        def module(prefix: str, ms: ModuleSpace, key: str) -> None:
            add(f"{prefix}.{key}", Choice.of(list(ms)))
            for m, hp in ms.items():
                for k, d in hp.items():
                    add(f"{prefix}.{m}.{k}", d)

        add("backbone", Choice.of(list(self.backbones)))
        for k, d in self.searched_backbone_args.items():
            add(f"backbone_args.{k}", d)
        for i, st in enumerate(self.stages[:1] if self.tie_stages else self.stages):
            p = TIED_PREFIX if self.tie_stages else f"stage{i}"
            module(p, st.attention, "attention")
            if any(m != NO_ATTENTION for m in st.attention):
                add(f"{p}.position", st.position)
                add(f"{p}.blocks", st.blocks)
            module(p, st.conv, "conv")
            module(p, st.fusion, "fusion")
        return out

    def grid(self) -> dict[str, list[Any]]:
        """``{name: values}`` for Optuna's GridSampler (finite spaces only). Conditional
        parameters are in the grid too, so the grid has more points than :meth:`size` when
        branches differ; duplicates build the same spec (same hash)."""
        if self.size() == math.inf:
            raise ConfigError("search.sampler", "grid",
                              "the grid sampler needs a finite space (give float ranges a step)")
        return {k: d.values() for k, d in self.distributions().items()}

    def iter_params(self) -> Iterator[dict[str, Any]]:
        """Every parameter assignment of a finite space, in a stable order."""
        if self.size() == math.inf:
            raise ConfigError("space", None,
                              "infinite space (a float range without step) cannot be enumerated")
        prefix: list[int] = []
        while True:
            counts: list[int] = []
            params: dict[str, Any] = {}

            def pick(name: str, d: Dist, _counts: list[int] = counts,
                     _params: dict[str, Any] = params, _prefix: list[int] = prefix) -> Any:
                i = len(_counts)
                vals = d.values()
                _counts.append(len(vals))
                _params[name] = vals[_prefix[i] if i < len(_prefix) else 0]
                return _params[name]

            self._walk(pick)
            yield params
            idx = prefix + [0] * (len(counts) - len(prefix))
            j = len(counts) - 1
            while j >= 0 and idx[j] + 1 >= counts[j]:
                j -= 1
            if j < 0:
                return
            prefix = [*idx[:j], idx[j] + 1]

    def enumerate(self) -> Iterator[Point]:
        """Every point of a finite space with its canonical spec or its SpecError."""
        for params in self.iter_params():
            yield self.point(params)

    def point(self, params: Mapping[str, Any]) -> Point:
        try:
            return Point(dict(params), self.build(params))
        except SpecError as e:
            return Point(dict(params), None, e)

    # -- constraints ---------------------------------------------------------------------------
    def default_input_size(self) -> tuple[int, int, int]:
        if self.input_size is not None:
            return self.input_size
        from nas_attn.backbones import get_backbone

        _, h, w = get_backbone(self.backbones[0]).natural_input_size(self.backbone_args)
        return (self.in_chans, h, w)

    def check(self, spec: Any, input_size: tuple[int, int, int] | None = None) -> list[Violation]:
        """The constraints ``spec`` violates (empty when it satisfies all), measured with
        :func:`nas_attn.cost.profile` at ``input_size`` (default: :meth:`default_input_size`)."""
        return self.constraints.check(spec, input_size or self.default_input_size())
