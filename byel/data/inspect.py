"""``byel data inspect SPEC``: the scan report and a contact sheet of samples per class."""

from __future__ import annotations

import numpy as np
from matplotlib.figure import Figure

from byel.checks import check_picture
from byel.classes import NUM_CLASSES, class_names
from byel.data.sources import ImageSet, load, write_problem_log
from byel.errors import escape_surrogates
from byel.files import written_whole
from byel.outputs import inspect_log
from byel.plots import save_figure

SAMPLES_PER_ROW = 8
UNLABELLED_ROWS = 4
_SHOWN_PROBLEMS = 5


def inspect(spec: str, out_png: str | None, size: int = 64, *, unlabelled: bool = False,
            log_path: str | None = None, progress: bool = True, classes: int = NUM_CLASSES) -> str:
    """Load SPEC, return the printable report; write the contact sheet to out_png if given.

    ``classes``: 6 (neutral skipped and counted) or 7 (neutral kept as a class).
    Unusable files are written to log_path, by default next to out_png as
    ``<out_png stem>-problems.txt``; without either, the report shows the first few.
    """
    if out_png:  # before the scan: matplotlib would refuse an unknown extension only at the end
        check_picture(out_png, "--out")
    s = load(spec, size, unlabelled=unlabelled, progress=progress, classes=classes)
    lines = [f"data: {s.spec}"]
    if unlabelled:
        lines.append(f"usable images: {len(s)} (unlabelled)")
    else:
        lines.append(f"usable images: {len(s)}")
        width = max(len(c) for c in class_names(classes))
        for c, n in s.counts().items():
            lines.append(f"  {c:<{width}} {n:>7}  {100 * n / len(s):5.1f}%" + ("  <- none" if n == 0 else ""))
    if s.skipped:
        lines.append(f"skipped (not one of the {classes} classes): " + ", ".join(f"{k} {v}" for k, v in s.skipped.items()))
    if s.dropped:
        lines.append("dropped (unusable): " + ", ".join(f"{k} {v}" for k, v in s.dropped.items()))
    lines += [f"note: {n}" for n in s.notes]
    if s.problems:
        if log_path is None and out_png:
            log_path = inspect_log(out_png)
        if log_path:
            with written_whole(log_path) as tmp:  # a full disk leaves no empty or half log
                write_problem_log(s, str(tmp))
            lines.append(f"{len(s.problems)} problems listed in {log_path}")
        else:
            lines.append(f"{len(s.problems)} problems, first {min(len(s.problems), _SHOWN_PROBLEMS)} "
                         "(give --out to write them all to a log file):")
            lines += [f"  {reason}  {where}" for where, reason in s.problems[:_SHOWN_PROBLEMS]]
    if out_png:
        contact_sheet(s, out_png, unlabelled=unlabelled)
        lines.append(f"contact sheet: {out_png}")
    return "\n".join(lines)


def contact_sheet(s: ImageSet, out_png: str, *, unlabelled: bool = False, seed: int = 0) -> None:
    """PNG grid: one row per class (random samples, labelled with the class count)."""
    rng = np.random.default_rng(seed)

    def sample(idx: np.ndarray, k: int) -> np.ndarray:
        return np.sort(rng.choice(idx, min(len(idx), k), replace=False))

    k = SAMPLES_PER_ROW
    if unlabelled:  # a few rows of random images, the first labelled with the total
        pick = sample(np.arange(len(s)), UNLABELLED_ROWS * k)
        rows = [("" if r else f"{len(s)} images", pick[r:r + k]) for r in range(0, len(pick), k)]
    else:
        rows = [(f"{c} ({n})", sample(np.flatnonzero(s.labels == i), k))
                for i, (c, n) in enumerate(s.counts().items())]
    size, pad = s.images.shape[1], 2
    tile = size + pad
    sheet = np.full((len(rows) * tile + pad, k * tile + pad, 3), 255, np.uint8)
    for r, (_, pick) in enumerate(rows):
        for col, i in enumerate(pick):
            y, x = pad + r * tile, pad + col * tile
            sheet[y:y + size, x:x + size] = s.images[i]
    fig = Figure(figsize=(1.0 + 0.9 * k, 0.4 + 0.9 * len(rows)), dpi=100)
    ax = fig.add_axes((0.2, 0.02, 0.78, 0.9))
    ax.imshow(sheet, interpolation="nearest")
    ax.set_yticks([pad + r * tile + size / 2 for r in range(len(rows))], [label for label, _ in rows])
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    spec = escape_surrogates(s.spec)  # a font cannot draw a name that is not UTF-8
    ax.set_title(spec if len(spec) < 70 else "..." + spec[-67:], fontsize=8)
    save_figure(fig, out_png, dpi=fig.dpi)  # whole or not at all
