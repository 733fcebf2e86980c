"""Model families and the registry behind `load_model`."""

from lowrankgan.models.base import Model, resolve_class
from lowrankgan.models.registry import BUILTIN, list_models, load_model

__all__ = ["BUILTIN", "Model", "list_models", "load_model", "resolve_class"]
