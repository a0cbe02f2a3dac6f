"""What every backbone shares: the per-block plan read from a spec, the stage container that
runs a fusion module, the walk that finds inserted zoo modules, and backbone-only initialisation.

The plan is a pure function of a canonical stage entry and the stage's layout, so the builder
and the validator read the same facts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch
from torch import nn

from nas_attn.backbones._registry import BlockInfo, StageInfo
from nas_attn.backbones.positions import resolve_blocks
from nas_attn.modules import MODULES, create_module

if TYPE_CHECKING:
    from nas_attn.arch import ArchSpec, ModuleChoice, StageSpec


@dataclass(frozen=True)
class BlockPlan:
    """What one block gets: gate modules by position and an optional conv replacement."""

    gates: Mapping[str, ModuleChoice] = field(default_factory=dict)
    conv: ModuleChoice | None = None


def block_plans(stage: StageSpec, info: StageInfo) -> list[BlockPlan]:
    """The plan of every block of a stage (pure). ``stage`` should be canonical; keywords and
    negative indices are resolved here as well."""
    n = len(info.blocks)
    chosen: set[int] = set()
    if stage.attention is not None:
        if stage.blocks == "all":
            chosen = {i for i, b in enumerate(info.blocks) if stage.position in b.positions}
        else:
            chosen = set(resolve_blocks(stage.blocks, n, "blocks"))
    return [
        BlockPlan(
            gates={stage.position: stage.attention} if i in chosen and stage.attention else {},
            conv=stage.conv,
        )
        for i in range(n)
    ]


def make_gates(info: BlockInfo, gates: Mapping[str, ModuleChoice]) -> nn.ModuleDict:
    """The zoo gate modules of a block, keyed by position, built at the layout's channels."""
    out = nn.ModuleDict()
    for pos, choice in gates.items():
        if pos not in info.positions:
            raise ValueError(f"block has no {pos!r} position (has {sorted(info.positions)})")
        out[pos] = create_module(choice.type, info.positions[pos], **dict(choice.params))
    return out


def make_conv(choice: ModuleChoice | None, cin: int, cout: int, stride: int) -> nn.Module:
    """The block's spatial 3x3 conv: a plain ``Conv2d`` (no bias, BN follows) or a zoo conv."""
    if choice is None:
        return nn.Conv2d(cin, cout, 3, stride, padding=1, bias=False)
    return create_module(choice.type, cin, cout, 3, stride, **dict(choice.params))


def make_fusion(choice: ModuleChoice | None, channels: int, n: int) -> nn.Module | None:
    if choice is None:
        return None
    return create_module(choice.type, channels, n, **dict(choice.params))


class GatedBlock(nn.Module):
    """Base of every block: gates live in ``self.attn`` (a ModuleDict keyed by position)."""

    attn: nn.ModuleDict

    def gate(self, position: str, x: torch.Tensor) -> torch.Tensor:
        return self.attn[position](x) if position in self.attn else x


