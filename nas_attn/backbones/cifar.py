"""Small ResNets for 32x32 inputs.

- ``resnet20`` / ``resnet32`` / ``resnet56``: the CIFAR ResNets of He et al. (CVPR 2016,
  arXiv 1512.03385, section 4.2): a 3x3 conv with 16 channels, three stages of n BasicBlocks
  at 16/32/64 channels (depth 6n + 2), parameter-free "option A" shortcuts (subsample and
  zero-pad), global average pooling and a linear layer (ResNet-20: 0.27 M parameters).
- ``tiny``: the quickstart's network, small enough to train in seconds on a CPU. Three stages of
  ``blocks`` BasicBlocks (default 2, so block selections and SDA mean something) at
  ``width``/2x/4x channels (default 16/32/64), projection shortcuts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from nas_attn.backbones.resnet import ResNetConfig, register_resnet
from nas_attn.hparams import HParam

for _depth in (20, 32, 56):
    _n = (_depth - 2) // 6
    _cfg = ResNetConfig("basic", (_n,) * 3, (16, 32, 64), stem="cifar", stem_width=16,
                        shortcut="pad")
    register_resnet(f"resnet{_depth}", lambda _a, c=_cfg: c, input_size=(3, 32, 32),
                    description=f"CIFAR ResNet-{_depth} (He et al., option A shortcuts)")


TINY_WIDTH = HParam("width", "categorical", default=16, choices=(8, 16, 32),
                    doc="channels of the first stage (the next two have 2x and 4x)")
TINY_BLOCKS = HParam("blocks", "int", default=2, low=1, high=4, doc="BasicBlocks per stage")


def tiny_config(args: Mapping[str, Any]) -> ResNetConfig:
    w = int(args.get("width", TINY_WIDTH.default))
    n = int(args.get("blocks", TINY_BLOCKS.default))
    return ResNetConfig("basic", (n,) * 3, (w, 2 * w, 4 * w), stem="cifar", stem_width=w)


register_resnet("tiny", tiny_config, hparams=(TINY_WIDTH, TINY_BLOCKS), input_size=(3, 32, 32),
                description="a very small 3-stage residual net for quick CPU runs")
