"""The model zoo: official StyleGAN2 checkpoints lowrankgan knows how to download.

This module owns the catalogue only (names, URLs, file names, published sizes and SHA-256
digests, licences); `lowrankgan.zoo.download` does the downloading and `lowrankgan.models`
the loading.

Naming scheme: `<dataset>-<resolution>` for NVIDIA's PyTorch StyleGAN2 pickles on NGC (the
default choice), with a suffix for the other releases of the same model family: `-ada` for the
StyleGAN2-ADA-PyTorch pickles and `-tf` for the original TensorFlow pickles of the StyleGAN2
paper (the only release of LSUN car/cat/church/horse).

Checksums: NVIDIA publishes no digests for any of these files. The values pinned below were
found in Git LFS pointers of public Hugging Face mirrors (an LFS pointer records the SHA-256 and
exact byte size of the file it stands for); each entry names its source. A value is pinned only
where the mirror is trustworthy as a byte copy of the official file: two independent mirrors
agree, or the mirror belongs to a project whose own script downloads that file from NVIDIA's URL.
Everything else stays `None`, and the fetcher reports the computed digest as "unverified".
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass
from typing import Literal

from lowrankgan.errors import UserInputError

ZooFormat = Literal["nvidia-pkl", "tf-pkl", "biggan-hf"]


@dataclass(frozen=True)
class ZooEntry:
    """One downloadable checkpoint: where it lives and how to check the bytes we got."""

    name: str
    family: str
    url: str
    filename: str
    size_bytes: int | None
    sha256: str | None
    resolution: int
    dataset: str
    format: ZooFormat
    licence: str
    notes: str = ""
    #: other files downloaded beside this one (BigGAN's config.json), into `folder`
    companions: tuple[ZooEntry, ...] = ()
    #: a sub-folder of the cache for models stored as several files; `fetch` returns it
    folder: str | None = None

    @property
    def verified(self) -> bool:
        """True when a published digest pins the exact bytes."""
        return self.sha256 is not None


@dataclass(frozen=True)
class _Release:
    """Where one NVIDIA release keeps its pickles, and on what terms."""

    base_url: str
    format: ZooFormat
    licence: str


# Weights are research releases under non-commercial licences; we only point at NVIDIA's
# servers and never redistribute them.
_NGC = _Release(
    "https://api.ngc.nvidia.com/v2/models/nvidia/research/stylegan2/versions/1/files/",
    "nvidia-pkl",
    "NVIDIA Source Code License (non-commercial), via NVlabs/stylegan3",
)
_ADA = _Release(
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/",
    "nvidia-pkl",
    "NVIDIA Source Code License (non-commercial), via NVlabs/stylegan2-ada-pytorch",
)
_TF = _Release(
    "https://nvlabs-fi-cdn.nvidia.com/stylegan2/networks/",
    "tf-pkl",
    "Nvidia Source Code License-NC, via NVlabs/stylegan2",
)


def _entry(
    release: _Release,
    name: str,
    filename: str,
    resolution: int,
    dataset: str,
    *,
    sha256: str | None = None,
    size_bytes: int | None = None,
    notes: str = "",
) -> ZooEntry:
    return ZooEntry(
        name=name,
        family="stylegan2",
        url=release.base_url + filename,
        filename=filename,
        size_bytes=size_bytes,
        sha256=sha256,
        resolution=resolution,
        dataset=dataset,
        format=release.format,
        licence=release.licence,
        notes=notes,
    )


def _biggan(resolution: int, base_url: str, prefix: str = "", notes: str = "") -> ZooEntry:
    """BigGAN-deep in the Hugging Face layout: pytorch_model.bin plus config.json, saved
    under their plain names in `biggan-deep-<resolution>/` whatever the URL calls them."""
    name = f"biggan-deep-{resolution}"

    def file(filename: str) -> ZooEntry:
        return ZooEntry(
            name=name,
            family="biggan",
            url=base_url + prefix + filename,
            filename=filename,
            size_bytes=None,
            sha256=None,
            resolution=resolution,
            dataset="ImageNet",
            format="biggan-hf",
            licence="Apache-2.0 (DeepMind's TF Hub BigGAN, converted by Hugging Face)",
            notes=notes,
        )

    return dataclasses.replace(
        file("pytorch_model.bin"), companions=(file("config.json"),), folder=name
    )


# BigGAN-deep: FORMATS.md section 4. The 128 model is confirmed on the Hugging Face hub
# (osanseviero/BigGAN-deep-128, 211 MB); for 256 and 512 we point at the S3 URLs that the
# pytorch-pretrained-biggan package itself uses (live when it was written, not verified here).
# No digest or exact size has been published for any of them.
_BIGGAN_S3 = "https://s3.amazonaws.com/models.huggingface.co/biggan/"
_BIGGAN_ENTRIES = (
    _biggan(128, "https://huggingface.co/osanseviero/BigGAN-deep-128/resolve/main/"),
    _biggan(256, _BIGGAN_S3, "biggan-deep-256-", "the package's S3 mirror"),
    _biggan(512, _BIGGAN_S3, "biggan-deep-512-", "the package's S3 mirror"),
)

_ENTRIES: tuple[ZooEntry, ...] = (
    # --- NVIDIA PyTorch StyleGAN2 on NGC (published with NVlabs/stylegan3) ---
    # Not pinned: two HF mirrors named after this file disagree (spaces/ybelkada/interfacegan_pp
    # has sha256 5288b53a...55d0, 381601496 bytes; DragGan/DragGan-Models
    # "stylegan2-ffhq1024x1024.pkl" has a205a346...524c, the same bytes as a mirrored ADA
    # ffhq.pkl), so neither can be trusted to be this file.
    _entry(_NGC, "ffhq-1024", "stylegan2-ffhq-1024x1024.pkl", 1024, "FFHQ"),
    # sha256 from the LFS details of huggingface.co/DragGan/DragGan-Models
    # stylegan2-ffhq-512x512.pkl; DragGAN's scripts/download_model.sh fetches this very NGC URL.
    # The exact byte size is not shown there ("364 MB"), so the size stays unknown.
    _entry(
        _NGC,
        "ffhq-512",
        "stylegan2-ffhq-512x512.pkl",
        512,
        "FFHQ",
        sha256="d2b1c92f41ce8a64c55f7a75ef06c4c0eef9e17b1eb29aae8c10fb37b3e60478",
    ),
    # No published checksum or size found.
    _entry(_NGC, "ffhq-256", "stylegan2-ffhq-256x256.pkl", 256, "FFHQ"),
    # No published checksum or size found.
    _entry(_NGC, "metfaces-1024", "stylegan2-metfaces-1024x1024.pkl", 1024, "MetFaces"),
    # No published checksum or size found.
    _entry(_NGC, "afhqv2-512", "stylegan2-afhqv2-512x512.pkl", 512, "AFHQv2 (all animals)"),
    # sha256 from the LFS details of huggingface.co/DragGan/DragGan-Models
    # stylegan2-afhqcat-512x512.pkl (DragGAN's download script fetches this NGC URL); the exact
    # size is not shown ("364 MB").
    _entry(
        _NGC,
        "afhqcat-512",
        "stylegan2-afhqcat-512x512.pkl",
        512,
        "AFHQ cats",
        sha256="17a83abee464242f8bb40dc6363d33c2fb087066b68fc0147677fdbf21f7a7a9",
    ),
    # No published checksum or size found.
    _entry(_NGC, "afhqdog-512", "stylegan2-afhqdog-512x512.pkl", 512, "AFHQ dogs"),
    # No published checksum or size found.
    _entry(_NGC, "afhqwild-512", "stylegan2-afhqwild-512x512.pkl", 512, "AFHQ wild animals"),
    # No published checksum or size found.
    _entry(_NGC, "celebahq-256", "stylegan2-celebahq-256x256.pkl", 256, "CelebA-HQ"),
    # No published checksum or size found.
    _entry(_NGC, "lsundog-256", "stylegan2-lsundog-256x256.pkl", 256, "LSUN dog"),
    # --- StyleGAN2-ADA-PyTorch ---
    # Not pinned: HF mirrors hold a205a346...524c (381624121 bytes) both as spaces/edemana
    # ffhq.pkl and as DragGan-Models "stylegan2-ffhq1024x1024.pkl", so which official file those
    # bytes are is ambiguous.
    _entry(_ADA, "ffhq-1024-ada", "ffhq.pkl", 1024, "FFHQ", notes="StyleGAN2-ADA paper model"),
    # sha256: two independent HF mirrors agree (aaronb/StyleGAN2-pkl ada/metfaces.pkl and
    # spaces/adirik/stylemc-demo pretrained/metfaces.pkl); the exact size is not shown ("382 MB").
    _entry(
        _ADA,
        "metfaces-1024-ada",
        "metfaces.pkl",
        1024,
        "MetFaces",
        sha256="880a460d011a3696c088f58f5844b44271b17903963f2671f96f72dfbce5f76f",
        notes="StyleGAN2-ADA paper model (transfer learning from FFHQ)",
    ),
    # --- Original TensorFlow StyleGAN2 (config-f), the paper's own models ---
    # All five: sha256 and size from the LFS pointers in huggingface.co/aaronb/StyleGAN2-pkl
    # commit 422f40439ddaa6d041cf698347f08e9bdf9f6036 (stylegan2/*.pkl). The cat digest is also
    # in DragGan/DragGan-Models, an independent mirror, and cat/church/horse share one size, as
    # three 256-px config-f networks should.
    _entry(
        _TF,
        "ffhq-1024-tf",
        "stylegan2-ffhq-config-f.pkl",
        1024,
        "FFHQ",
        sha256="adf127ea7bb8a7788c8bdeda3c9937f7310b669b09ecf799ca53a631ff46948d",
        size_bytes=381_673_535,
    ),
    _entry(
        _TF,
        "car-512-tf",
        "stylegan2-car-config-f.pkl",
        512,
        "LSUN car",
        sha256="e1618eee2b3ce87c4a3849442f7850ef12a478556bff035c8e09ee7e23b3794c",
        size_bytes=364_027_523,
        notes="512x512 output with 512x384 content (letterboxed)",
    ),
    _entry(
        _TF,
        "cat-256-tf",
        "stylegan2-cat-config-f.pkl",
        256,
        "LSUN cat",
        sha256="08940fd616cfaf6bc7b0286b5d1a0b3f70febb26e136d64716c8d3f5e9bd3883",
        size_bytes=357_418_027,
    ),
    _entry(
        _TF,
        "church-256-tf",
        "stylegan2-church-config-f.pkl",
        256,
        "LSUN church",
        sha256="4090c5f83b44b83475c84864188aa39a0fb72694492302b7e6af36aad0d18104",
        size_bytes=357_418_027,
    ),
    _entry(
        _TF,
        "horse-256-tf",
        "stylegan2-horse-config-f.pkl",
        256,
        "LSUN horse",
        sha256="cbc73372c7d82d095913ca8b4b9f170560777175bd7c3b8a75dd55d70807f32b",
        size_bytes=357_418_027,
    ),
)

#: Every zoo checkpoint by short name.
ZOO: dict[str, ZooEntry] = {entry.name: entry for entry in (*_ENTRIES, *_BIGGAN_ENTRIES)}


def list_zoo() -> list[ZooEntry]:
    """All zoo entries in catalogue order (NGC, then ADA, then TF)."""
    return list(ZOO.values())


def zoo_entry(name: str) -> ZooEntry:
    """The entry called `name`; an unknown name suggests the closest ones."""
    key = name.strip().lower()
    if key in ZOO:
        return ZOO[key]
    close = difflib.get_close_matches(key, list(ZOO), n=3, cutoff=0.5)
    hint = f"did you mean {', '.join(close)}?" if close else "see `lowrankgan models`"
    raise UserInputError(f"unknown zoo model {name!r}; {hint}")
