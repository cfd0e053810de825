"""Batch augmentation: per-sample randomness, exact edge cases, determinism, and the name check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.augment import (
    AUGMENTS,
    ROTATION_DEGREES,
    build_augment,
    cutout,
    horizontal_flip,
    random_affine,
    random_crop,
)
from pipeline.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", AUGMENTS)
@pytest.mark.parametrize(("shape", "padding"), [((5, 1, 8, 8), 1), ((5, 1, 28, 28), None), ((5, 3, 32, 32), 4)])
def test_every_policy_preserves_shape_and_dtype(name: str, shape: tuple[int, ...], padding: int | None) -> None:
    x = torch.rand(shape)
    out = build_augment(name, padding=padding)(x, gen())
    assert out.shape == x.shape and out.dtype == x.dtype
    assert torch.isfinite(out).all()


def test_random_crop_matches_a_per_sample_reference() -> None:
    x = torch.rand(16, 3, 10, 12)
    out = random_crop(x, 2, gen(7))
    g = gen(7)  # the same draws, in the same order, as random_crop makes them
    dy, dx = torch.randint(0, 5, (16,), generator=g), torch.randint(0, 5, (16,), generator=g)
    padded = F.pad(x, (2, 2, 2, 2))
    ref = torch.stack([padded[i, :, dy[i] : dy[i] + 10, dx[i] : dx[i] + 12] for i in range(16)])
    assert torch.equal(out, ref)


def test_identical_images_get_different_crops() -> None:
    x = torch.rand(1, 1, 8, 8).expand(32, 1, 8, 8).contiguous()
    out = random_crop(x, 1, gen())
    distinct = {tuple(o.flatten().tolist()) for o in out}
    assert len(distinct) > 4  # 9 possible offsets; all 32 equal would have probability 9**-31


def test_crop_with_zero_padding_is_identity() -> None:
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(random_crop(x, 0, gen()), x)


def test_flip_edge_probabilities() -> None:
    x = torch.rand(8, 3, 6, 6)
    assert torch.equal(horizontal_flip(x, 0.0, gen()), x)
    assert torch.equal(horizontal_flip(x, 1.0, gen()), torch.flip(x, dims=[-1]))
    half = horizontal_flip(x[:1].expand(64, 3, 6, 6), 0.5, gen())
    flipped = (half == torch.flip(x[:1], dims=[-1])).flatten(1).all(1)
    assert 0 < flipped.sum() < 64  # per-sample mask, not one coin for the batch


def test_cutout_zeroes_at_most_one_square_per_sample() -> None:
    x = torch.ones(64, 2, 16, 16)
    out = cutout(x, 8, gen())
    zeros = (out == 0).all(1).flatten(1).sum(1)  # both channels erased together
    assert (zeros <= 64).all() and (zeros > 0).all()
    assert len(set(zeros.tolist())) > 1  # squares clipped at the border differently per sample
    assert torch.equal(cutout(x, 8, gen(), p=0.0), x)


@pytest.mark.parametrize("name", ["crop", "flip", "crop_flip", "strong", "rotate", "affine"])
def test_deterministic_under_a_fixed_generator(name: str) -> None:
    x = torch.rand(16, 3, 32, 32)
    fn = build_augment(name)
    assert torch.equal(fn(x, gen(1)), fn(x, gen(1)))
    assert not torch.equal(fn(x, gen(1)), fn(x, gen(2)))


def test_none_is_identity() -> None:
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(build_augment("none")(x, gen()), x)


def test_affine_without_angle_or_shift_is_identity() -> None:
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(random_affine(x, 0.0, 0.0, gen()), x)


def test_affine_shift_moves_a_digit_by_whole_pixels_at_most() -> None:
    # a bright column on a dark background, shifted by at most 1/8 of 8 px: its mass stays one column wide and
    # moves at most 1 px; nothing enters from outside, since the edges are replicated (dark here)
    x = torch.zeros(64, 1, 8, 8)
    x[..., 1:7, 4] = 1.0
    out = random_affine(x, 0.0, 0.125, gen(3))
    cols = (out.sum(dim=(1, 2)) / out.sum(dim=(1, 2, 3))[:, None] * torch.arange(8.0)).sum(1)  # mass centre
    assert ((cols - 4).abs() <= 1 + 1e-5).all() and (cols - 4).abs().max() > 0.3
    assert torch.allclose(out.sum(dim=(1, 2, 3)), x.sum(dim=(1, 2, 3)), rtol=0.2)
    assert out.min() >= 0 and out.max() <= 1  # bilinear: no overshoot


def test_rotation_turns_each_sample_by_its_own_small_angle() -> None:
    # a horizontal bar through the centre: its angle after rotation, from the second moments of its mass
    x = torch.zeros(128, 1, 16, 16)
    x[..., 7:9, 2:14] = 1.0
    out = build_augment("rotate")(x, gen(5))
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    w = out[:, 0]
    m = w.sum(dim=(1, 2))
    cy, cx = (w * ys).sum(dim=(1, 2)) / m, (w * xs).sum(dim=(1, 2)) / m
    dy, dx = ys - cy[:, None, None], xs - cx[:, None, None]
    sxy, sxx, syy = (w * dx * dy).sum(dim=(1, 2)), (w * dx * dx).sum(dim=(1, 2)), (w * dy * dy).sum(dim=(1, 2))
    angle = torch.rad2deg(0.5 * torch.atan2(2 * sxy, sxx - syy)).abs()
    assert angle.max() <= ROTATION_DEGREES + 1.5  # pixel grid: a degree or so of slack
    assert angle.max() > ROTATION_DEGREES / 2 and len(set(angle.round().tolist())) > 5  # per sample, not one draw


def test_label_preserving_policies_never_mirror() -> None:
    # an asymmetric image: a flip would move its mass to the other side; rotate and affine keep it near
    x = torch.zeros(32, 1, 8, 8)
    x[..., 2:6, 1] = 1.0
    for name in ("rotate", "affine"):
        out = build_augment(name)(x, gen(2))
        left, right = out[..., :4].sum(dim=(1, 2, 3)), out[..., 4:].sum(dim=(1, 2, 3))
        assert (left > right).all(), name


def test_bad_name_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match="allowed: none, crop, flip, crop_flip, strong, rotate, affine"):
        build_augment("mixup")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="padding"):
        build_augment("crop", padding=-1)
