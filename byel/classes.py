"""The six basic emotions (and neutral, the seventh class of a 7-class run), their aliases and
label mapping: the one place they live."""

from __future__ import annotations

CLASSES: tuple[str, ...] = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
NUM_CLASSES = len(CLASSES)
NEUTRAL = "neutral"
# The class sets a run can train (config data.classes): the six emotions, or them and neutral
# (index 6, so the six keep their indices, labels and generator seeds).
CLASS_COUNTS: tuple[int, ...] = (6, 7)

# Folder / annotation names seen in the wild -> canonical name. Lower-case keys.
ALIASES: dict[str, str] = {
    "anger": "anger", "angry": "anger", "an": "anger",
    "disgust": "disgust", "disgusted": "disgust", "di": "disgust",
    "fear": "fear", "fearful": "fear", "afraid": "fear", "scared": "fear", "fe": "fear",
    "happiness": "happiness", "happy": "happiness", "joy": "happiness", "ha": "happiness",
    "sadness": "sadness", "sad": "sadness", "sa": "sadness",
    "surprise": "surprise", "surprised": "surprise", "su": "surprise",
}

NEUTRAL_ALIASES = {"neutral", "ne"}

# Names that are real classes, just not among the six: skipped (and counted), never an error
# (neutral is a class of a 7-class run).
KNOWN_OTHER = {"neutral", "contempt", "other", "none", "ne", "co"}


def class_names(n: int = NUM_CLASSES) -> tuple[str, ...]:
    """The class names of an n-class run: 6 the six emotions, 7 the six and neutral."""
    if n == NUM_CLASSES:
        return CLASSES
    if n == NUM_CLASSES + 1:
        return (*CLASSES, NEUTRAL)
    from byel.errors import ConfigError

    raise ConfigError(f"invalid number of classes {n!r}: use 6 (the six emotions) or 7 (and neutral)")


def canonical(name: str, n: int = NUM_CLASSES) -> str | None:
    """Canonical class name for an alias (case-insensitive), or None if it is not one of the
    six (n=7: or neutral)."""
    key = name.strip().lower()
    if n > NUM_CLASSES and key in NEUTRAL_ALIASES:
        return NEUTRAL
    return ALIASES.get(key)


def index(name: str, n: int = NUM_CLASSES) -> int:
    """Class index of a name or alias; raises KeyError for names outside the n classes."""
    c = canonical(name, n)
    if c is None:
        raise KeyError(name)
    return class_names(n).index(c)
