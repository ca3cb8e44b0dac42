"""byel — Bootstrap Your Emotion Latent: facial-expression recognition learned from synthetic faces."""

__version__ = "0.1.0"

# The Python API (byel.api), imported on first use so that `import byel` stays light.
_API = ("load", "Model", "Face", "Faces", "Results", "to_frame")
__all__ = [*_API, "ByelError"]

from byel.errors import ByelError  # noqa: E402  (no dependencies)


def __getattr__(name: str):
    if name in _API:
        from byel import api

        return getattr(api, name)
    raise AttributeError(f"module 'byel' has no attribute {name!r}")


def __dir__():
    return sorted([*globals(), *_API])
