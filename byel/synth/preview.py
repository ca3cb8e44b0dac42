"""Contact sheets: one row of images per class, the class name written at the left."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from byel.imageio import write_image

CELL = 96  # pixels per image on the sheet (small images are scaled up, nearest-neighbour)
LABEL_W = 110


def contact_sheet(images_by_class: dict[str, list[np.ndarray]], path, per_row: int = 8) -> Path:
    """Write a PNG contact sheet: one row per class (in dict order), up to `per_row` images each.

    Images may be grey (HxW) or RGB (HxWx3) uint8 of any size; each is fitted into a square
    cell. Rows with fewer images are padded with blank cells. Returns the path written.
    """
    path = Path(path)
    rows = []
    for name, images in images_by_class.items():
        label = np.full((CELL, LABEL_W, 3), 255, np.uint8)
        cv2.putText(label, str(name)[:12], (6, CELL // 2 + 6), cv2.FONT_HERSHEY_SIMPLEX, 0.55,
                    (0, 0, 0), 1, cv2.LINE_AA)
        cells = [label]
        for img in list(images)[:per_row]:
            img = np.asarray(img)
            if img.ndim == 2:
                img = np.repeat(img[..., None], 3, axis=2)
            interp = cv2.INTER_NEAREST if max(img.shape[:2]) < CELL else cv2.INTER_AREA
            cells.append(cv2.resize(img[..., :3], (CELL, CELL), interpolation=interp))
        cells += [np.full((CELL, CELL, 3), 255, np.uint8)] * (per_row + 1 - len(cells))
        rows.append(np.hstack(cells))
    if not rows:
        rows = [np.full((CELL, LABEL_W + per_row * CELL, 3), 255, np.uint8)]
    sheet = np.vstack(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp.png")
    write_image(tmp, sheet[..., ::-1])  # RGB -> BGR
    os.replace(tmp, path)
    return path
