"""Batch image augmentation: every sample in an (N, C, H, W) tensor gets its own random draw, with no Python loop.

Data sets live in memory as tensors (often on the GPU), so augmentation runs on whole batches with index
arithmetic instead of torchvision's per-image transforms. Random numbers come from the `torch.Generator`
passed in, which makes a run reproducible; they are drawn on the generator's device and then moved to the
data's, so a CPU generator works with data on any device.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import get_args

import torch
import torch.nn.functional as F

from pipeline.config import AugmentName
from pipeline.errors import ConfigError

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


def _randint(high: int, n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=generator.device).to(device)


def _rand(n: int, generator: torch.Generator, device: torch.device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device).to(device)


def random_crop(x: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Zero-pad by `padding` on each side, then cut an HxW window at a random offset per sample."""
    if padding <= 0:
        return x
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    dy = _randint(2 * padding + 1, n, generator, x.device)
    dx = _randint(2 * padding + 1, n, generator, x.device)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    chan = torch.arange(c, device=x.device)[None, :, None, None]
    # One gather: the four index tensors broadcast to (N, C, H, W).
    return padded[batch, chan, rows, cols]


def horizontal_flip(x: torch.Tensor, p: float, generator: torch.Generator) -> torch.Tensor:
    """Mirror each sample left-right with probability `p` (p=0: unchanged, p=1: all flipped)."""
    flip = _rand(len(x), generator, x.device) < p
    return torch.where(flip[:, None, None, None], x.flip(-1), x)


def random_affine(x: torch.Tensor, max_degrees: float, max_shift: float, generator: torch.Generator) -> torch.Tensor:
    """Rotate each sample about its centre by its own angle, uniform in [-max_degrees, max_degrees], then shift it
    by its own offset, uniform in [-max_shift, max_shift] of the image side on each axis.

    Bilinear resampling; pixels that come from outside the image repeat the nearest edge pixel, so no artificial
    border enters (zero padding, as `random_crop` pads, is a mid-grey frame on a digit's dark background). Small
    angles and shifts keep a digit's label, unlike a mirror image. Square images: the grid is normalized.
    """
    if max_degrees <= 0 and max_shift <= 0:
        return x
    n = len(x)
    angle = (_rand(n, generator, x.device) * 2 - 1) * math.radians(max_degrees)
    # affine_grid's coordinates run over [-1, 1]: a shift of s image sides is 2s there
    tx, ty = ((_rand(n, generator, x.device) * 2 - 1) * 2 * max_shift for _ in range(2))
    cos, sin = angle.cos(), angle.sin()
    theta = torch.stack([torch.stack([cos, -sin, tx], 1), torch.stack([sin, cos, ty], 1)], 1)  # (N, 2, 3)
    grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def cutout(x: torch.Tensor, size: int, generator: torch.Generator, p: float = 1.0) -> torch.Tensor:
    """Random erasing as in Cutout (DeVries & Taylor, 2017): zero a size x size square per sample.

    The square's centre is uniform over the image, so near a border part of it falls outside, as in the paper.
    Zero is the channel mean of prepared (standardized) data, so the hole carries no signal.
    """
    n, _, h, w = x.shape
    cy, cx = _randint(h, n, generator, x.device), _randint(w, n, generator, x.device)
    apply = _rand(n, generator, x.device) < p
    y0, x0 = cy - size // 2, cx - size // 2
    ys, xs = torch.arange(h, device=x.device), torch.arange(w, device=x.device)
    in_y = (ys >= y0[:, None]) & (ys < y0[:, None] + size)  # (N, H)
    in_x = (xs >= x0[:, None]) & (xs < x0[:, None] + size)  # (N, W)
    hole = in_y[:, :, None] & in_x[:, None, :] & apply[:, None, None]  # (N, H, W)
    return x.masked_fill(hole[:, None], 0)


def _chain(*fns: Augment) -> Augment:
    def run(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        for fn in fns:
            x = fn(x, generator)
        return x

    return run


def _identity(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    return x


def _default_padding(x: torch.Tensor) -> int:
    # An eighth of the side: the usual 4 px at 32 px (CIFAR), 3 px at 28 px, 1 px for 8x8 digits.
    return max(1, min(x.shape[-2:]) // 8)


AUGMENTS: tuple[str, ...] = get_args(AugmentName)
ROTATION_DEGREES = 15.0  # small enough that a 6 does not become a 9, nor a 1 a 7
SHIFT = 0.125  # of the image side: 1 px at 8 px, as the crop's default padding


def build_augment(name: AugmentName, padding: int | None = None) -> Augment:
    """The batch augmentation called `name`, as `fn(x, generator) -> x`.

    `padding` is the crop padding in pixels; None picks an eighth of the image side at call time.
    `strong` = crop + flip + Cutout with a square of half the image side (the Cutout paper's 16 px at 32 px).
    `rotate` = a random rotation of at most ROTATION_DEGREES; `affine` = that rotation and a random shift of at most
    SHIFT of the side, edges replicated: the two that keep a digit's label (a flip does not: a mirrored 2, 3, 4, 5,
    7 or 9 is no digit; left-right symmetric clothing, the full profile's data, is where flips belong).
    """
    if name not in AUGMENTS:
        raise ConfigError(f"unknown augment {name!r}; allowed: {', '.join(AUGMENTS)}", key="augment")
    if padding is not None and padding < 0:
        raise ConfigError(f"crop padding must be >= 0, got {padding}", key="padding")

    def crop(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return random_crop(x, _default_padding(x) if padding is None else padding, g)

    def erase(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return cutout(x, max(1, min(x.shape[-2:]) // 2), g)

    def flip(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return horizontal_flip(x, 0.5, g)

    def rotate(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return random_affine(x, ROTATION_DEGREES, 0.0, g)

    def affine(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        return random_affine(x, ROTATION_DEGREES, SHIFT, g)

    policies: dict[str, Augment] = {
        "none": _identity,
        "crop": crop,
        "flip": flip,
        "crop_flip": _chain(crop, flip),
        "strong": _chain(crop, flip, erase),
        "rotate": rotate,
        "affine": affine,
    }
    return policies[name]
