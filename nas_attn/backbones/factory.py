"""The ``factory`` backbone: any ``nn.Module`` a user's function returns, with zoo modules
inserted at module paths (arguments: :mod:`nas_attn.backbones.factory_args`).

The layout is inferred once per argument set on the meta device: the function builds the
network under ``torch.device("meta")`` and one forward pass on a meta tensor records, through
forward hooks, the shape at every insertion point (nothing is computed, no weights allocated,
and no torch.fx tracing: a forward with Python control flow is fine). A stage's blocks are its
direct children that hold an insertion point, in definition order (``layer3.2`` is block 2 of
stage ``layer3`` when every block has one).

The built network (:class:`FactoryNet`) keeps the user's network as ``net`` with its own module
names (its state-dict keys are the factory's, under ``net.``), so its pretrained weights load by
name. A gate runs at its point through a forward hook (``after``) or a forward pre-hook
(``before``) of the named module and lives in ``inserted``; a conv module replaces the named
3x3 ``nn.Conv2d`` in place. The factory's function is user code: it is imported only with the
user's consent (``--allow-plugins``), through :func:`nas_attn.plugins.import_ref`.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nas_attn.backbones._net import AttnNet, block_plans, make_conv
from nas_attn.backbones._registry import BlockInfo, StageInfo, register_backbone
from nas_attn.backbones.factory_args import (
    DEFAULT_INPUT_SIZE,
    args_key,
    check_factory_args,
    match,
)
from nas_attn.errors import SpecError
from nas_attn.modules import create_module

if TYPE_CHECKING:
    from nas_attn.arch import ArchSpec

F = "backbone_args"
NO_FUSION = ("a factory backbone's stages cannot be fused: a fusion module needs every block's "
             "residual sum, which nas-attn cannot reach inside a user's module")


@dataclass(frozen=True)
class Point:
    """One insertion point: the module path, ``after`` or ``before`` it, the shape there."""

    path: str
    kind: str
    shape: tuple[int, ...]


@dataclass(frozen=True)
class FactoryBlock:
    path: str
    points: Mapping[str, Point]  # position -> point
    conv: tuple[str, int, int, int] | None = None  # (path, in, out, stride) of its 3x3 conv


@dataclass(frozen=True)
class FactoryLayout:
    stages: tuple[str, ...]  # module paths, in definition order
    blocks: tuple[tuple[FactoryBlock, ...], ...]
    channels: tuple[int, ...]  # output channels of each stage (0: not a 4-D tensor)
    in_chans: int
    num_classes: int | None  # the width of the network's (N, K) output, if it is one
    classifier: str | None

    def infos(self) -> tuple[StageInfo, ...]:
        return tuple(
            StageInfo(
                blocks=tuple(BlockInfo({p: pt.shape[1] for p, pt in b.points.items()},
                                       b.conv[1:] if b.conv else None) for b in blocks),
                channels=ch, fusion=False, fusion_reason=NO_FUSION)
            for blocks, ch in zip(self.blocks, self.channels, strict=True))


def import_factory(ref: str) -> Callable[..., Any]:
    """The factory function ``module:function``, imported with the user's consent only. A
    module already loaded as a plugin (with consent, here or by the driver that shipped it to
    this Ray worker) is used by its module name: a worker may not have the driver's path."""
    from nas_attn.plugins import consented, import_ref, is_file_ref, loaded_plugins

    target, _, attr = ref.rpartition(":")
    name = Path(target).stem if is_file_ref(target) else target
    if any(p.module == name for p in loaded_plugins()):
        fn: Any = sys.modules[name]
        for part in attr.split("."):
            if not hasattr(fn, part):
                raise SpecError(f"{F}.factory", ref, f"module {name} has no attribute {attr!r}")
            fn = getattr(fn, part)
    else:
        fn = import_ref(ref, allowed=consented(), field=f"{F}.factory")
    if not callable(fn):
        raise SpecError(f"{F}.factory", ref, f"is a {type(fn).__name__}, not a function")
    return fn


def call_factory(args: Mapping[str, Any]) -> nn.Module:
    fn = import_factory(args["factory"])
    try:
        net = fn(**args["kwargs"])
    except Exception as e:  # the user's function: its failure is a bad factory setting
        raise SpecError(f"{F}.kwargs", args["kwargs"], f"{args['factory']} failed with these "
                        f"keyword arguments: {type(e).__name__}: {e}") from None
    if not isinstance(net, nn.Module):
        raise SpecError(f"{F}.factory", args["factory"],
                        f"returned a {type(net).__name__}, not an nn.Module")
    return net


_LAYOUTS: dict[str, FactoryLayout] = {}


def factory_layout(args: Mapping[str, Any]) -> FactoryLayout:
    """The layout of canonical factory arguments, inferred on first use and then cached."""
    key = args_key(args)
    if key not in _LAYOUTS:
        _LAYOUTS[key] = _infer(args)
    return _LAYOUTS[key]


def _within(path: str, parents: tuple[str, ...]) -> str | None:
    return next((p for p in parents if path == p or path.startswith(p + ".")), None)


