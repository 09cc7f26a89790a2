"""Small reusable network blocks for the LAMs: CNN encoders (one of them ResNet-style), tiny
UNet, vector quantiser, batch norm, pooling.

Every block holds ``M`` independent copies of itself (an *ensemble*), so that several
seeds of one model train as one batched computation: the copies' weights are stacked
along a leading axis and applied with batched matrix products (``torch.baddbmm``).
Copies share nothing; ``M = 1`` is an ordinary single network.

Tensor layout is ``(M, B, ...)``: the model axis first, then the batch, then the usual
channel and spatial axes, e.g. images ``(M, B, C, H, W)`` and vectors ``(M, B, F)``.

Initialisation matches PyTorch's default for ``Conv2d``/``Linear`` (uniform in
``±1/sqrt(fan_in)``) and is drawn per copy from that copy's own generator
(:meth:`EnsembleModule.reset_copy`), so copy ``m`` of an ensemble built from seeds
``[s_0, ..., s_{M-1}]`` starts with exactly the weights of a single model built from
seed ``s_m``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


class EnsembleModule(nn.Module):
    """Base class of the blocks below: parameters carry a leading model axis of size M."""

    def __init__(self, num_models: int) -> None:
        super().__init__()
        self.num_models = num_models

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._quiet = 0  # the loaded unused counts are read at the next update
        super()._load_from_state_dict(*args, **kwargs)

    def reset_copy(self, index: int, generator: torch.Generator) -> None:
        """Re-initialise copy ``index`` of this block's own parameters from ``generator``."""


def reset_copies(
    network: nn.Module,
    seeds: Sequence[int],
    generator: Callable[[int], torch.Generator] = lambda seed: torch.Generator().manual_seed(seed),
) -> None:
    """Initialise copy m of every ensemble block of ``network`` from ``generator(seeds[m])``,
    block after block in the network's module order, so copy m's weights depend only on
    ``seeds[m]``."""
    for index, seed in enumerate(seeds):
        draws = generator(seed)
        for module in network.modules():
            if isinstance(module, EnsembleModule):
                module.reset_copy(index, draws)


def _uniform_(tensor: torch.Tensor, bound: float, generator: torch.Generator) -> None:
    with torch.no_grad():
        tensor.copy_((torch.rand(tensor.shape, generator=generator) * 2 - 1) * bound)


class EnsembleLinear(EnsembleModule):
    """M independent affine maps: ``(M, B, in_features) -> (M, B, out_features)``."""

    def __init__(self, num_models: int, in_features: int, out_features: int) -> None:
        super().__init__(num_models)
        self.weight = nn.Parameter(torch.empty(num_models, in_features, out_features))
        self.bias = nn.Parameter(torch.empty(num_models, out_features))
        for m in range(num_models):
            self.reset_copy(m, torch.Generator().manual_seed(m))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._quiet = 0  # the loaded unused counts are read at the next update
        super()._load_from_state_dict(*args, **kwargs)

    def reset_copy(self, index: int, generator: torch.Generator) -> None:
        bound = 1.0 / math.sqrt(self.weight.shape[1])
        _uniform_(self.weight[index], bound, generator)
        _uniform_(self.bias[index], bound, generator)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias[:, None, :], x, self.weight)


class EnsembleMLP(EnsembleModule):
    """M copies of in -> width -> ReLU -> out, optionally ending in a LayerNorm (no affine):
    ``(M, B, d_in) -> (M, B, d_out)``."""

    def __init__(self, m: int, d_in: int, width: int, d_out: int, norm: bool = False) -> None:
        super().__init__(m)
        self.hidden = EnsembleLinear(m, d_in, width)
        self.out = EnsembleLinear(m, width, d_out)
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(F.relu(self.hidden(x)))
        return F.layer_norm(y, y.shape[-1:]) if self.norm else y


def _conv_taps(
    kernel_size: int,
    stride: int,
    padding: int,
    image_size: tuple[int, int],
    transposed: bool,
    circular: bool = False,
) -> torch.Tensor:
    """0/1 tensor T (k·k, P_in, P_out): T[t, p, q] = 1 iff input pixel p feeds output
    pixel q through kernel tap t, for a (transposed) convolution on one image size."""
    h, w = image_size
    basis = torch.eye(h * w).reshape(h * w, 1, h, w)
    if transposed:
        taps = torch.eye(kernel_size**2).reshape(1, -1, kernel_size, kernel_size)
        out = F.conv_transpose2d(basis, taps, stride=stride)
    else:
        taps = torch.eye(kernel_size**2).reshape(-1, 1, kernel_size, kernel_size)
        if circular:
            basis, padding = F.pad(basis, (padding,) * 4, mode="circular"), 0
        out = F.conv2d(basis, taps, stride=stride, padding=padding)
    return out.reshape(h * w, kernel_size**2, -1).transpose(0, 1).contiguous()


