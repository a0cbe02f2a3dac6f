"""Networks a user might bring, for the factory-backbone tests (no torchvision).

- :func:`resnet50`: torchvision's ResNet-50 structure and module names (``conv1``, ``bn1``,
  ``layer1``..``layer4`` of Bottlenecks with ``conv1..3``/``bn1..3``/``downsample``, ``fc``);
  ``width`` and ``layers`` shrink it for cheap tests.
- :func:`small_cnn`: a plain user CNN (``features`` of conv-BN-ReLU stages, ``head``).
- :func:`looping_net`: a forward with Python control flow (a loop over a ModuleList with a
  branch on the index, a branch on the tensor's size), which torch.fx cannot trace.
- :func:`not_a_module`: a factory returning something else.
"""

from __future__ import annotations

import torch
from torch import nn


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        if self.downsample is not None:
            identity = self.downsample(x)
        return self.relu(out + identity)


class ResNet(nn.Module):
    def __init__(self, layers: tuple[int, ...] = (3, 4, 6, 3), num_classes: int = 1000,
                 width: int = 64) -> None:
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        for i, n in enumerate(layers):
            setattr(self, f"layer{i + 1}", self._make_layer(width * 2 ** i, n, 1 if i == 0 else 2))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(self.inplanes, num_classes)

    def _make_layer(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        down = None
        if stride != 1 or self.inplanes != planes * 4:
            down = nn.Sequential(nn.Conv2d(self.inplanes, planes * 4, 1, stride, bias=False),
                                 nn.BatchNorm2d(planes * 4))
        out = [Bottleneck(self.inplanes, planes, stride, down)]
        self.inplanes = planes * 4
        out += [Bottleneck(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def resnet50(num_classes: int = 1000, width: int = 64,
             layers: tuple[int, ...] | list[int] = (3, 4, 6, 3)) -> ResNet:
    return ResNet(tuple(layers), num_classes, width)


class SmallCNN(nn.Module):
    def __init__(self, width: int = 8, num_classes: int = 10) -> None:
        super().__init__()

        def stage(cin: int, cout: int) -> nn.Sequential:
            return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                                 nn.BatchNorm2d(cout), nn.ReLU(), nn.MaxPool2d(2))

        self.features = nn.Sequential(stage(3, width), stage(width, 2 * width))
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(2 * width, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def small_cnn(width: int = 8, num_classes: int = 10) -> SmallCNN:
    return SmallCNN(width, num_classes)


class LoopingNet(nn.Module):
    """Blocks run in a Python loop; odd blocks are residual, and a pool runs only while the
    feature map is larger than 4x4."""

    def __init__(self, width: int = 8, depth: int = 3, num_classes: int = 5) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, padding=1)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Conv2d(width, width, 3, padding=1, bias=False), nn.BatchNorm2d(width),
                          nn.ReLU()) for _ in range(depth))
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i, block in enumerate(self.blocks):
            y = block(x)
            x = x + y if i % 2 else y
            if x.shape[-1] > 4:
                x = self.pool(x)
        return self.fc(x.mean(dim=(2, 3)))


def looping_net(width: int = 8, depth: int = 3, num_classes: int = 5) -> LoopingNet:
    return LoopingNet(width, depth, num_classes)


def not_a_module() -> str:
    return "a string"
