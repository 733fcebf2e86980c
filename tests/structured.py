"""A generator whose local structure is known exactly, for known-answer tests.

The image is 3 x 16 x 16. Its left half depends on the latent only through
`region_basis^T x` (4-d) and its right half only through `keep_basis^T x` (6-d); the two
4-d and 6-d subspaces share one direction. So, exactly:
- the left half's Gram has rank 4 and its principal space is span(region_basis);
- the right half's null space is the orthogonal complement of span(keep_basis);
- the local directions of the left half lie in span(local_basis), the part of the region's
  subspace orthogonal to the kept one (3-d), and moving along them leaves the right half
  exactly unchanged, at any strength.
"""

from __future__ import annotations

import torch
from torch import nn

from lowrankgan.models.base import Model, generic_presets

LATENT_DIM = 24
SIZE = 16


class StructuredGenerator(nn.Module):
    def __init__(self, seed: int = 0, dtype: torch.dtype = torch.float32) -> None:
        super().__init__()
        gen = torch.Generator().manual_seed(seed)
        q, _ = torch.linalg.qr(
            torch.randn(LATENT_DIM, LATENT_DIM, generator=gen, dtype=torch.float64)
        )
        self.register_buffer("region_basis", q[:, 0:4].to(dtype))  # shares q[:, 3]
        self.register_buffer("keep_basis", q[:, 3:9].to(dtype))
        self.register_buffer("local_basis", q[:, 0:3].to(dtype))
        half = 3 * SIZE * (SIZE // 2)
        self.register_buffer("left_weight", (torch.randn(half, 4, generator=gen) * 0.3).to(dtype))
        self.register_buffer("right_weight", (torch.randn(half, 6, generator=gen) * 0.3).to(dtype))
        self.register_buffer("left_bias", (torch.randn(half, generator=gen) * 0.1).to(dtype))
        self.register_buffer("right_bias", (torch.randn(half, generator=gen) * 0.1).to(dtype))
        self.latent_dim = LATENT_DIM

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        left = torch.tanh((z @ self.region_basis) @ self.left_weight.T + self.left_bias)
        right = torch.tanh((z @ self.keep_basis) @ self.right_weight.T + self.right_bias)
        left = left.reshape(-1, 3, SIZE, SIZE // 2)
        right = right.reshape(-1, 3, SIZE, SIZE // 2)
        return torch.cat([left, right], dim=3)


def structured_model(dtype: torch.dtype = torch.float32) -> Model:
    network = StructuredGenerator(dtype=dtype).eval()
    presets = generic_presets(SIZE, SIZE)
    return Model(
        name="structured",
        network=network,
        latent_dim=LATENT_DIM,
        resolution=(SIZE, SIZE),
        synthesis_fn=lambda net, latents, condition: net(latents),
        presets=presets,
        source="tests/structured.py",
    )


class LayeredStructuredGenerator(nn.Module):
    """The same function as `StructuredGenerator`, built from standard layers so that the
    global baselines apply: `first` (an `nn.Linear` reading the latent: the 4 region and 6
    kept coordinates), `features` (an identity whose input GANSpace reads), then one linear
    layer and tanh per half."""

    def __init__(self, seed: int = 0) -> None:
        super().__init__()
        reference = StructuredGenerator(seed)
        self.region_basis = reference.region_basis
        self.keep_basis = reference.keep_basis
        self.local_basis = reference.local_basis
        self.first = nn.Linear(LATENT_DIM, 10, bias=False)
        self.features = nn.Identity()
        half = 3 * SIZE * (SIZE // 2)
        self.left = nn.Linear(4, half)
        self.right = nn.Linear(6, half)
        self.latent_dim = LATENT_DIM
        with torch.no_grad():
            self.first.weight.copy_(torch.cat([reference.region_basis, reference.keep_basis], 1).T)
            self.left.weight.copy_(reference.left_weight)
            self.left.bias.copy_(reference.left_bias)
            self.right.weight.copy_(reference.right_weight)
            self.right.bias.copy_(reference.right_bias)
        self.requires_grad_(False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        coordinates = self.features(self.first(z))
        left = torch.tanh(self.left(coordinates[:, :4])).reshape(-1, 3, SIZE, SIZE // 2)
        right = torch.tanh(self.right(coordinates[:, 4:])).reshape(-1, 3, SIZE, SIZE // 2)
        return torch.cat([left, right], dim=3)


def layered_structured_model() -> Model:
    """`LayeredStructuredGenerator` as a model; GANSpace reads `features`."""
    network = LayeredStructuredGenerator().eval()
    return Model(
        name="layered-structured",
        network=network,
        latent_dim=LATENT_DIM,
        resolution=(SIZE, SIZE),
        synthesis_fn=lambda net, latents, condition: net(latents),
        presets=generic_presets(SIZE, SIZE),
        source="tests/structured.py",
        pca_features="features",
    )


def factory() -> nn.Module:
    """For the command line: `--model tests/structured.py:factory` (GANSpace then needs
    `--ganspace-layer features`)."""
    return LayeredStructuredGenerator()