#: Input pixels up to which :class:`EnsembleConv2d` computes as a dense matrix by default
#: (8×8; the 4×4 grid's layers are dense, the 32×32 distracting grid's grouped).
DENSE_MAX_PIXELS = 64


class EnsembleConv2d(EnsembleModule):
    """M independent ``Conv2d`` (or ``ConvTranspose2d``) layers on images of a fixed size.

    ``(M, B, in_channels, H, W) -> (M, B, out_channels, H', W')``.

    On images this small (4×4) a convolution is computed fastest on a CPU as what it is,
    a weight-shared linear map: the kernel is spread into a dense
    (in_channels·H·W) × (out_channels·H'·W') matrix through the fixed tap pattern
    :func:`_conv_taps`, then one batched matrix product serves all M copies. (Grouped
    convolutions do the same arithmetic several times slower here.) Results equal
    ``F.conv2d(x, weight, bias, stride, padding)``, or ``F.conv_transpose2d(x,
    weight.transpose(0, 1), bias, stride)`` when ``transposed`` (kernel = stride only).
    ``circular`` pads periodically (as ``padding_mode="circular"``) instead of with zeros.

    ``grouped``: compute with one grouped ``F.conv2d`` (or ``F.conv_transpose2d``;
    groups = M) instead. The dense matrix does (H·W)/(k·k) times the arithmetic of a
    convolution (about 1.8× for a 3×3 kernel on 4×4 with zero padding), which is cheaper
    than the grouped call's overhead when channels are few; with 64 channels and more the
    grouped call wins (measured on 2 CPU cores: 64→64 channels, 5 copies, batch 1,024:
    about 1.5× faster). ``None`` (the default) chooses by the image: dense up to
    :data:`DENSE_MAX_PIXELS` input pixels, grouped above, where the dense matrix grows as
    (H·W)² (a 3×3 layer on 32×32 images: 114× the arithmetic, 4 MB of taps and 128 MB of
    weights per 16×16 channels) and does not scale.
    """

    taps: torch.Tensor | None

    def __init__(
        self,
        num_models: int,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        image_size: tuple[int, int],
        stride: int = 1,
        padding: int = 0,
        transposed: bool = False,
        circular: bool = False,
        grouped: bool | None = None,
    ) -> None:
        super().__init__(num_models)
        if transposed and (kernel_size != stride or padding):
            raise ValueError("transposed convolutions here need kernel_size == stride, padding 0")
        h, w = image_size
        if grouped is None:
            grouped = h * w > DENSE_MAX_PIXELS
        self.in_channels, self.out_channels = in_channels, out_channels
        self.transposed, self.kernel_area = transposed, kernel_size**2
        self.grouped, self.stride, self.padding, self.circular = grouped, stride, padding, circular
        self.weight = nn.Parameter(
            torch.empty(num_models, out_channels, in_channels, kernel_size, kernel_size)
        )
        self.bias = nn.Parameter(torch.empty(num_models, out_channels))
        # The dense form's tap pattern; a grouped layer needs none.
        taps = (
            None
            if grouped
            else _conv_taps(kernel_size, stride, padding, image_size, transposed, circular)
        )
        self.register_buffer("taps", taps, persistent=False)
        self.out_size = (
            (h * stride, w * stride)
            if transposed
            else (
                (h + 2 * padding - kernel_size) // stride + 1,
                (w + 2 * padding - kernel_size) // stride + 1,
            )
        )
        for m in range(num_models):
            self.reset_copy(m, torch.Generator().manual_seed(m))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._quiet = 0  # the loaded unused counts are read at the next update
        super()._load_from_state_dict(*args, **kwargs)

    def reset_copy(self, index: int, generator: torch.Generator) -> None:
        # PyTorch's defaults: fan_in = weight.size(1) · kernel area, which for
        # ConvTranspose2d's (in, out, k, k) weight is out_channels · k².
        channels = self.out_channels if self.transposed else self.in_channels
        bound = 1.0 / math.sqrt(channels * self.kernel_area)
        _uniform_(self.weight[index], bound, generator)
        _uniform_(self.bias[index], bound, generator)

    def dense_weight(self) -> torch.Tensor:
        """The layer as matrices (M, in_channels·P_in, out_channels·P_out)."""
        m = self.num_models
        dense = torch.einsum("moit,tpq->mipoq", self.weight.flatten(3), self.taps)
        return dense.reshape(m, self.in_channels * self.taps.shape[1], -1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.grouped:
            return self._grouped(x)
        m, b = x.shape[:2]
        bias = self.bias[:, None, :, None].expand(m, 1, self.out_channels, self.taps.shape[2])
        y = torch.baddbmm(bias.reshape(m, 1, -1), x.reshape(m, b, -1), self.dense_weight())
        return y.reshape(m, b, self.out_channels, *self.out_size)

    def _grouped(self, x: torch.Tensor) -> torch.Tensor:
        m, b = x.shape[:2]
        flat = x.transpose(0, 1).reshape(b, m * self.in_channels, *x.shape[-2:])
        if self.transposed:  # conv_transpose2d's weight is (in, out, k, k) per group
            weight = self.weight.transpose(1, 2).reshape(
                m * self.in_channels, -1, self.stride, self.stride
            )
            y = F.conv_transpose2d(flat, weight, self.bias.reshape(-1), self.stride, groups=m)
            return y.reshape(b, m, self.out_channels, *y.shape[-2:]).transpose(0, 1)
        padding = self.padding
        if self.circular and padding:
            flat, padding = F.pad(flat, (padding,) * 4, mode="circular"), 0
        y = F.conv2d(
            flat,
            self.weight.reshape(m * self.out_channels, *self.weight.shape[2:]),
            self.bias.reshape(-1),
            stride=self.stride,
            padding=padding,
            groups=m,
        )
        return y.reshape(b, m, self.out_channels, *y.shape[-2:]).transpose(0, 1)


class EnsembleBatchNorm2d(EnsembleModule):
    """M independent ``BatchNorm2d`` layers: ``(M, B, C, H, W) -> (M, B, C, H, W)``.

    Copy m normalises with its own batch's statistics over (B, H, W) per channel (training)
    or its own running averages (evaluation), and has its own affine weight and bias, so
    a copy's numbers do not depend on the copies beside it. Defaults as ``BatchNorm2d``:
    weight 1, bias 0, momentum 0.1, eps 1e-5.
    """

    running_mean: torch.Tensor
    running_var: torch.Tensor

    def __init__(self, num_models: int, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__(num_models)
        self.channels, self.momentum, self.eps = channels, momentum, eps
        self.weight = nn.Parameter(torch.ones(num_models, channels))
        self.bias = nn.Parameter(torch.zeros(num_models, channels))
        self.register_buffer("running_mean", torch.zeros(num_models, channels))
        self.register_buffer("running_var", torch.ones(num_models, channels))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._quiet = 0  # the loaded unused counts are read at the next update
        super()._load_from_state_dict(*args, **kwargs)

    def reset_copy(self, index: int, generator: torch.Generator) -> None:
        with torch.no_grad():
            self.weight[index] = 1.0
            self.bias[index] = 0.0
            self.running_mean[index] = 0.0
            self.running_var[index] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, b = x.shape[:2]
        # (M, B, C, H, W) -> (B, M·C, H, W): F.batch_norm's channels are then (copy, channel).
        flat = x.transpose(0, 1).reshape(b, m * self.channels, *x.shape[-2:])
        y = F.batch_norm(
            flat,
            self.running_mean.view(-1),  # views: F.batch_norm updates the buffers in place
            self.running_var.view(-1),
            self.weight.reshape(-1),
            self.bias.reshape(-1),
            training=self.training,
            momentum=self.momentum,
            eps=self.eps,
        )
        return y.reshape(b, m, self.channels, *x.shape[-2:]).transpose(0, 1)


def avg_pool2(x: torch.Tensor) -> torch.Tensor:
    """2×2 average pooling, stride 2: ``(..., H, W) -> (..., H/2, W/2)`` (H, W even)."""
    h, w = x.shape[-2:]
    return x.unflatten(-1, (w // 2, 2)).unflatten(-3, (h // 2, 2)).mean((-1, -3))


def upsample2(x: torch.Tensor) -> torch.Tensor:
    """Nearest-neighbour upsampling by 2: ``(..., H, W) -> (..., 2H, 2W)``."""
    return x.repeat_interleave(2, dim=-1).repeat_interleave(2, dim=-2)


class ConvEncoder(EnsembleModule):
    """Translation-invariant CNN from an image to a vector.

    A 3×3 conv with periodic padding, ReLU, global max-pool over positions, then a
    two-layer MLP:
    ``(M, B, in_channels, H, W) -> (M, B, out_dim)``. Pooling makes the output depend on
    *which local patterns occur*, not where: for the IDM over (o, o') stacked as
    channels, a 3×3 window sees a one-cell move whole, so the latent describes the move
    rather than the square's position; periodic padding keeps walls and borders from
    leaking position back in. (With a position-aware head, any per-position
    labelling of the ≤5 reachable next cells reconstructs o' equally well, and the codes
    need not align with actions.)
    """

    def __init__(
        self,
        num_models: int,
        in_channels: int,
        width: int,
        out_dim: int,
        image_size: tuple[int, int],
    ) -> None:
        super().__init__(num_models)
        self.conv = EnsembleConv2d(
            num_models, in_channels, width, 3, image_size, padding=1, circular=True
        )
        self.hidden = EnsembleLinear(num_models, width, width)
        self.head = EnsembleLinear(num_models, width, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv(x)).flatten(3).amax(-1)
        return self.head(F.relu(self.hidden(h)))


class TinyUNet(EnsembleModule):
    """A one-level UNet: H×W -> H/2×W/2 -> H×W with a skip connection at full resolution.

    ``(M, B, in_channels, H, W) -> (M, B, out_channels, H, W)``; H and W must be even.
    For the 4×4 grid this is 4×4 -> 2×2 -> 4×4: the 2×2 level has a receptive field
    covering the whole image, the skip keeps per-cell detail.
    """

    def __init__(
        self,
        num_models: int,
        in_channels: int,
        out_channels: int,
        width: int,
        image_size: tuple[int, int],
    ) -> None:
        super().__init__(num_models)
        half = (image_size[0] // 2, image_size[1] // 2)
        m = num_models
        self.inc = EnsembleConv2d(m, in_channels, width, 3, image_size, padding=1)
        self.down = EnsembleConv2d(m, width, 2 * width, 2, image_size, stride=2)
        self.up = EnsembleConv2d(m, 2 * width, width, 2, half, stride=2, transposed=True)
        self.merge = EnsembleConv2d(m, 2 * width, width, 3, image_size, padding=1)
        self.out = EnsembleConv2d(m, width, out_channels, 1, image_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = F.relu(self.inc(x))
        h = F.relu(self.down(skip))
        h = F.relu(self.up(h))
        h = F.relu(self.merge(torch.cat([h, skip], dim=2)))
        return self.out(h)


class VectorQuantiser(EnsembleModule):
    """Nearest-neighbour vector quantiser with an EMA codebook and dead-code revival.

    Codebook (M, K, D) is a buffer, not a parameter: it is updated by exponential moving
    averages of the encoder outputs assigned to each code (van den Oord et al. 2017,
    appendix; decay ``ema_decay``, Laplace-smoothed counts), so there is no codebook loss;
    the encoder is held near its code by the commitment loss (computed by the caller).

    Codebook health: ``steps_unused[m, k]`` counts consecutive updates in which code k of
    copy m was chosen by no input. When it reaches ``dead_code_steps`` the code is
    *revived*: moved onto an encoder output of the current batch drawn with probability
    proportional to its squared distance from its own code (k-means++ style; its EMA
    state reset to that single point). Badly quantised outputs (those of a code that
    serves two clusters) are the likeliest picks, so a revived code splits a merged
    cluster rather than landing in a well-served one and dying again.
    """

    codebook: torch.Tensor
    cluster_size: torch.Tensor
    embed_sum: torch.Tensor
    steps_unused: torch.Tensor
    initialised: torch.Tensor

    def __init__(
        self,
        num_models: int,
        codebook_size: int,
        code_dim: int,
        ema_decay: float = 0.99,
        dead_code_steps: int = 100,
        eps: float = 1e-5,
    ) -> None:
        super().__init__(num_models)
        self.codebook_size, self.code_dim = codebook_size, code_dim
        self.ema_decay, self.dead_code_steps, self.eps = ema_decay, dead_code_steps, eps
        self.register_buffer("codebook", torch.zeros(num_models, codebook_size, code_dim))
        self.register_buffer("cluster_size", torch.ones(num_models, codebook_size))
        self.register_buffer("embed_sum", torch.zeros(num_models, codebook_size, code_dim))
        self.register_buffer(
            "steps_unused", torch.zeros(num_models, codebook_size, dtype=torch.long)
        )
        self.register_buffer("initialised", torch.zeros(num_models, dtype=torch.bool))
        self._quiet = 0  # updates to come that need not look for dead codes (see update)
        for m in range(num_models):
            self.reset_copy(m, torch.Generator().manual_seed(m))

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._quiet = 0  # the loaded unused counts are read at the next update
        super()._load_from_state_dict(*args, **kwargs)

    def reset_copy(self, index: int, generator: torch.Generator) -> None:
        # Placeholder; replaced by data on the first training batch (init_from_batch).
        codes = torch.randn(self.codebook_size, self.code_dim, generator=generator)
        self._set_codes(torch.tensor([index]), codes[None])
        self.initialised[index] = False

    def _set_codes(self, models: torch.Tensor, codes: torch.Tensor) -> None:
        self.codebook[models] = codes
        self.embed_sum[models] = codes
        self.cluster_size[models] = 1.0
        self.steps_unused[models] = 0

    @torch.no_grad()
    def init_from_batch(self, latent: torch.Tensor, generators: list[torch.Generator]) -> None:
        """Set each uninitialised copy's codes to K random rows of ``latent`` (M, B, D)."""
        for m in torch.nonzero(~self.initialised).flatten().tolist():
            rows = _random_rows(latent.shape[1], self.codebook_size, generators[m])
            self._set_codes(torch.tensor([m]), latent[m, rows][None])
            self.initialised[m] = True

    def nearest(self, latent: torch.Tensor) -> torch.Tensor:
        """Index of the nearest code: ``(M, B, D) -> (M, B)`` int64."""
        # ‖latent − e_k‖² without ‖latent‖², which is the same for every code k.
        distance = torch.baddbmm(
            self.codebook.pow(2).sum(-1)[:, None, :],
            latent,
            self.codebook.transpose(1, 2),
            alpha=-2,
        )
        return distance.argmin(-1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Code vectors of indices ``codes`` (M, B) -> (M, B, D)."""
        models = torch.arange(self.num_models, device=codes.device)
        return self.codebook[models[:, None], codes]

    @torch.no_grad()
    def update(
        self, latent: torch.Tensor, codes: torch.Tensor, generators: list[torch.Generator]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One EMA step from a batch, then revive dead codes.

        ``latent`` (M, B, D) detached encoder outputs, ``codes`` (M, B) their assignments.
        Returns the per-copy counts of codes chosen in this batch, (M, K), and the number
        of codes revived in each copy, (M,).
        """
        one_hot = F.one_hot(codes, self.codebook_size).to(latent.dtype)  # (M, B, K)
        counts = one_hot.sum(1)
        sums = torch.bmm(one_hot.transpose(1, 2), latent)
        gamma = self.ema_decay
        self.cluster_size.mul_(gamma).add_(counts, alpha=1 - gamma)
        self.embed_sum.mul_(gamma).add_(sums, alpha=1 - gamma)
        total = self.cluster_size.sum(-1, keepdim=True)
        smoothed = (self.cluster_size + self.eps) / (total + self.codebook_size * self.eps) * total
        self.codebook.copy_(self.embed_sum / smoothed[..., None])

        self.steps_unused.add_(1).masked_fill_(counts > 0, 0)
        dead = self.steps_unused >= self.dead_code_steps
        revived = dead.sum(-1)
        # Reading the device is a host synchronisation: skip it while no code can be dead,
        # an unused count growing by at most 1 per update.
        self._quiet -= 1
        if self._quiet < 0:
            self._quiet = self.dead_code_steps - 1 - int(self.steps_unused.max())
        if self._quiet < 0:
            for m in torch.nonzero(dead.any(-1)).flatten().tolist():
                ks = torch.nonzero(dead[m]).flatten()
                error = (latent[m] - self.codebook[m, codes[m]]).pow(2).sum(-1) + 1e-12
                # The generators live on the CPU (the same draws on every device).
                rows = torch.multinomial(
                    error.cpu(), len(ks), replacement=True, generator=generators[m]
                ).to(latent.device)
                self.codebook[m, ks] = latent[m, rows]
                self.embed_sum[m, ks] = latent[m, rows]
                self.cluster_size[m, ks] = 1.0
                self.steps_unused[m, ks] = 0
        return counts, revived


def _random_rows(n: int, k: int, generator: torch.Generator) -> torch.Tensor:
    """k distinct row indices out of n (with replacement if k > n)."""
    if k <= n:
        return torch.randperm(n, generator=generator)[:k]
    return torch.randint(n, (k,), generator=generator)


class ResidualBlock(EnsembleModule):
    """x + conv(σ(conv(σ(x)))), two 3×3 convolutions keeping size and channels:
    ``(M, B, C, H, W) -> (M, B, C, H, W)``; σ = ``activation`` (ReLU; LAOM's authors: ReLU6)."""

    def __init__(self, num_models: int, channels: int, image_size, activation=F.relu) -> None:
        super().__init__(num_models)
        m, self.activation = num_models, activation
        self.conv1 = EnsembleConv2d(m, channels, channels, 3, image_size, padding=1, grouped=True)
        self.conv2 = EnsembleConv2d(m, channels, channels, 3, image_size, padding=1, grouped=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.activation(self.conv1(self.activation(x))))


def max_pool3(x: torch.Tensor) -> torch.Tensor:
    """3×3 max-pooling, stride 2, padding 1: ``(M, B, C, H, W) -> (M, B, C, ⌈H/2⌉, ⌈W/2⌉)``."""
    y = F.max_pool2d(x.flatten(0, 1), 3, stride=2, padding=1)
    return y.unflatten(0, x.shape[:2])


class ResNetEncoder(EnsembleModule):
    """The package's IMPALA-style ResNet encoder for LAOM (the ``encoder="resnet"`` variant;
    the authors' encoder is :class:`lam_models.encoders.StridedConvEncoder`): per stage, a 3×3
    convolution to that stage's channels, 3×3 max-pooling with stride 2 (halving the image),
    and ``blocks`` :class:`ResidualBlock` s; then ReLU, flatten, a linear map to ``out_dim``
    and a LayerNorm without affine parameters (a fixed scale, so an embedding that is a
    prediction target cannot shrink to zero).

    ``(M, B, in_channels, H, W) -> (M, B, out_dim)``. Convolutions are grouped over the M
    copies (:class:`EnsembleConv2d` ``grouped``), which scales to 32×32 and beyond.

    ``stem`` = p > 1 first cuts the image into p×p patches and maps each linearly to
    ``channels[0]`` values (a convolution with kernel and stride p, :class:`PatchEmbed`):
    the stages then run on an image p² times smaller (on a 2-core CPU, the 32×32 grid at
    p = 4 trains about 10× faster). p = 1 is the published encoder.
    """

    def __init__(
        self,
        num_models: int,
        in_channels: int,
        channels: tuple[int, ...],
        blocks: int,
        out_dim: int,
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
            layers.append(EnsembleConv2d(m, in_channels, c, 3, size, padding=1, grouped=True))
            layers.append(_Pool())
            size = ((size[0] + 1) // 2, (size[1] + 1) // 2)
            layers.extend(ResidualBlock(m, c, size) for _ in range(blocks))
            in_channels = c
        self.stages = nn.Sequential(*layers)
        self.out = EnsembleLinear(m, in_channels * size[0] * size[1], out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.out(F.relu(self.stages(x)).flatten(2))
        return F.layer_norm(y, y.shape[-1:])


class PatchEmbed(EnsembleModule):
    """A convolution with kernel = stride = p, as a matrix product on p×p patches:
    ``(M, B, C, H, W) -> (M, B, out_channels, H/p, W/p)``."""

    def __init__(self, num_models: int, in_channels: int, out_channels: int, patch: int):
        super().__init__(num_models)
        self.patch, self.out_channels = patch, out_channels
        self.linear = EnsembleLinear(num_models, in_channels * patch * patch, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, b, c, h, w = x.shape
        p = self.patch
        patches = x.reshape(m, b, c, h // p, p, w // p, p).permute(0, 1, 3, 5, 2, 4, 6)
        y = self.linear(patches.reshape(m, -1, c * p * p))
        return y.reshape(m, b, h // p, w // p, self.out_channels).permute(0, 1, 4, 2, 3)


class _Pool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool3(x)
