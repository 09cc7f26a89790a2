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

from lam_models.nn import EnsembleConv2d, EnsembleModule, PatchEmbed, ResidualBlock

__all__ = ["StridedConvEncoder"]


class StridedConvEncoder(EnsembleModule):
    """Strided-convolution stages flattened to the embedding (see the module doc).

    ``(M, B, in_channels, H, W) -> (M, B, out_dim)``, ``out_dim`` (an attribute) the
    flattened size. ``stem`` = p > 1 first cuts the image into p×p patches, as in
    :class:`lam_models.nn.ResNetEncoder` (p = 1: the authors' encoder).
    """

    def __init__(self, num_models, in_channels, channels, blocks, image_size, stem: int = 1):
        super().__init__(num_models)
        m, (h, w) = num_models, image_size
        if h % stem or w % stem:
            raise ValueError(f"stem {stem} must divide the image size {tuple(image_size)}")
        layers = [PatchEmbed(m, in_channels, channels[0], stem)] if stem > 1 else []
        size = (h // stem, w // stem)
        widths = [channels[0] if stem > 1 else in_channels, *channels]
        for c_in, c in zip(widths, channels, strict=False):
            conv = EnsembleConv2d(m, c_in, c, 3, size, stride=2, padding=1, grouped=True)
            size = conv.out_size
            layers += [conv, *(ResidualBlock(m, c, size, F.relu6) for _ in range(blocks))]
        self.stages = nn.Sequential(*layers)
        self.out_dim = channels[-1] * size[0] * size[1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(x).flatten(2)