def _owner(path: str, stages: tuple[str, ...], blocks: tuple[str, ...] | None, field: str
           ) -> tuple[int, str]:
    """(stage index, block path) of a point's module path: the ``blocks`` match holding it,
    or (no ``blocks`` pattern) the stage's child holding it."""
    s = _within(path, stages)
    if s is None:
        raise SpecError(field, path, "lies outside every stage; stages", list(stages))
    if blocks is None:
        block = s if path == s else f"{s}.{path[len(s) + 1:].split('.')[0]}"
    else:
        found = _within(path, blocks)
        if found is None or _within(found, (s,)) is None:
            raise SpecError(field, path, f"lies in no block of stage {s}; blocks",
                            [b for b in blocks if _within(b, (s,))])
        block = found
    return stages.index(s), block


def _conv_site(path: str, m: nn.Module, field: str) -> tuple[str, int, int, int]:
    ok = (isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3) and m.padding == (1, 1)
          and m.dilation == (1, 1) and m.groups == 1 and m.stride[0] == m.stride[1]
          and m.padding_mode == "zeros")
    if not ok:
        raise SpecError(field, path, f"is {m!r}; a conv module replaces a 3x3 nn.Conv2d with "
                        "padding 1, no dilation and no groups")
    return (path, m.in_channels, m.out_channels, m.stride[0])


def _infer(args: Mapping[str, Any]) -> FactoryLayout:
    with torch.device("meta"):
        net = call_factory(args)
    modules = dict(net.named_modules())
    paths = [p for p in modules if p]
    stages = tuple(dict.fromkeys(p for pat in args["stages"]
                                 for p in match(pat, paths, f"{F}.stages")))
    stages = tuple(sorted(stages, key=paths.index))
    for a in stages:
        for b in stages:
            if b.startswith(a + "."):
                raise SpecError(f"{F}.stages", b, f"lies inside stage {a}; stages must not nest")
    blocks = None
    if args["blocks"] is not None:
        blocks = tuple(sorted(dict.fromkeys(p for pat in args["blocks"]
                                            for p in match(pat, paths, f"{F}.blocks")),
                              key=paths.index))
    points: dict[str, tuple[str, str]] = {}  # path -> (position, kind) while being measured
    by_block: dict[tuple[int, str], dict[str, tuple[str, str]]] = {}
    for pos, rule in args["positions"].items():
        (kind, patterns), = rule.items()
        f = f"{F}.positions.{pos}.{kind}"
        for p in dict.fromkeys(q for pat in patterns for q in match(pat, paths, f)):
            si, block = _owner(p, stages, blocks, f)
            slot = by_block.setdefault((si, block), {})
            if pos in slot:
                raise SpecError(f, _pattern_of(patterns), f"matches both {slot[pos][0]} and {p} in "
                                f"block {block}; a position names one module per block")
            slot[pos] = (p, kind)
            points[p] = (pos, kind)
    convs: dict[tuple[int, str], tuple[str, int, int, int]] = {}
    for pat in args["replace"]:
        for p in match(pat, paths, f"{F}.replace"):
            key = _owner(p, stages, blocks, f"{F}.replace")
            site = _conv_site(p, modules[p], f"{F}.replace")
            if key in convs and convs[key][0] != p:
                raise SpecError(f"{F}.replace", pat, f"matches both {convs[key][0]} and {p} in "
                                f"block {key[1]}; one replaceable conv per block")
            convs[key] = site
            by_block.setdefault(key, {})
    classifier = args["classifier"]
    if classifier is not None:
        if classifier not in modules or not isinstance(modules[classifier], nn.Linear):
            raise SpecError(f"{F}.classifier", classifier, "is not an nn.Linear of the network",
                            [p for p, m in modules.items() if isinstance(m, nn.Linear)])
    shapes, out, in_chans = _measure(net, args, list(points), stages)
    found: list[list[FactoryBlock]] = [[] for _ in stages]
    for (si, block), slots in sorted(by_block.items(), key=lambda kv: paths.index(kv[0][1])):
        pts = {pos: Point(p, kind, shapes[p][kind]) for pos, (p, kind) in slots.items()}
        for pt in pts.values():
            if len(pt.shape) != 4:
                raise SpecError(f"{F}.positions", pt.path, f"the tensor {pt.kind} it has shape "
                                f"{list(pt.shape)}; a gate module needs (N, C, H, W)")
        found[si].append(FactoryBlock(block, pts, convs.get((si, block))))
    channels = tuple(shapes[s]["after"][1] if len(shapes.get(s, {}).get("after", ())) == 4
                     else 0 for s in stages)
    classes = int(out.shape[1]) if isinstance(out, torch.Tensor) and out.dim() == 2 else None
    return FactoryLayout(stages, tuple(tuple(b) for b in found), channels, in_chans, classes,
                         classifier)


def _pattern_of(patterns: list[str]) -> str | list[str]:
    return patterns[0] if len(patterns) == 1 else patterns


