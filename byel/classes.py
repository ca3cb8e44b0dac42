"""The six basic emotions, their aliases and label mapping: the one place they live."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
NUM_CLASSES = len(CLASSES)

# Folder / annotation names seen in the wild -> canonical name. Lower-case keys.
ALIASES: dict[str, str] = {
    "anger": "anger", "angry": "anger", "an": "anger",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear", "fe": "fear",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness", "ha": "happiness",
    "sadness": "sadness", "sad": "sadness", "sa": "sadness",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
}

# Names that are real classes, just not among the six: skipped (and counted), never an error.
KNOWN_OTHER = {"neutral", "contempt", "other", "none", "ne", "co"}


def canonical(name: str) -> str | None:
    """Canonical class name for an alias (case-insensitive), or None if it is not one of the six."""
    return ALIASES.get(name.strip().lower())


def index(name: str) -> int:
    """Class index of a name or alias; raises KeyError for names outside the six."""
    c = canonical(name)
    if c is None:
        raise KeyError(name)
    return CLASSES.index(c)
