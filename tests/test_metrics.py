"""Edit metrics against values computed by hand on tiny images."""

from __future__ import annotations

import math

import torch

from lowrankgan.core.metrics import locality


def test_hand_computed_two_by_two():
    # 1 channel, 2x2; region = top-left pixel; kept = the other three.
    original = torch.zeros(1, 2, 2, dtype=torch.float64)
    edited = torch.tensor([[[0.4, 0.1], [0.0, -0.1]]], dtype=torch.float64)
    region = torch.tensor([[True, False], [False, False]])
    result = locality(original, edited, region)
    assert math.isclose(result.rms_inside, 0.4)
    mse_kept = (0.1**2 + 0.0 + 0.1**2) / 3
    assert math.isclose(result.mse_kept, mse_kept)
    assert math.isclose(result.rms_outside, math.sqrt(mse_kept))
    assert math.isclose(result.ratio, math.sqrt(mse_kept) / 0.4)
    assert math.isclose(result.energy_inside, 0.16 / (0.16 + 0.02))
    assert math.isclose(result.psnr_kept, 10 * math.log10(4 / mse_kept))


def test_channels_and_explicit_kept_region():
    # 3 channels: the mean runs over pixels and channels; pixels in neither mask are ignored.
    original = torch.zeros(3, 1, 3, dtype=torch.float64)
    edited = torch.zeros(3, 1, 3, dtype=torch.float64)
    edited[:, 0, 0] = torch.tensor([0.3, 0.0, 0.0], dtype=torch.float64)  # region
    edited[:, 0, 1] = torch.tensor([5.0, 5.0, 5.0], dtype=torch.float64)  # neither: must not count
    edited[:, 0, 2] = torch.tensor([0.0, 0.2, 0.0], dtype=torch.float64)  # kept
    region = torch.tensor([[True, False, False]])
    kept = torch.tensor([[False, False, True]])
    result = locality(original, edited, region, kept)
    assert math.isclose(result.rms_inside, math.sqrt(0.09 / 3))
    assert math.isclose(result.mse_kept, 0.04 / 3)
    assert math.isclose(result.energy_inside, 0.09 / 0.13)


def test_unchanged_images():
    image = torch.rand(3, 4, 4)
    region = torch.zeros(4, 4, dtype=torch.bool)
    region[1:3, 1:3] = True
    result = locality(image, image, region)
    assert result.ratio == math.inf and result.psnr_kept == math.inf
    assert result.mse_kept == 0.0 and result.energy_inside == 0.0
