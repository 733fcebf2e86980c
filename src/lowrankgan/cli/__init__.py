"""The `lowrankgan` command line: a thin layer over the Python API."""

from lowrankgan.cli.commands import main

__all__ = ["main"]
