"""Data users bring (image folders, ABAW LSD, Aff-Wild2, FER2013 CSV) as in-memory image sets.

The names below are byel.data.sources', loaded on first use: importing a ground-floor module of
this package (byel.data.formats, which byel.provenance reads) does not load the readers."""

from __future__ import annotations

import importlib

__all__ = ["KINDS", "ImageSet", "load", "parse_spec", "write_problem_log"]


def __getattr__(name: str):
    if name in __all__:
        return getattr(importlib.import_module("byel.data.sources"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
