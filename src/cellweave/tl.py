"""Tools (``cellweave.tl``): the capabilities, scanpy style (data object first)."""

from .impute import impute

__all__ = ["impute"]
