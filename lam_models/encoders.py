"""The encoder of LAOM as the authors' code builds it (dunnolab/laom, ``src/nn.py``: the
``EncoderBlock`` stages of its LAOM model, with ``encoder_norm_out: False`` in
``configs/laom-labels.yaml``).

Per stage, a 3×3 convolution with stride 2 (padding 1: it halves the image, rounding up)
to that stage's channels, then ``blocks`` residual blocks x + conv(ReLU6(conv(ReLU6(x))));
after the last stage the feature map is flattened: that is the embedding, the FDM's
target, with no linear map and no LayerNorm. Its size is channels[-1] · ⌈H/2^n⌉ ·
⌈W/2^n⌉ for n stages (the released run: 192 · 8 · 8 = 12,288 on 64×64 images).

The package's encoder (:class:`lam_models.nn.ResNetEncoder`: max-pooling, a linear map and
a LayerNorm) is the ``encoder="resnet"`` variant of ``laom``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lam_models.nn import EnsembleConv2d, EnsembleModule, PatchEmbed

__all__ = ["ResidualBlock6", "StridedConvEncoder"]


class ResidualBlock6(EnsembleModule):
    """x + conv(ReLU6(conv(ReLU6(x)))), two 3×3 convolutions keeping size and channels:
    ``(M, B, C, H, W) -> (M, B, C, H, W)`` (the authors' ``ResidualBlock``)."""

    def __init__(self, num_models: int, channels: int, image_size: tuple[int, int]) -> None:
        super().__init__(num_models)
        m = num_models
        self.conv1 = EnsembleConv2d(m, channels, channels, 3, image_size, padding=1, grouped=True)
        self.conv2 = EnsembleConv2d(m, channels, channels, 3, image_size, padding=1, grouped=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu6(self.conv1(F.relu6(x))))


class StridedConvEncoder(EnsembleModule):
    """Strided-convolution stages flattened to the embedding (see the module doc).

    ``(M, B, in_channels, H, W) -> (M, B, out_dim)``, ``out_dim`` (an attribute) the
    flattened size. ``stem`` = p > 1 first cuts the image into p×p patches, as in
    :class:`lam_models.nn.ResNetEncoder` (p = 1: the authors' encoder).
    """

    def __init__(
        self,
        num_models: int,
        in_channels: int,
        channels: tuple[int, ...],
        blocks: int,
        image_size: tuple[int, int],
        stem: int = 1,
    ) -> None:
        super().__init__(num_models)
        m, size, layers = num_models, tuple(image_size), []
        if stem > 1:
            if size[0] % stem or size[1] % stem:
                raise ValueError(f"stem {stem} must divide the image size {size}")
            layers.append(PatchEmbed(m, in_channels, channels[0], stem))
            size, in_channels = (size[0] // stem, size[1] // stem), channels[0]
        for c in channels:
            conv = EnsembleConv2d(m, in_channels, c, 3, size, stride=2, padding=1, grouped=True)
            layers.append(conv)
            size = conv.out_size
            layers.extend(ResidualBlock6(m, c, size) for _ in range(blocks))
            in_channels = c
        self.stages = nn.Sequential(*layers)
        self.out_dim = in_channels * size[0] * size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x).flatten(2)
