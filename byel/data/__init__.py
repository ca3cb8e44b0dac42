"""Data users bring (image folders, ABAW LSD, Aff-Wild2, FER2013 CSV) as in-memory image sets.

The names below are byel.data.sources' (loading) and byel.data.specs' (the spec grammar), loaded
on first use: importing a ground-floor module of this package (byel.data.formats, which
byel.provenance reads) does not load the readers."""

from __future__ import annotations

import importlib

_HOMES = {"KINDS": "byel.data.specs", "parse_spec": "byel.data.specs", "ImageSet": "byel.data.sources",
          "load": "byel.data.sources", "write_problem_log": "byel.data.sources"}
__all__ = list(_HOMES)


def __getattr__(name: str):
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