def _measure(net: nn.Module, args: Mapping[str, Any], points: list[str],
             stages: tuple[str, ...]) -> tuple[dict[str, dict[str, tuple[int, ...]]], Any, int]:
    """One meta forward pass: the input and output shapes of every point (each must run
    exactly once) and stage (a container that never runs itself, a ModuleList, has none), the
    network's output and its input channels."""
    paths = list(dict.fromkeys([*points, *stages]))
    first = next((m for m in net.modules() if isinstance(m, nn.Conv2d)), None)
    in_chans = first.in_channels if first is not None else 3
    calls: dict[str, list[dict[str, tuple[int, ...]]]] = {p: [] for p in paths}

    def shape(t: Any) -> tuple[int, ...]:
        return tuple(t.shape) if isinstance(t, torch.Tensor) else ()

    def hook(path: str, m: nn.Module, a: tuple[Any, ...], o: Any) -> None:
        calls[path].append({"before": shape(a[0]) if a else (), "after": shape(o)})

    handles = [net.get_submodule(p).register_forward_hook(functools.partial(hook, p))
               for p in paths]
    size = [1, in_chans, *args["input_size"]]
    try:
        with torch.no_grad():
            out = net.eval()(torch.empty(size, device="meta"))
    except Exception as e:  # the user's forward: any failure is a bad factory setting
        raise SpecError(f"{F}.factory", args["factory"], f"the network's forward pass on a "
                        f"meta tensor of shape {size} failed: {type(e).__name__}: {e}") from None
    finally:
        for h in handles:
            h.remove()
    for p, c in calls.items():
        if p not in points and len(c) <= 1:
            continue
        if len(c) != 1:
            raise SpecError(F, p, f"module {p} runs {len(c)} times in one forward pass; an "
                            "insertion point or stage must run exactly once")
    return {p: c[0] for p, c in calls.items() if c}, out, in_chans


def _run_after(gate: nn.Module, module: nn.Module, args: tuple[Any, ...], out: Any) -> Any:
    return gate(out)


def _run_before(gate: nn.Module, module: nn.Module, args: tuple[Any, ...]) -> tuple[Any, ...]:
    return (gate(args[0]), *args[1:])


def _key(kind: str, path: str) -> str:
    return f"{kind}:{path}".replace(".", ":")


class FactoryNet(AttnNet):
    """A user's network (``net``) with zoo modules inserted per a canonical spec."""

    backbone_prefix = "net."
    has_cells = False  # the user's forward runs as one piece

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        args = spec.backbone_args
        lay = factory_layout(args)
        if spec.in_chans != lay.in_chans:
            raise SpecError("in_chans", spec.in_chans, "the factory's network takes "
                            f"{lay.in_chans} input channels", [lay.in_chans])
        self.net = call_factory(args)
        self.stage_paths = lay.stages
        self.classifier_name = f"net.{lay.classifier}" if lay.classifier else None
        if lay.classifier is not None:
            fc = self.net.get_submodule(lay.classifier)
            assert isinstance(fc, nn.Linear)
            if fc.out_features != spec.num_classes:
                self.net.set_submodule(lay.classifier, nn.Linear(
                    fc.in_features, spec.num_classes, bias=fc.bias is not None))
        elif lay.num_classes != spec.num_classes:
            raise SpecError("num_classes", spec.num_classes,
                            f"the factory's network gives {lay.num_classes} outputs; name its "
                            f"final nn.Linear in {F}.classifier to resize it", [lay.num_classes])
        self.inserted = nn.ModuleDict()
        for st, info, blocks in zip(spec.stages, lay.infos(), lay.blocks, strict=True):
            for plan, block in zip(block_plans(st, info), blocks, strict=True):
                for pos, choice in plan.gates.items():
                    pt = block.points[pos]
                    gate = create_module(choice.type, pt.shape[1], **dict(choice.params))
                    self.inserted[_key(pt.kind, pt.path)] = gate
                    target = self.net.get_submodule(pt.path)
                    if pt.kind == "after":
                        target.register_forward_hook(functools.partial(_run_after, gate))
                    else:
                        target.register_forward_pre_hook(functools.partial(_run_before, gate))
                if plan.conv is not None and block.conv is not None:
                    path, cin, cout, stride = block.conv
                    self.net.set_submodule(path, make_conv(plan.conv, cin, cout, stride))

    def stage_modules(self) -> list[nn.Module]:
        return [self.net.get_submodule(p) for p in self.stage_paths]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError("a factory backbone runs as one piece (its forward is the "
                                  "user's); it has no stem/stage/head cells")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _natural(args: Mapping[str, Any]) -> tuple[int, int, int]:
    return (factory_layout(args).in_chans, *args.get("input_size", DEFAULT_INPUT_SIZE))


register_backbone(
    "factory",
    build=FactoryNet,
    layout=lambda args: factory_layout(args).infos(),
    check_args=check_factory_args,
    input_size_of=_natural,
    description="any nn.Module a 'module:function' returns, with insertion points named by "
                "module-path patterns (docs/backbones.md)",
)
