"""The weight-sharing supernet of a search space (one-shot NAS, SPOS: Guo et al., ECCV 2020,
arXiv 1904.00420; FairNAS: Chu et al., ICCV 2021, arXiv 1907.01845).

The supernet is the space's backbone built once, plain, with a :class:`Switch` at every place a
candidate can go: at every candidate position of every block, a switch holding one module per
candidate gate (module and hyperparameter values); in place of every block's replaceable 3x3
conv, a switch holding the backbone's own conv (``standard``) and one module per candidate conv.
The backbone's weights (stem, convs, BNs, head) are shared by every architecture; a candidate's
weights are its own, shared by every architecture that uses it at that place.

An architecture is a canonical :class:`~nas_attn.arch.ArchSpec` of the space; :meth:`Supernet.
activate` sets the switches from it through the backbone's own per-block plan
(``backbones._net.block_plans``), so a module's position and block selection, which exist only
when the module is chosen (the space's conditional parameters), are read from the same switches.
With the switches set, the supernet computes exactly what the stand-alone network of that spec
computes with the same weights (:meth:`Supernet.path_state_dict` hands those weights out under
the stand-alone network's names; tests/test_supernet.py checks the equality).

Refused up front (:func:`check_space`, ConfigError naming the stage and the choice): a space over
several backbones, tied stages, a fusion module (it replaces the stage's output by a function of
every block's residual sum, a change of the stage's structure rather than a module in a place)
and a hyperparameter range without a finite set of values (the supernet holds one module per
value). Channels never depend on another stage's choice in this space language: a backbone's
layout is a function of its fixed ``backbone_args`` alone, so every candidate is built at the
channels of its place once.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nas_attn.arch import ArchSpec, ModuleChoice, StageSpec, build_model, canonicalize, load_spec
from nas_attn.backbones._net import block_plans, find_zoo_modules, make_conv, make_gates
from nas_attn.errors import ConfigError
from nas_attn.oneshot.learned import probabilities
from nas_attn.space import Constraints, SearchSpace, StageSpace

if TYPE_CHECKING:
    from nas_attn.backbones import StageInfo

STANDARD = "standard"


class Switch(nn.Module):
    """The candidates of one place of the network (``cands``, keyed by :func:`choice_key`);
    ``active`` names the one that runs, ``None`` the identity (a gate position left empty)."""

    def __init__(self, cands: Mapping[str, nn.Module]) -> None:
        super().__init__()
        self.cands = nn.ModuleDict(dict(cands))
        self.active: str | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.active is None else self.cands[self.active](x)

    def extra_repr(self) -> str:
        return f"active={self.active}"


def choice_key(choice: ModuleChoice | None) -> str:
    """The key of a candidate in a switch: ``standard`` for the backbone's conv, else the
    module's name and 8 hex chars of its canonical hyperparameters (``se_1a2b3c4d``)."""
    if choice is None:
        return STANDARD
    blob = json.dumps(choice.to_dict(), sort_keys=True, separators=(",", ":"))
    return f"{choice.type}_{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


def check_space(space: SearchSpace) -> None:
    """ConfigError, naming the stage and the choice, for what a supernet cannot hold (see the
    module docstring)."""
    if len(space.backbones) != 1:
        raise ConfigError("space.backbone", list(space.backbones),
                          "a supernet shares one backbone's weights; build one supernet per "
                          "backbone", list(space.backbones))
    for key, dist in space.searched_backbone_args.items():
        raise ConfigError(f"space.backbone_args.{key}", dist.to_plain(),
                          "a searched backbone argument changes every stage's channels or "
                          "blocks, which one supernet cannot share; fix it to one value",
                          dist.to_plain())
    if space.tie_stages:
        raise ConfigError("space.tie_stages", True, "the supernet trains stages independently "
                          "(one choice per stage per path); untie the stages", [False])
    for i, st in enumerate(space.stages):
        fusions = [f for f in st.fusion if f != "none"]
        if fusions:
            raise ConfigError(f"stages[{i}].fusion", fusions[0],
                              "a fusion module changes the stage's structure (its output is "
                              "built from every block's residual sum), which a supernet switch "
                              "cannot turn on and off", ["none"])
        for slot in ("attention", "conv"):
            for name, hps in getattr(st, slot).items():
                for hp, dist in hps.items():
                    if dist.size == float("inf"):
                        raise ConfigError(f"stages[{i}].{slot}.{name}.{hp}", dist.to_plain(),
                                          "the supernet holds one module per value; give the "
                                          "range a step or list the values")


def stage_options(space: SearchSpace, stage: int) -> list[StageSpec]:
    """Every buildable choice of one stage (canonical stage entries, in the space's order, each
    once): the space's decisions of that stage with every other stage plain. The space's
    constraints are not applied (they bound whole networks)."""
    plain = StageSpace()
    single = replace(space, stages=tuple(st if i == stage else plain
                                         for i, st in enumerate(space.stages)),
                     constraints=Constraints())
    seen: dict[str, StageSpec] = {}
    for point in single.enumerate():
        if point.error is None:
            st = point.spec.stages[stage]
            seen.setdefault(json.dumps(st.to_dict(), sort_keys=True), st)
    if not seen:
        raise ConfigError(f"stages[{stage}]", None, "no choice of this stage can be built")
    return list(seen.values())


