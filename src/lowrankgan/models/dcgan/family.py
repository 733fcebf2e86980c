"""The DCGAN family: plain state dicts of transposed-conv generators, analysed in z.

Two built-in models ship in MIT pip wheels (only their weight files are read, the packages
are never imported): `dcgan-faces` (64x64 DigiFace faces) and `omniart-eyes` (128x128 eyes,
class-conditional on 8 colours). Any other checkpoint of this layout loads by path.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from lowrankgan.errors import UserInputError
from lowrankgan.models.base import (
    BuiltinSpec,
    LoadOptions,
    Model,
    Source,
    generic_presets,
    only_z,
)
from lowrankgan.models.checkpoints import check_checkpoint_file, find_state_dict, load_state_file
from lowrankgan.models.dcgan.network import build_dcgan, is_dcgan_state, synthesize_dcgan
from lowrankgan.shapes import Box, Difference, Ellipse, Shape, Union

#: Where generator weights sit inside training checkpoints that hold more than the generator.
STATE_KEYS = ("netG_state_dict", "generator")

# Placed on the average of 256 samples of the DigiFace DCGAN (64x64, faces centred).
_FACE = Ellipse(32.0, 36.0, 20.0, 27.0)
DCGAN_FACES_PRESETS: dict[str, Shape] = {
    "eyes": Box(14, 25, 50, 35),
    "left_eye": Box(14, 25, 31, 35),
    "right_eye": Box(33, 25, 50, 35),
    "nose": Box(26, 33, 38, 46),
    "mouth": Box(21, 46, 43, 56),
    "hair": Box(6, 0, 58, 12),
    "face": _FACE,
    "background": Difference(Box(0, 0, 64, 64), Ellipse(32.0, 36.0, 24.0, 31.0)),
}

# Placed on the average of 64 samples of the OmniArt eye DCGAN (128x128, eye centred).
OMNIART_EYE_CLASSES = ("amber", "blue", "brown", "gray", "grayscale", "green", "hazel", "red")
OMNIART_EYES_PRESETS: dict[str, Shape] = {
    "iris": Ellipse(64.0, 63.0, 24.0, 23.0),
    "lids": Union((Box(12, 30, 116, 46), Box(12, 82, 116, 96))),
    "eye": Ellipse(64.0, 63.0, 52.0, 30.0),
    "skin": Difference(Box(0, 0, 128, 128), Ellipse(64.0, 63.0, 56.0, 34.0)),
}


@dataclass(frozen=True)
class DCGANBuiltin(BuiltinSpec):
    """A built-in DCGAN: its wheel, where the state dict sits, its presets and classes."""

    state_keys: tuple[str, ...] = ()
    presets: Mapping[str, Shape] | None = None
    class_names: tuple[str, ...] | None = None
    latent_dim: int | None = None


BUILTINS: dict[str, DCGANBuiltin] = {
    "dcgan-faces": DCGANBuiltin(
        name="dcgan-faces",
        description="DCGAN, 64x64 faces trained on DigiFace-1M (z, 100-d)",
        distribution="gan-face-generate",
        weights_file="gan_face_generate/weights.tar",
        state_keys=("netG_state_dict",),
        presets=DCGAN_FACES_PRESETS,
    ),
    "omniart-eyes": DCGANBuiltin(
        name="omniart-eyes",
        description="class-conditional DCGAN, 128x128 eyes, 8 colour classes (z, 100-d)",
        distribution="omniart-eye-generator",
        weights_file="omniart_eye_generator/generator_model_state.pth",
        presets=OMNIART_EYES_PRESETS,
        class_names=OMNIART_EYE_CLASSES,
        latent_dim=100,
    ),
}


def dcgan_model(
    state: Mapping[str, torch.Tensor],
    name: str,
    source: str,
    presets: Mapping[str, Shape] | None = None,
    class_names: tuple[str, ...] | None = None,
    latent_dim: int | None = None,
    description: str = "",
) -> Model:
    """A `Model` in z of a DCGAN state dict; a conditional one takes `latent_dim` z values
    followed by a one-hot of `class_names`."""
    network = build_dcgan(state, source)
    in_dim = network.in_dim
    n_classes = len(class_names) if class_names else 0
    if latent_dim is None:
        latent_dim = in_dim - n_classes
    if latent_dim + n_classes != in_dim:
        raise UserInputError(
            f"{source}: first layer takes {in_dim} inputs, expected {latent_dim}+{n_classes}"
        )
    size = network.resolution
    all_presets = generic_presets(size, size)
    all_presets.update(presets or {})
    return Model(
        name=name,
        network=network,
        latent_dim=latent_dim,
        resolution=(size, size),
        synthesis_fn=synthesize_dcgan,
        channels=network.out_channels,
        space="z",
        presets=all_presets,
        source=source,
        description=description or f"DCGAN {size}x{size}",
        class_names=class_names,
        condition=0 if class_names else None,
        # The second transposed convolution reads the first block's rectified features.
        pca_features="convs.1",
    )


class DCGANFamily:
    """Plain (or training-checkpoint-wrapped) state dicts of the DCGAN layout."""

    name = "dcgan"
    spaces = ("z",)
    reads = "file"
    expects = "a PyTorch state dict of a DCGAN generator"

    def detect(self, source: Source) -> bool:
        if not source.path.is_file():
            return False
        state = source.state
        return isinstance(state, Mapping) and is_dcgan_state(find_state_dict(state, STATE_KEYS))

    def load(self, source: Source, options: LoadOptions) -> Model:
        only_z(options, source.text)
        state = find_state_dict(source.state, STATE_KEYS)
        return dcgan_model(state, source.text, source.text)

    def builtins(self) -> Mapping[str, DCGANBuiltin]:
        return BUILTINS

    def load_builtin(self, name: str, options: LoadOptions) -> Model:
        only_z(options, name)
        spec = BUILTINS[name]
        path = spec.installed_weights(options.checkpoint)
        check_checkpoint_file(path)
        state = find_state_dict(load_state_file(path), spec.state_keys)
        return dcgan_model(
            state,
            spec.name,
            str(path),
            spec.presets,
            spec.class_names,
            spec.latent_dim,
            spec.description,
        )
