"""ImageNet class names: indices, names, duplicates and typos."""

from __future__ import annotations

import pytest

from lowrankgan import UserInputError
from lowrankgan.models.biggan.imagenet import imagenet_class, imagenet_classes


def test_the_list_is_complete_and_ordered():
    names = imagenet_classes()
    assert len(names) == 1000
    assert (names[0], names[207], names[999]) == ("tench", "golden retriever", "toilet tissue")


@pytest.mark.parametrize(
    ("given", "index"),
    [("207", 207), (207, 207), ("Golden Retriever", 207), (" tench ", 0), ("999", 999)],
)
def test_indices_and_names(given, index):
    assert imagenet_class(given) == index


@pytest.mark.parametrize(
    ("given", "phrase"),
    [
        ("1000", "out of range"),
        ("-1", "out of range"),
        ("Crane!", "unknown"),
        ("golden retreiver", "did you mean 'golden retriever'"),
        ("spaceship", "unknown"),
    ],
)
def test_errors(given, phrase):
    with pytest.raises(UserInputError, match=phrase):
        imagenet_class(given)
