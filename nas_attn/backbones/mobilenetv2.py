"""MobileNetV2 (Sandler et al., CVPR 2018, arXiv 1801.04381) with named insertion points.

Matches torchvision's ``mobilenet_v2`` (channel rounding to multiples of 8, ReLU6, dropout 0.2
before the classifier, its initialisation): 3,504,872 parameters at width 1.0 and 1000 classes.
The stages are the seven inverted-residual groups (t, c, n, s) of the paper's Table 2; the stem
conv and the final 1x1 conv to 1280 channels belong to no stage.

Positions in an inverted-residual block::

    x ─ pre ─ [1x1 expand, BN, ReLU6] ─ 3x3 dw, BN, ReLU6 ─ [mid] ─ 1x1 project, BN ─ post_bn ─┐
    └─────────────────────────────── identity ───────────────────────────────────────── + ─ post_add

``mid`` (where CA and ELA go in their authors' MobileNetV2s) exists only in blocks with an
expansion (t != 1), so not in stage 0; ``identity`` and ``post_add`` only in blocks with a
residual (stride 1 and equal in/out channels). There is no ReLU after the add (linear
bottleneck), so ``post_add`` is the sum itself. The depthwise conv is not replaceable by a
conv module (those are full convs), and stages cannot be fused: SDA is defined on ResNet
stages whose blocks all end in a residual sum.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from nas_attn.backbones._net import (
    AttnNet,
    BlockPlan,
    GatedBlock,
    Stage,
    block_plans,
    init_backbone_,
    make_gates,
)
from nas_attn.backbones._registry import BlockInfo, StageInfo, register_backbone
from nas_attn.hparams import HParam
from nas_attn.modules._common import make_divisible

if TYPE_CHECKING:
    from nas_attn.arch import ArchSpec

# (expansion t, channels c, blocks n, first stride s): the paper's Table 2
SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1),
            (6, 160, 3, 2), (6, 320, 1, 1))

WIDTH_MULT = HParam("width_mult", "categorical", default=1.0,
                    choices=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
                    doc="channel multiplier (the paper's published widths)")

NO_FUSION = ("MobileNetV2 stages cannot be fused: SDA needs every block of the stage to end in "
             "a residual sum, and the first block of each MobileNetV2 stage has none")


def _hidden(inp: int, t: int) -> int:
    return inp * t


def block_info(inp: int, oup: int, stride: int, t: int) -> BlockInfo:
    positions = {"pre": inp}
    if t != 1:
        positions["mid"] = _hidden(inp, t)
    positions["post_bn"] = oup
    if stride == 1 and inp == oup:
        positions["post_add"] = oup
        positions["identity"] = inp
    return BlockInfo(positions=positions, conv=None)


def _geometry(width_mult: float) -> tuple[int, list[list[tuple[int, int, int, int]]], int]:
    """Stem channels, (inp, oup, stride, t) of every block stage by stage, head channels."""
    inp = stem = make_divisible(32 * width_mult, 8)
    stages = []
    for t, c, n, s in SETTINGS:
        oup = make_divisible(c * width_mult, 8)
        stages.append([(inp if i == 0 else oup, oup, s if i == 0 else 1, t) for i in range(n)])
        inp = oup
    return stem, stages, make_divisible(1280 * max(1.0, width_mult), 8)


def mobilenetv2_layout(args: Mapping[str, Any]) -> tuple[StageInfo, ...]:
    _, stages, _ = _geometry(float(args.get("width_mult", WIDTH_MULT.default)))
    return tuple(
        StageInfo(blocks=tuple(block_info(*g) for g in geo), channels=geo[-1][1], fusion=False,
                  fusion_reason=NO_FUSION)
        for geo in stages
    )


def conv_bn_act(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, k, stride, padding=(k - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(GatedBlock):
    def __init__(self, inp: int, oup: int, stride: int, t: int, plan: BlockPlan | None = None
                 ) -> None:
        super().__init__()
        plan = plan or BlockPlan()
        hidden = _hidden(inp, t)
        self.use_res = stride == 1 and inp == oup
        self.expand = conv_bn_act(inp, hidden, 1) if t != 1 else None
        self.dw = conv_bn_act(hidden, hidden, 3, stride, groups=hidden)
        self.project = nn.Sequential(nn.Conv2d(hidden, oup, 1, bias=False), nn.BatchNorm2d(oup))
        self.attn = make_gates(block_info(inp, oup, stride, t), plan.gates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.gate("pre", x)
        if self.expand is not None:
            out = self.expand(out)
        out = self.gate("mid", self.dw(out))
        out = self.gate("post_bn", self.project(out))
        if not self.use_res:
            return out
        return self.gate("post_add", out + self.gate("identity", x))


def _torchvision_init(m: nn.Module) -> None:
    if isinstance(m, nn.Conv2d):
        nn.init.kaiming_normal_(m.weight, mode="fan_out")
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
    elif isinstance(m, nn.Linear):
        nn.init.normal_(m.weight, 0, 0.01)
        nn.init.zeros_(m.bias)


def torchvision_name(name: str, blocks: list[int]) -> str:
    """The name torchvision's ``mobilenet_v2`` gives a tensor of this network (``blocks``: the
    block count of each stage): its ``features`` are the stem, the 17 blocks, the head."""
    head, _, rest = name.partition(".")
    if head == "stem":
        return f"features.0.{rest}"
    if head == "head":
        return f"features.{sum(blocks) + 1}.{rest}"
    if head != "layers":
        return name  # classifier.1.*
    s, b, part, i, tail = rest.split(".", 4)
    k = 1 + sum(blocks[:int(s)]) + int(b)
    expands = int(s) > 0  # stage 0 (t = 1) has no 1x1 expansion
    conv = {("expand", "0"): "0.0", ("expand", "1"): "0.1",
            ("dw", "0"): f"{int(expands)}.0", ("dw", "1"): f"{int(expands)}.1",
            ("project", "0"): f"{1 + int(expands)}", ("project", "1"): f"{2 + int(expands)}"}
    return f"features.{k}.conv.{conv[part, i]}.{tail}"


class MobileNetV2(AttnNet):
    classifier_name = "classifier.1"

    def backbone_names(self) -> dict[str, str]:
        """torchvision's names (``features.*``, ``classifier.1``) -> this network's."""
        blocks = [len(stage) for stage in self.stages]
        return {torchvision_name(ours, blocks): ours for ours in super().backbone_names()}

    def __init__(self, spec: ArchSpec) -> None:
        super().__init__()
        stem, geometry, head = _geometry(float(spec.backbone_args.get("width_mult", 1.0)))
        infos = mobilenetv2_layout(spec.backbone_args)
        if len(spec.stages) != len(infos):
            raise ValueError(f"expected a canonical spec with {len(infos)} stages")
        self.stem = conv_bn_act(spec.in_chans, stem, 3, 2)
        self.layers = nn.ModuleList(
            Stage([InvertedResidual(*g, plan=p)
                   for g, p in zip(geo, block_plans(st, info), strict=True)])
            for geo, st, info in zip(geometry, spec.stages, infos, strict=True)
        )
        self.head = conv_bn_act(geometry[-1][-1][1], head, 1)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(head, spec.num_classes))
        init_backbone_(self, _torchvision_init)

    @property
    def stages(self) -> list[Stage]:
        return list(self.layers)  # type: ignore[arg-type]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(torch.flatten(self.avgpool(self.head(x)), 1))


register_backbone(
    "mobilenetv2",
    build=MobileNetV2,
    layout=mobilenetv2_layout,
    hparams=(WIDTH_MULT,),
    input_size=(3, 224, 224),
    description="MobileNetV2 (torchvision structure); stages = the 7 inverted-residual groups",
)
