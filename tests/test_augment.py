"""Batch augmentation: per-sample randomness, exact edge cases, determinism, and the name check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from pipeline.augment import build_augment, cutout, horizontal_flip, list_augments, random_crop
from pipeline.errors import ConfigError


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("name", list_augments())
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


@pytest.mark.parametrize("name", ["crop", "flip", "crop_flip", "strong"])
def test_deterministic_under_a_fixed_generator(name: str) -> None:
    x = torch.rand(16, 3, 32, 32)
    fn = build_augment(name)
    assert torch.equal(fn(x, gen(1)), fn(x, gen(1)))
    assert not torch.equal(fn(x, gen(1)), fn(x, gen(2)))


def test_none_is_identity() -> None:
    x = torch.rand(4, 1, 8, 8)
    assert torch.equal(build_augment("none")(x, gen()), x)


def test_bad_name_lists_allowed_values() -> None:
    with pytest.raises(ConfigError, match="allowed: none, crop, flip, crop_flip, strong"):
        build_augment("rotate")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="padding"):
        build_augment("crop", padding=-1)
