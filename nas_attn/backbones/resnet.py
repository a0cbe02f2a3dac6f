"""ResNet-18/34/50/101 (He et al., CVPR 2016, arXiv 1512.03385), with the ImageNet stem and with a
CIFAR stem.

The ImageNet versions match torchvision's ``resnet18`` ... ``resnet101`` layer for layer
(stride on the 3x3 conv, projection shortcuts, Kaiming fan-out init, no zero-init of the last
BN), so plain models have the same parameter counts (ResNet-18: 11,689,512 at 1000 classes).
The ``*_cifar`` versions replace the 7x7/2 stem and the max pool by one 3x3/1 conv, the usual
choice for 32x32 inputs (as in kuangliu/pytorch-cifar).

:class:`ResNet` is generic over a :class:`ResNetConfig`; ``cifar.py`` builds the small CIFAR
ResNets from it too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

import torch
from torch import nn

from nas_attn.backbones._net import (
    AttnNet,
    Stage,
    block_plans,
    init_backbone_,
    make_fusion,
    torchvision_resnet_init,
)
from nas_attn.backbones._registry import StageInfo, register_backbone
from nas_attn.backbones.blocks import (
    BasicBlock,
    Bottleneck,
    PadShortcut,
    basic_info,
    bottleneck_info,
    projection,
)
from nas_attn.hparams import HParam

if TYPE_CHECKING:
    from nas_attn.arch import ArchSpec


@dataclass(frozen=True)
class ResNetConfig:
    block: Literal["basic", "bottleneck"]
    layers: tuple[int, ...]  # blocks per stage
    widths: tuple[int, ...]  # planes per stage (Bottleneck outputs 4x)
    stem: Literal["imagenet", "cifar"] = "imagenet"
    stem_width: int = 64
    shortcut: Literal["projection", "pad"] = "projection"  # pad: He et al.'s CIFAR option A


def _block_geometry(cfg: ResNetConfig) -> list[list[tuple[int, int, int]]]:
    """(inplanes, planes, stride) of every block, stage by stage."""
    expansion = Bottleneck.expansion if cfg.block == "bottleneck" else 1
    inp = cfg.stem_width
    out: list[list[tuple[int, int, int]]] = []
    for s, (n, planes) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
        stage = []
        for b in range(n):
            stride = (1 if s == 0 else 2) if b == 0 else 1
            stage.append((inp, planes, stride))
            inp = planes * expansion
        out.append(stage)
    return out


def resnet_layout(cfg: ResNetConfig) -> tuple[StageInfo, ...]:
    info = bottleneck_info if cfg.block == "bottleneck" else basic_info
    stages = []
    for geo in _block_geometry(cfg):
        blocks = tuple(info(*g) for g in geo)
        stages.append(StageInfo(blocks=blocks, channels=blocks[-1].positions["post_add"]))
    return tuple(stages)


class ResNet(AttnNet):
    """A ResNet with attention inserted per its spec; torchvision's module names (``conv1``,
    ``bn1``, ``layer1``..., ``fc``)."""

    classifier_name = "fc"

    def __init__(self, cfg: ResNetConfig, spec: ArchSpec) -> None:
        super().__init__()
        infos = resnet_layout(cfg)
        if len(spec.stages) != len(infos):
            raise ValueError(f"expected a canonical spec with {len(infos)} stages")
        self.num_stages = len(infos)
        if cfg.stem == "imagenet":
            self.conv1 = nn.Conv2d(spec.in_chans, cfg.stem_width, 7, 2, padding=3, bias=False)
            self.maxpool: nn.Module = nn.MaxPool2d(3, 2, padding=1)
        else:
            self.conv1 = nn.Conv2d(spec.in_chans, cfg.stem_width, 3, 1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        self.bn1 = nn.BatchNorm2d(cfg.stem_width)
        self.relu = nn.ReLU(inplace=True)
        block_cls = Bottleneck if cfg.block == "bottleneck" else BasicBlock
        geometry = _block_geometry(cfg)
        for s, (st, info, geo) in enumerate(zip(spec.stages, infos, geometry, strict=True)):
            blocks = []
            for (inp, planes, stride), plan in zip(geo, block_plans(st, info), strict=True):
                out = planes * block_cls.expansion
                down: nn.Module | None = None
                if stride != 1 or inp != out:
                    down = (projection if cfg.shortcut == "projection" else PadShortcut)(
                        inp, out, stride)
                blocks.append(block_cls(inp, planes, stride, down, plan))
            fusion = make_fusion(st.fusion, info.channels, len(blocks))
            self.add_module(f"layer{s + 1}", Stage(blocks, fusion))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(infos[-1].channels, spec.num_classes)
        init_backbone_(self, torchvision_resnet_init)

    @property
    def stages(self) -> list[Stage]:
        return [getattr(self, f"layer{i + 1}") for i in range(self.num_stages)]

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_head(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.avgpool(x), 1))


def register_resnet(
    name: str,
    config: Callable[[Mapping[str, Any]], ResNetConfig],
    *,
    hparams: tuple[HParam, ...] = (),
    input_size: tuple[int, int, int],
    description: str,
) -> None:
    """Register a ResNet whose configuration is a function of its ``backbone_args``."""
    register_backbone(
        name,
        build=lambda spec: ResNet(config(spec.backbone_args), spec),
        layout=lambda args: resnet_layout(config(args)),
        hparams=hparams,
        input_size=input_size,
        description=description,
    )


_FAMILY = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
}

for _name, (_block, _layers) in _FAMILY.items():
    _imagenet = ResNetConfig(_block, _layers, (64, 128, 256, 512))  # type: ignore[arg-type]
    register_resnet(_name, lambda _a, c=_imagenet: c, input_size=(3, 224, 224),
                    description=f"{_name}, ImageNet stem (torchvision structure)")
    if _name != "resnet101":
        _cifar = ResNetConfig(_block, _layers, (64, 128, 256, 512),  # type: ignore[arg-type]
                              stem="cifar")
        register_resnet(f"{_name}_cifar", lambda _a, c=_cifar: c, input_size=(3, 32, 32),
                        description=f"{_name}, CIFAR stem (3x3/1 conv, no max pool)")
