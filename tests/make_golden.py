"""Regenerate the golden images under tests/data/ (run only when the model code changes on
purpose, then check the pictures by eye before committing):

    .venv/bin/python tests/make_golden.py

Golden images are the uint8 renders of fixed seeds of the built-in models, written as PNG.
"""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from lowrankgan import load_model
from lowrankgan.report.render import to_uint8

DATA = Path(__file__).parent / "data"
CASES = [("dcgan-faces", None, 0), ("omniart-eyes", "blue", 0)]


def golden_name(model: str, class_: str | None, seed: int) -> str:
    return f"{model}{'-' + class_ if class_ else ''}-seed{seed}.png"


def main() -> None:
    DATA.mkdir(exist_ok=True)
    for name, class_, seed in CASES:
        model = load_model(name, class_=class_)
        image = to_uint8(model.synthesize(model.sample_latent(seed)))[0]
        Image.fromarray(image).save(DATA / golden_name(name, class_, seed))


if __name__ == "__main__":
    main()
