"""Convolutional feature extractors in pure torch (no torchvision): a CIFAR ResNet-18 and a small CNN.

Both map images ``[n, channels, H, W]`` (1x28x28 MNIST or 3x32x32 CIFAR-10) to a feature vector (``features``) and
class logits (``head``). The agents' softmax regression is trained on ``features``, as in the paper, where a frozen
CIFAR-10 ResNet-18 feeds 512-dim features to the agents' last layer.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Backbone(nn.Module):
    """``body`` (convolutional part, output ``[n, feature_dim]``) followed by a linear classification ``head``."""

    feature_dim: int

    def __init__(self, body: nn.Module, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.body = body
        self.feature_dim = feature_dim
        self.head = nn.Linear(feature_dim, num_classes)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        return self.body(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(images))


def _conv_bn(in_channels: int, out_channels: int, stride: int = 1) -> list[nn.Module]:
    return [nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False), nn.BatchNorm2d(out_channels)]


class BasicBlock(nn.Module):
    """ResNet basic block: two 3x3 conv-BN layers plus an identity (or 1x1 conv-BN) shortcut."""

    def __init__(self, in_channels: int, out_channels: int, stride: int) -> None:
        super().__init__()
        self.residual = nn.Sequential(*_conv_bn(in_channels, out_channels, stride), nn.ReLU(inplace=True),
                                      *_conv_bn(out_channels, out_channels))
        self.shortcut = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.residual(x) + self.shortcut(x))


class _GlobalAvgPool(nn.Module):
    """Average over the spatial map: ``avg_pool2d(out, 4)`` of the kuangliu ResNet on 4x4 maps, any size here."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


def resnet18(in_channels: int, num_classes: int) -> Backbone:
    """kuangliu-style CIFAR ResNet-18: 3x3 stem, no max-pool, BasicBlock stages [2, 2, 2, 2] of 64/128/256/512
    channels (strides 1, 2, 2, 2), global average pool -> 512 features (32x32 and 28x28 inputs end on 4x4 maps)."""
    layers: list[nn.Module] = [*_conv_bn(in_channels, 64), nn.ReLU(inplace=True)]
    channels = 64
    for width, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [BasicBlock(channels, width, stride), BasicBlock(width, width, 1)]
        channels = width
    return Backbone(nn.Sequential(*layers, _GlobalAvgPool()), 512, num_classes)


def small_cnn(in_channels: int, num_classes: int) -> Backbone:
    """A fast 6-layer CNN: three stages of two 3x3 conv-BN-ReLU (32, 64, 128 channels), 2x2 max-pool between
    stages, global average pool -> 128 features."""
    layers: list[nn.Module] = []
    channels = in_channels
    for stage, width in enumerate((32, 64, 128)):
        if stage:
            layers.append(nn.MaxPool2d(2))
        layers += [*_conv_bn(channels, width), nn.ReLU(inplace=True), *_conv_bn(width, width), nn.ReLU(inplace=True)]
        channels = width
    return Backbone(nn.Sequential(*layers, _GlobalAvgPool()), 128, num_classes)


ARCHS = {"resnet18": resnet18, "small": small_cnn}