def _set_attr(root: nn.Module, dotted: str, module: nn.Module) -> None:
    *parents, last = dotted.split(".")
    for p in parents:
        root = getattr(root, p)
    setattr(root, last, module)


def _get_attr(root: nn.Module, dotted: str) -> nn.Module:
    for p in dotted.split("."):
        root = getattr(root, p)
    return root


class Supernet(nn.Module):
    """Every architecture of a space in one network; build it with :func:`build_supernet`.

    ``options[s]`` lists stage ``s``'s choices; a *path* is one option index per stage
    (:meth:`path_spec`). ``forward`` runs the active architecture."""

    def __init__(self, space: SearchSpace, net: nn.Module, options: list[list[StageSpec]],
                 layout: Sequence[StageInfo], gates: dict[tuple[int, int, str], Switch],
                 convs: dict[tuple[int, int], Switch]) -> None:
        super().__init__()
        self.space = space
        self.net = net
        self.options = options
        self.layout = tuple(layout)
        self._gates = gates  # plain dicts: the switches are registered under ``net`` once
        self._convs = convs
        self._names = {id(m): n for n, m in net.named_modules() if isinstance(m, Switch)}
        self._settings: dict[tuple[int, str], list[tuple[Switch, str | None]]] = {}
        first = canonicalize(self.path_spec([0] * len(options)))
        self.backbone, self.backbone_args = first.backbone, dict(first.backbone_args)
        # the learned switch weights (mode learned, oneshot/learned.py): logits over each
        # stage's options, zero (uniform) unless trained; buffers, so the weights' optimiser
        # never sees them and the checkpoint holds them (``arch.s<stage>``)
        self.arch = nn.Module()
        for s, opts in enumerate(options):
            self.arch.register_buffer(f"s{s}", torch.zeros(len(opts)))

    @property
    def space_hash(self) -> str:
        return self.space.hash

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def arch_logits(self) -> list[torch.Tensor]:
        """Each stage's architecture logits over its options (the tensors themselves)."""
        return [getattr(self.arch, f"s{s}") for s in range(len(self.options))]

    def arch_probabilities(self) -> list[list[float]]:
        """Each stage's learned distribution over its options (uniform unless trained by
        ``mode="learned"``)."""
        return probabilities(self.arch_logits())

    def switches(self) -> Iterator[tuple[str, Switch]]:
        """Every switch as ``(qualified name under net, switch)``."""
        for m in [*self._gates.values(), *self._convs.values()]:
            yield self._names[id(m)], m

    def path_spec(self, path: Sequence[int]) -> ArchSpec:
        """The canonical spec of a path (one option index per stage)."""
        return ArchSpec(self.space.backbones[0], self.space.num_classes, self.space.in_chans,
                        tuple(self.options[s][o] for s, o in enumerate(path)),
                        dict(self.space.backbone_args))

    def _stage_setting(self, s: int, stage: StageSpec) -> list[tuple[Switch, str | None]]:
        key = (s, json.dumps(stage.to_dict(), sort_keys=True))
        if key in self._settings:
            return self._settings[key]
        out: list[tuple[Switch, str | None]] = []
        for b, plan in enumerate(block_plans(stage, self.layout[s])):
            for pos in plan.gates:
                if (s, b, pos) not in self._gates:
                    raise ConfigError(f"stages[{s}].position", pos,
                                      "this supernet holds no module at this position",
                                      sorted({p for (i, _, p) in self._gates if i == s}))
            for (i, j, pos), sw in self._gates.items():
                if (i, j) == (s, b):
                    out.append((sw, self._check(sw, plan.gates.get(pos), s, "attention")))
            if (s, b) in self._convs:
                out.append((self._convs[s, b], self._check(self._convs[s, b], plan.conv, s,
                                                           "conv")))
            elif plan.conv is not None:
                raise ConfigError(f"stages[{s}].conv", plan.conv.to_dict(),
                                  "this supernet holds no conv choice in this stage", [STANDARD])
        self._settings[key] = out
        return out

    @staticmethod
    def _check(sw: Switch, choice: ModuleChoice | None, s: int, slot: str) -> str | None:
        if choice is None:
            return STANDARD if slot == "conv" else None
        key = choice_key(choice)
        if key not in sw.cands:
            raise ConfigError(f"stages[{s}].{slot}", choice.to_dict(),
                              "not a candidate of this supernet", sorted(sw.cands))
        return key

    def activate(self, spec: ArchSpec | Mapping[str, Any]) -> ArchSpec:
        """Set every switch for ``spec`` (made canonical); return the canonical spec.
        ConfigError for a spec of another backbone or with a module the supernet lacks."""
        canon = load_spec(spec)
        if canon.backbone != self.backbone or dict(canon.backbone_args) != self.backbone_args:
            raise ConfigError("backbone", canon.backbone,
                              "the supernet was built for another backbone or backbone_args",
                              [self.backbone])
        settings = [self._stage_setting(s, st) for s, st in enumerate(canon.stages)]
        for setting in settings:
            for sw, key in setting:
                sw.active = key
        return canon

    def activate_path(self, path: Sequence[int]) -> None:
        """Set every switch for a path (no canonicalisation: options are canonical)."""
        for s, o in enumerate(path):
            for sw, key in self._stage_setting(s, self.options[s][o]):
                sw.active = key

    def path_state_dict(self, spec: ArchSpec | Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """The weights ``spec``'s stand-alone network inherits, under its own names (for
        ``build_model(spec).load_state_dict``)."""
        self.activate(spec)
        rename: dict[str, str | None] = {}
        for name, sw in self.switches():
            for key in sw.cands:
                rename[f"{name}.cands.{key}."] = f"{name}." if key == sw.active else None
        out: dict[str, torch.Tensor] = {}
        for k, v in self.net.state_dict().items():
            for old, new in rename.items():
                if k.startswith(old):
                    if new is not None:
                        out[new + k[len(old):]] = v
                    break
            else:
                out[k] = v
        return out

    def standalone(self, spec: ArchSpec | Mapping[str, Any]) -> nn.Module:
        """``spec``'s stand-alone network carrying the weights it inherits from the supernet."""
        model = build_model(spec)
        model.load_state_dict(self.path_state_dict(spec), strict=True)
        return model

    def num_paths(self) -> int:
        return math.prod(len(o) for o in self.options)


def _conv_place(space: SearchSpace, s: int, choice: ModuleChoice, n_blocks: int) -> list[str]:
    """The attribute path, inside each block of stage ``s``, of the backbone's replaceable conv
    (read off a network built with ``choice`` there: BasicBlock ``conv1``, Bottleneck
    ``conv2``, ...)."""
    stages: list[dict[str, Any]] = [{} for _ in space.stages]
    stages[s] = {"conv": choice.to_dict()}
    model = build_model({"backbone": space.backbones[0], "backbone_args": space.backbone_args,
                         "num_classes": space.num_classes, "in_chans": space.in_chans,
                         "stages": stages})
    out = []
    for b in range(n_blocks):
        names = [n for n, _ in find_zoo_modules(model.stages[s][b]) if not n.startswith("attn.")]
        if len(names) != 1:
            raise ConfigError(f"stages[{s}].conv", choice.type,
                              "cannot find the block's replaceable conv", [STANDARD])
        out.append(names[0])
    return out


def build_supernet(space: SearchSpace, seed: int = 0) -> Supernet:
    """The supernet of ``space`` (:func:`check_space` first), backbone initialised as
    ``build_model`` initialises it, every candidate with its own initialisation, all drawn from
    ``seed`` (the caller's global RNG is left as it was)."""
    check_space(space)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return _build(space)


def _build(space: SearchSpace) -> Supernet:
    from nas_attn.backbones import get_backbone

    options = [stage_options(space, s) for s in range(len(space.stages))]
    bb = get_backbone(space.backbones[0])
    plain = canonicalize({"backbone": space.backbones[0], "backbone_args": space.backbone_args,
                          "num_classes": space.num_classes, "in_chans": space.in_chans})
    layout = bb.layout(dict(plain.backbone_args))
    net = build_model(plain)
    gates: dict[tuple[int, int, str], Switch] = {}
    convs: dict[tuple[int, int], Switch] = {}
    for s, (opts, info) in enumerate(zip(options, layout, strict=True)):
        wanted: dict[tuple[int, str], dict[str, ModuleChoice]] = {}
        conv_choices: dict[str, ModuleChoice] = {}
        for opt in opts:
            for b, plan in enumerate(block_plans(opt, info)):
                for pos, choice in plan.gates.items():
                    wanted.setdefault((b, pos), {})[choice_key(choice)] = choice
            if opt.conv is not None:
                conv_choices[choice_key(opt.conv)] = opt.conv
        for (b, pos), cands in sorted(wanted.items()):
            block_info = info.blocks[b]
            sw = Switch({k: make_gates(block_info, {pos: c})[pos] for k, c in cands.items()})
            net.stages[s][b].attn[pos] = sw
            gates[s, b, pos] = sw
        if conv_choices:
            places = _conv_place(space, s, next(iter(conv_choices.values())), len(info.blocks))
            for b, place in enumerate(places):
                block = net.stages[s][b]
                cin, cout, stride = info.blocks[b].conv
                cands_c: dict[str, nn.Module] = {STANDARD: _get_attr(block, place)}
                for k, c in conv_choices.items():
                    cands_c[k] = make_conv(c, cin, cout, stride)
                sw = Switch(cands_c)
                sw.active = STANDARD
                _set_attr(block, place, sw)
                convs[s, b] = sw
    return Supernet(space, net, options, layout, gates, convs)


def all_paths(supernet: Supernet) -> Iterator[tuple[int, ...]]:
    """Every path of the supernet (the product of the stages' options), in order."""
    return itertools.product(*(range(len(o)) for o in supernet.options))
