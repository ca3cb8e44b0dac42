"""Data users bring (image folders, ABAW LSD, Aff-Wild2, FER2013 CSV) as in-memory image sets."""

from byel.data.sources import KINDS, ImageSet, load, parse_spec, write_problem_log

__all__ = ["KINDS", "ImageSet", "load", "parse_spec", "write_problem_log"]
