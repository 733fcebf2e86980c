"""ImageNet-1k class names, for class-conditional ImageNet generators (BigGAN).

The 1000 names ship with the package (`data/imagenet_classes.txt`, class-index order).
`imagenet_class` turns a user's `--class` (an index, or a name in any case) into an index.
"""

from __future__ import annotations

import difflib
from functools import cache
from importlib import resources

from lowrankgan.errors import UserInputError


@cache
def imagenet_classes() -> tuple[str, ...]:
    """The 1000 class names in index order."""
    text = resources.files("lowrankgan").joinpath("data", "imagenet_classes.txt").read_text()
    names = tuple(line for line in text.splitlines() if line and not line.startswith("#"))
    if len(names) != 1000 or len(set(names)) != 1000:
        raise RuntimeError("imagenet_classes.txt must hold 1000 distinct names")
    return names


def imagenet_class(which: int | str) -> int:
    """A class index from an index (`207`) or a name (`"golden retriever"`)."""
    names = imagenet_classes()
    text = str(which).strip()
    if text.lstrip("-").isdigit():
        index = int(text)
        if not 0 <= index < len(names):
            raise UserInputError(f"ImageNet class index {index} is out of range 0..999")
        return index
    lowered = [name.lower() for name in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    close = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    raise UserInputError(f"unknown ImageNet class {text!r}{hint}")
