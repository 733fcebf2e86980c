"""Model families behind one protocol (`base.Family`) and the registry behind `load_model`."""

from lowrankgan.models.base import Family, LoadOptions, Model, Source, resolve_class
from lowrankgan.models.registry import (
    BUILTIN,
    FAMILIES,
    list_models,
    load_model,
    register_family,
)

__all__ = [
    "BUILTIN",
    "FAMILIES",
    "Family",
    "LoadOptions",
    "Model",
    "Source",
    "list_models",
    "load_model",
    "register_family",
    "resolve_class",
]