class ResidualBlock(GatedBlock):
    """A block whose output is ``post_add(ReLU(Z))`` with ``Z`` the residual sum. Fusion modules
    read ``Z`` through :meth:`forward_z`; :meth:`finish` turns ``Z`` into the trunk's input."""

    def forward_z(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def finish(self, z: torch.Tensor) -> torch.Tensor:
        return self.gate("post_add", torch.relu(z))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.finish(self.forward_z(x))


class Stage(nn.Module):
    """The blocks of one stage (registered as ``0``, ``1``, ..., like ``nn.Sequential``) and an
    optional fusion module. With fusion the trunk goes on with ``ReLU(Z_i)`` (and the block's
    post_add gate) from block to block, and the stage output is ``fusion([Z_0, ..., Z_n-1])``."""

    def __init__(self, blocks: Sequence[nn.Module], fusion: nn.Module | None = None) -> None:
        super().__init__()
        for i, b in enumerate(blocks):
            self.add_module(str(i), b)
        self.num_blocks = len(blocks)
        self.fusion: nn.Module | None = fusion

    def __getitem__(self, i: int) -> nn.Module:
        key = str(i if i >= 0 else i + self.num_blocks)
        return self._modules[key]  # type: ignore[return-value]

    def __len__(self) -> int:
        return self.num_blocks

    def __iter__(self) -> Iterator[nn.Module]:
        return (self[i] for i in range(self.num_blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fusion is None:
            for b in self:
                x = b(x)
            return x
        zs = []
        for i, b in enumerate(self):
            z = b.forward_z(x)  # type: ignore[operator]
            zs.append(z)
            if i < self.num_blocks - 1:  # the last block's ReLU(Z) would go unused
                x = b.finish(z)  # type: ignore[operator]
        return self.fusion(zs)


def zoo_classes() -> tuple[type[nn.Module], ...]:
    return tuple(e.cls for _, e in MODULES.items())


def find_zoo_modules(root: nn.Module) -> Iterator[tuple[str, nn.Module]]:
    """Every zoo module inserted in ``root`` (outermost only: a zoo module's own children are
    part of it), as ``(qualified_name, module)`` in definition order."""
    classes = zoo_classes()

    def walk(m: nn.Module, prefix: str) -> Iterator[tuple[str, nn.Module]]:
        for name, child in m.named_children():
            q = f"{prefix}.{name}" if prefix else name
            if isinstance(child, classes):
                yield q, child
            else:
                yield from walk(child, q)

    return walk(root, "")


def init_backbone_(root: nn.Module, fn: Callable[[nn.Module], None]) -> None:
    """Apply ``fn`` to every module of the backbone itself, skipping zoo modules' subtrees so
    they keep their own initialisation (CBAM's spatial BN at 0, GC's last conv at 0, ...)."""
    classes = zoo_classes()

    def walk(m: nn.Module) -> None:
        fn(m)
        for child in m.children():
            if not isinstance(child, classes):
                walk(child)

    walk(root)


def torchvision_resnet_init(m: nn.Module) -> None:
    """torchvision's ResNet init: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 bias 0;
    Linear layers keep PyTorch's default."""
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


class AttnNet(nn.Module):
    """Base of every built network: ``attention_modules()`` and the ``spec`` it was built from.

    The forward pass is three parts, each its own method so the latency table can time them
    apart: :meth:`forward_stem` (input to the first stage), the stages, and
    :meth:`forward_head` (the last stage's output to the logits)."""

    backbone_prefix = ""  # where the backbone's own tensors sit in the state dict
    has_cells = True  # forward_stem / stages / forward_head exist (latency tables time them)
    classifier_name: str | None = None  # the final nn.Linear, sized to the spec's num_classes

    def __init__(self) -> None:
        super().__init__()
        self.spec: ArchSpec | None = None  # build_model sets the canonical spec

    def attention_modules(self) -> Iterator[tuple[str, nn.Module]]:
        """Every inserted zoo module (gate, conv or fusion) as ``(qualified_name, module)``."""
        return find_zoo_modules(self)

    def backbone_names(self) -> dict[str, str]:
        """``{name in a backbone-weights file: name in this network}`` for every tensor of the
        backbone itself (inserted zoo modules excluded). A backbone whose files use other
        names (MobileNetV2: torchvision's ``features.*``) overrides this."""
        zoo = tuple(f"{n}." for n, _ in self.attention_modules())
        p = self.backbone_prefix
        return {k[len(p):]: k for k in self.state_dict()
                if k.startswith(p) and not k.startswith(zoo)}

    @property
    def stages(self) -> list[Stage]:
        raise NotImplementedError

    def stage_modules(self) -> list[nn.Module]:
        """The module of every stage, in order (what ``train.freeze: [stageN]`` freezes)."""
        return list(self.stages)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.forward_stem(x)
        for stage in self.stages:
            x = stage(x)
        return self.forward_head(x)

    def extra_repr(self) -> str:
        spec = getattr(self, "spec", None)
        return f"spec={spec.hash}" if spec is not None else ""
