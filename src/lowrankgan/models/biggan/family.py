"""BigGAN-deep as a lowrankgan `Model`: the z space with a fixed class.

A folder holding `config.json` and `pytorch_model.bin` (the layout of the downloaded
BigGAN-deep checkpoints) becomes a class-conditional `Model` whose analysis space is the
128-d `z`: seeds are truncated normals scaled by `truncation`, the same truncation picks the
batch-norm standing statistics, and the class is chosen by ImageNet index or name.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from lowrankgan.errors import UserInputError
from lowrankgan.models.base import LoadOptions, Model, NoBuiltins, Source, generic_presets
from lowrankgan.models.biggan.imagenet import imagenet_classes
from lowrankgan.models.biggan.network import (
    BigGANDeep,
    check_truncation,
    load_biggan,
    truncated_normal,
)

#: The truncation of BigGAN demos when none is given.
DEFAULT_TRUNCATION = 0.4


def biggan_model(folder: Path, *, name: str, truncation: float | None = None) -> Model:
    """A `Model` of the BigGAN-deep checkpoint in `folder`, in z space."""
    network, config = load_biggan(folder)
    psi = check_truncation(DEFAULT_TRUNCATION if truncation is None else truncation)
    if config.num_classes == 1000:
        class_names = imagenet_classes()
    else:
        class_names = tuple(str(i) for i in range(config.num_classes))

    def synthesize(net: nn.Module, latents: torch.Tensor, condition: torch.Tensor | None):
        assert isinstance(net, BigGANDeep) and condition is not None
        return net(latents, condition, psi)

    def sample(model: Model, seed: int) -> torch.Tensor:
        return truncated_normal(1, config.z_dim, psi, seed)[0].to(model.device, model.dtype)

    size = config.output_dim
    return Model(
        name=name,
        network=network,
        latent_dim=config.z_dim,
        resolution=(size, size),
        synthesis_fn=synthesize,
        channels=3,
        space="z",
        presets=generic_presets(size, size),
        source=f"biggan-deep {folder}",
        description=f"BigGAN-deep {size}x{size}, {config.num_classes} classes, z {config.z_dim}-d",
        class_names=class_names,
        condition=0,
        latent_sampler=sample,
        details={"truncation": psi},
        latent_layer=_gen_z_weights,
        # The second block reads the first block's output (GANSpace's early BigGAN layer).
        pca_features="generator.layers.1",
    )


def _gen_z_weights(network: nn.Module) -> torch.Tensor:
    """The z columns of `gen_z` (spectral norm folded): `(16 C, z_dim)`."""
    assert isinstance(network, BigGANDeep)
    return network.generator.gen_z.weight[:, : network.config.z_dim]


class BigGANFamily(NoBuiltins):
    """A folder with BigGAN-deep's `config.json` and `pytorch_model.bin`, analysed in z."""

    name = "biggan"
    spaces = ("z",)
    reads = "folder"
    expects = "the config.json and pytorch_model.bin of a BigGAN-deep model"

    def detect(self, source: Source) -> bool:
        folder = source.path
        return folder.is_dir() and (
            (folder / "config.json").is_file()
            or next(folder.glob("*-config.json"), None) is not None
        )

    def load(self, source: Source, options: LoadOptions) -> Model:
        if options.layers is not None or options.space not in (None, "z"):
            raise UserInputError(
                f"{source.text}: BigGAN models are analysed in z (drop --space/--layers)"
            )
        return biggan_model(source.path, name=source.text, truncation=options.truncation)
