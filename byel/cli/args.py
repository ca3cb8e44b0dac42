"""The argument types and the parser class of the `byel` command, shared by its command groups
and by the scripts in benchmarks/: every number and choice is checked when the command line is
parsed, and a wrong option is one line on stderr with exit code 2. Light: no command module, no torch."""

from __future__ import annotations

import argparse
import math

from byel.config import ACCELERATORS, LIMITS, check_devices
from byel.errors import ByelError, printable


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """--help shows each option's default, where it has one worth showing."""

    def _get_help_string(self, action):
        help = action.help or ""
        if action.default in (None, False, [], argparse.SUPPRESS) or "default" in help or not action.option_strings:
            return help
        return help + " (default: %(default)s)"


class Parser(argparse.ArgumentParser):
    """argparse that reports a wrong option as one line (and exit code 2), without the usage dump."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {printable(message)} (see {self.prog} --help)\n")


# --- option types: every number and choice is checked when the command line is parsed -----------
class Bounded:
    """An int or float option type with a range; `lo_open`: the lower bound itself is refused."""

    def __init__(self, kind: type, lo, hi, lo_open: bool = False):
        self.kind, self.lo, self.hi, self.lo_open = kind, lo, hi, lo_open
        self.__name__ = kind.__name__  # argparse names the type in some messages

    def __call__(self, text: str):
        try:
            value = self.kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r} is not {'a whole number' if self.kind is int else 'a number'}") from None
        low_ok = value > self.lo if self.lo_open else value >= self.lo
        if not (low_ok and value <= self.hi) or (self.kind is float and not math.isfinite(value)):
            num = (lambda x: f"{x:,}") if self.kind is int else (lambda x: f"{x:g}")
            low = f"> {num(self.lo)}" if self.lo_open else f"≥ {num(self.lo)}"
            raise argparse.ArgumentTypeError(f"{text} is out of range: use a number {low} and ≤ {num(self.hi)}")
        return value


def int_range(lo: int, hi: int) -> Bounded:
    return Bounded(int, lo, hi)


positive_int = int_range(1, LIMITS["count"])
nonneg_int = int_range(0, LIMITS["count"])
seed_int = int_range(0, LIMITS["seed"])
size_int = int_range(16, LIMITS["image_size"])
batch_int = int_range(1, LIMITS["batch_size"])  # inference
train_batch_int = int_range(2, LIMITS["batch_size"])  # BatchNorm needs two images per batch
epochs_int = int_range(1, LIMITS["epochs"])
lr_float = Bounded(float, 0.0, LIMITS["lr"], lo_open=True)

LOGGERS = ("csv", "tensorboard", "both", "none")
CLASS_COUNTS = (6, 7)  # byel.classes.CLASS_COUNTS (not imported here: keeps --help light)
MAX_WINDOW = 1001  # byel.track.MAX_WINDOW: the longest --smooth window:K (not imported: keeps --help light)
MIN_PER_SET = 2  # byel.latents.MIN_PER_SET: the projection needs two points of a set (not imported: torch)
CLASSES_HELP = "6: the six emotions; 7: the six and neutral (default: the preset's, 6)"


def _type_from_check(check):
    """An argparse type from a check that raises ByelError."""

    def parse(text: str):
        try:
            return check(text)
        except ByelError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    parse.__name__ = check.__name__
    return parse


def class_choice(text: str) -> int | str:
    """`generate --classes`: a class count (6 or 7) or a class name (checked by generate)."""
    if text.strip().isdigit():
        if int(text) not in CLASS_COUNTS:
            raise argparse.ArgumentTypeError(f"{text} classes: use 6 (the six emotions) or 7 (and neutral), "
                                             "or class names")
        return int(text)
    return text


def _device(text: str) -> str:
    from byel.checks import check_device

    return check_device(text)


def _accelerator(text: str) -> str:
    value = text.strip().lower()
    if value not in ACCELERATORS:
        raise ByelError(f"invalid choice {text!r} (choose from {', '.join(ACCELERATORS)})")
    if value in ("gpu", "cuda", "mps"):  # else Lightning says "No supported gpu backend found!", after the data loaded
        try:
            _device("mps" if value == "mps" else "cuda")
        except ByelError:
            raise ByelError(f"{value!r}: no such accelerator on this machine (torch sees none); "
                            "use cpu or auto") from None
    return value


device_arg = _type_from_check(_device)


def _smooth(text: str) -> str:
    from byel.track import check_smooth

    return check_smooth(text)


smooth_arg = _type_from_check(_smooth)
prob_float = Bounded(float, 0.0, 1.0, lo_open=True)
accelerator_arg = _type_from_check(_accelerator)
devices_arg = _type_from_check(check_devices)


def preset_batch_arg(text: str) -> str:
    """PRESET=N with N a training batch size; returned unchanged."""
    name, sep, n = text.partition("=")
    if not (sep and name.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not PRESET=N")
    train_batch_int(n)
    return text
