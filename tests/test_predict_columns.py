"""`byel predict --face-details [--landmarks]`: the face geometry the Python API's Face carries
(score, pose, blendshapes, landmarks) as CSV columns in a fixed order, with the API's values;
empty cells without a mesh; without the options the CSV's columns are today's."""

from __future__ import annotations

import json

import pytest

import byel
from byel.cli import main
from byel.faces.mesher import BLENDSHAPES
from conftest import PHOTOS, read_rows

GROUP = PHOTOS / "group.jpg"
CLASSES = ("anger", "disgust", "fear", "happiness", "sadness", "surprise", "neutral")  # the shipped model's
BASE = ["file", "frame", "track", "x", "y", "w", "h", "predicted", *[f"p_{c}" for c in CLASSES]]
DETAILS = ["score", "yaw", "pitch", "roll", *[f"bs_{b}" for b in BLENDSHAPES]]
LANDMARKS = [f"lm_{i}_{a}" for i in range(478) for a in "xy"]


@pytest.fixture(scope="module")
def faces():
    model = byel.load()  # the shipped model, the landmarker finder
    assert model.classes == CLASSES
    return model.predict(GROUP)


def run(capsys, out, *extra):
    assert main(["predict", str(GROUP), "--out", str(out), "--no-progress", *extra]) == 0
    return read_rows(out), capsys.readouterr().out


def box(r):
    return tuple(int(r[k]) for k in "xywh")


def test_face_details_and_landmarks_are_the_apis(tmp_path, capsys, faces):
    (cols, rows), out = run(capsys, tmp_path / "p.csv", "--face-details", "--landmarks", "--json")
    assert cols == BASE + DETAILS + LANDMARKS
    api = {f.box: f for f in faces}
    assert len(rows) == len(api) == 5 and {box(r) for r in rows} == set(api)
    for r in rows:
        f = api[box(r)]
        assert float(r["score"]) == pytest.approx(f.score, abs=1e-6)
        for k in ("yaw", "pitch", "roll"):
            assert float(r[k]) == pytest.approx(getattr(f.pose, k), abs=1e-6)
        assert [float(r[f"bs_{b}"]) for b in BLENDSHAPES] == pytest.approx(list(f.blendshapes.values()), abs=1e-6)
        assert [float(r[c]) for c in LANDMARKS] == pytest.approx(f.landmarks[:, :2].ravel().tolist(), abs=1e-3)
    js = json.loads(out)["faces"]  # --json: the same fields
    for r, j in zip(rows, js):
        assert j["score"] == float(r["score"]) and j["pose"] == {k: float(r[k]) for k in ("yaw", "pitch", "roll")}
        assert list(j["blendshapes"]) == list(BLENDSHAPES) and j["blendshapes"]["jawOpen"] == float(r["bs_jawOpen"])
        assert len(j["landmarks"]) == 478 and j["landmarks"][5] == [float(r["lm_5_x"]), float(r["lm_5_y"])]
    # to_frame, asked: the same columns and values
    df = faces.to_frame(face_details=True, landmarks=True)
    assert list(df.columns) == cols
    for _, d in df.iterrows():
        f = api[(d.x, d.y, d.w, d.h)]
        assert d.score == f.score and (d.yaw, d.pitch, d.roll) == tuple(f.pose)
        assert d.bs_mouthSmileLeft == f.blendshapes["mouthSmileLeft"] and d.lm_477_y == f.landmarks[477, 1]


def test_without_the_options_the_columns_are_todays(tmp_path, capsys, faces):
    (cols, rows), out = run(capsys, tmp_path / "p.csv", "--json")
    assert cols == BASE and len(rows) == 5
    assert not {"score", "pose", "blendshapes", "landmarks"} & set(json.loads(out)["faces"][0])
    assert list(faces.to_frame().columns) == BASE
    (cols, _), _ = run(capsys, tmp_path / "q.csv", "--face-details")
    assert cols == BASE + DETAILS  # --landmarks is its own option


def test_no_mesh_leaves_the_cells_empty(tmp_path, capsys, faces):
    (cols, rows), out = run(capsys, tmp_path / "p.csv", "--no-detect", "--face-details", "--landmarks", "--json")
    assert cols == BASE + DETAILS + LANDMARKS and len(rows) == 1 and rows[0]["predicted"] in CLASSES
    assert all(rows[0][c] == "" for c in DETAILS + LANDMARKS)
    j = json.loads(out)["faces"][0]
    assert j["score"] is j["pose"] is j["blendshapes"] is j["landmarks"] is None
