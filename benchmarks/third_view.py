"""A third view for faces without a mesh, tier B (+ pretrained face-geometry model): the face
landmark network's own 4 x 4 x 128 activation map (byel.faces.activations) against the 1,008
geometry features (blendshapes + eye-aligned landmarks), each under the same linear head
(byel.faces.head: standardised features, multinomial logistic regression, L2 C = --C, balanced
class weights), trained on procedural synthetic faces ONLY and scored on real labelled faces.

    python benchmarks/third_view.py --real ../shared/data/fer2013-publictest --per-class 400 --seeds 0 1 2

Per seed: `byel generate --backend procedural` (that seed), the geometry head fitted on the
faces with a mesh, the activation head on all of them; scored on the real faces: (a) the
geometry head on the faces with a mesh, and on all faces counting those without one as errors
(today a fused model gives them to the pixel CNN, near chance); (b) the activation head on all
faces (and on each part); (c) the geometry head where a mesh is found, the activation head
elsewhere. Also the activation map average-pooled to 2 x 2 and to 1 x 1 (all faces), so the
flattened 2,048 features are a measured choice. Real meshes are measured as byel measures face
crops (detect mode, framed: byel.faces.measure_images). No real label is used except for the
scores. Writes RESULTS.json and RESULTS.md (default benchmarks/results/third_view.*).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import machine, mean_std, publish  # noqa: E402
from geometry_transfer import TIER, f1s  # noqa: E402

from byel.classes import CLASSES  # noqa: E402
from byel.cli.args import Bounded, Parser, positive_int, seed_int, size_int  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel.data.sources import load  # noqa: E402
from byel.faces import geometry_features, measure_images  # noqa: E402
from byel.faces.activations import ACTIVATION_PAD, ACTIVATION_SHAPE, N_ACTIVATIONS, activation_features  # noqa: E402
from byel.faces.head import fit_geometry_head  # noqa: E402
from byel.synth.generate import generate  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
# (key, what the row scores, faces) of the main table, in order
ROWS = [
    ("geometry_mesh", "(a) geometry head, faces with a mesh", "mesh"),
    ("geometry_misses", "(a) geometry head, all faces, no mesh = error", "all"),
    ("activations_all", "(b) activation head, all faces", "all"),
    ("activations_mesh", "(b) activation head, faces with a mesh", "mesh"),
    ("activations_no_mesh", "(b) activation head, faces without a mesh", "no mesh"),
    ("third_view", "(c) geometry head where a mesh, activation head elsewhere", "all"),
]
POOLS = {"4x4 (flat, 2048)": 1, "2x2 avg (512)": 2, "1x1 avg (128)": 4}


def pooled(feats: np.ndarray, k: int) -> np.ndarray:
    """(N, 4*4*128) maps average-pooled over k x k cells -> (N, (4/k)^2 * 128)."""
    h, w, c = ACTIVATION_SHAPE
    x = feats.reshape(len(feats), h // k, k, w // k, k, c).mean((2, 4))
    return x.reshape(len(feats), -1)


def predict(head, feats: np.ndarray) -> np.ndarray:
    """Class of each row; -1 for a NaN row (no mesh)."""
    p = head.probs(feats)
    ok = np.isfinite(p).all(1)
    return np.where(ok, np.nan_to_num(p, nan=-1).argmax(1), -1)


def one_seed(seed: int, args, real, real_geo, real_found, real_act) -> dict:
    t0 = time.time()
    folder = Path(args.out) / f"seed-{seed}"
    gen = generate(folder, backend="procedural", per_class=args.per_class, size=args.size, seed=seed,
                   workers=args.workers, progress=False, overwrite=True)
    data = load(f"imagefolder:{folder}", args.size, progress=False, cache=False)
    t_gen = time.time() - t0
    syn_m = measure_images(data.images, workers=args.workers, key=f"{folder}:synthetic")
    geo, found = geometry_features(syn_m)
    act, act_meta = activation_features(data.images, workers=args.workers, key=f"{folder}:synthetic", pad=args.pad)
    t_feat = time.time() - t0 - t_gen
    y, labels = data.labels, real.labels
    geo_head = fit_geometry_head(geo, y, c=args.C)
    act_head = fit_geometry_head(act, y, c=args.C)
    pg, pa = predict(geo_head, real_geo), predict(act_head, real_act)
    m, miss = real_found, ~real_found
    scores = {
        "geometry_mesh": f1s(labels[m], pg[m]),
        "geometry_misses": f1s(labels, pg),
        "activations_all": f1s(labels, pa),
        "activations_mesh": f1s(labels[m], pa[m]),
        "activations_no_mesh": f1s(labels[miss], pa[miss]),
        "third_view": f1s(labels, np.where(m, pg, pa)),
    }
    pools = {}
    for name, k in POOLS.items():
        head = act_head if k == 1 else fit_geometry_head(pooled(act, k), y, c=args.C)
        pools[name] = f1s(labels, predict(head, pooled(real_act, k) if k > 1 else real_act))
    return {"seed": seed, "n_synthetic": int(len(y)), "n_synthetic_with_mesh": int(found.sum()),
            "generate_images_per_s": round(gen["images_per_s"], 1), "scores": scores, "pools": pools,
            "activation_faces_per_s": act_meta.get("faces_per_s"), "activations_cached": bool(act_meta.get("cached")),
            "seconds": {"generate": round(t_gen, 1), "features": round(t_feat, 1), "total": round(time.time() - t0, 1)}}


def run(args) -> dict:
    t0 = time.time()
    real = load(args.real, args.real_size, progress=False)
    real_m = measure_images(real.images, workers=args.workers, key=real.spec)
    real_geo, real_found = geometry_features(real_m)
    real_act, act_meta = activation_features(real.images, workers=args.workers, key=real.spec, pad=args.pad)
    t_real = time.time() - t0
    seeds = [one_seed(s, args, real, real_geo, real_found, real_act) for s in args.seeds]
    summary = {key: {"macro_f1": [s["scores"][key]["macro_f1"] for s in seeds],
                     "accuracy": [s["scores"][key]["accuracy"] for s in seeds]} for key, _, _ in ROWS}
    pool_summary = {name: [s["pools"][name]["macro_f1"] for s in seeds] for name in POOLS}
    return {
        "tier": TIER, "real": real.spec, "n_real": int(len(real.labels)), "n_real_with_mesh": int(real_found.sum()),
        "mesh_rate_real": round(float(real_found.mean()), 4),
        "mesh_rate_real_per_class": {c: round(float(real_found[real.labels == k].mean()), 4)
                                     for k, c in enumerate(CLASSES) if (real.labels == k).any()},
        "per_class": args.per_class, "size": args.size, "seeds": list(args.seeds), "C": args.C, "pad": args.pad,
        "activation_features": N_ACTIVATIONS, "geometry_features": int(real_geo.shape[1]),
        "real_activation_faces_per_s": act_meta.get("faces_per_s"),
        "real_mesh_faces_per_s": real_m.meta.get("faces_per_s"), "real_cached": bool(act_meta.get("cached")),
        "summary": summary, "pools": pool_summary, "runs": seeds,
        "seconds": {"real_features": round(t_real, 1), "total": round(time.time() - t0, 1)},
    }


def markdown(r: dict, command: str) -> str:
    n_no = r["n_real"] - r["n_real_with_mesh"]
    faces = {"mesh": r["n_real_with_mesh"], "all": r["n_real"], "no mesh": n_no}
    per_seed = lambda v: ", ".join(f"{x:.3f}" for x in v)  # noqa: E731
    lines = [
        f"# A third view for faces without a mesh — {r['tier']}",
        "",
        "The face-landmark network's own activations (its last 4 × 4 × 128 map, before the landmark regressor; "
        "`byel.faces.activations`) against the 1,008 geometry features (52 blendshapes + 478 eye-aligned "
        "landmarks), each under the same linear head (`byel.faces.head`: standardised features, multinomial "
        f"logistic regression, L2 C={r['C']}, balanced class weights), trained on procedural synthetic faces "
        "only. No real label is used except for these scores. The landmarker was trained by Google on real "
        "faces (geometry, no expression classes): tier B on every row.",
        "",
        f"Command: `{command}`",
        "",
        f"Real set: {r['real']} ({r['n_real']} faces, six classes: PublicTest-6). **A mesh is found on "
        f"{r['n_real_with_mesh']} of them ({100 * r['mesh_rate_real']:.1f} %)**; the other {n_no} have none "
        "(detect mode, framed, as byel measures face crops). Synthetic: "
        f"{r['per_class']} procedural faces per class, {r['size']} px, one set per seed (seeds {', '.join(map(str, r['seeds']))}). "
        f"Activations: every crop framed with a border of {r['pad']} × its side, 256 px, one pass.",
        "",
        f"| tier | what is scored | faces | macro-F1 (mean ± std, {len(r['seeds'])} seeds) | accuracy | macro-F1 per seed |",
        "|---|---|---|---|---|---|",
    ]
    for key, what, which in ROWS:
        s = r["summary"][key]
        lines.append(f"| B | {what} | {faces[which]} | {mean_std(s['macro_f1'])} | {mean_std(s['accuracy'])} | "
                     f"{per_seed(s['macro_f1'])} |")
    lines += ["", "Pooling the activation map (activation head alone, all faces):", "",
              "| tier | activation features | macro-F1 (mean ± std) | per seed |", "|---|---|---|---|"]
    for name, v in r["pools"].items():
        lines.append(f"| B | {name} | {mean_std(v)} | {per_seed(v)} |")
    mesh_rate = ", ".join(f"{c} {v:.2f}" for c, v in r["mesh_rate_real_per_class"].items())
    third = r["summary"]["third_view"]["macro_f1"]
    misses = r["summary"]["geometry_misses"]["macro_f1"]
    lines += [
        "",
        f"Real faces with a mesh, per class: {mesh_rate}.",
        f"The third view adds {np.mean(third) - np.mean(misses):+.3f} macro-F1 over the geometry head that counts "
        "the faces without a mesh as errors (the floor of today's pixel-CNN fallback, which is near chance).",
        f"Speed: the activation map {r['real_activation_faces_per_s']} faces/s, the mesh (detect mode) "
        f"{r['real_mesh_faces_per_s']} faces/s, on the real faces"
        + (" (read from the cache of an earlier identical run)" if r["real_cached"] else "")
        + f"; {machine(r.get('run'))}, shared with other work.",
        f"Time: {r['seconds']['total']} s in all ({r['seconds']['real_features']} s for the real faces' features).",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--real", required=True, help="labelled real faces (class folders or any byel data spec)")
    ap.add_argument("--real-size", type=size_int, default=48, help="pixel side the real faces are read at (FER2013: 48)")
    ap.add_argument("--per-class", type=positive_int, default=400, help="procedural faces per class and seed")
    ap.add_argument("--size", type=size_int, default=96, help="side of the generated faces")
    ap.add_argument("--seeds", type=seed_int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--C", type=Bounded(float, 0.0, 1e6, lo_open=True), default=0.05, help="inverse L2 strength of the logistic regression")
    ap.add_argument("--pad", type=Bounded(float, 0.0, 2.0), default=ACTIVATION_PAD,
                    help="border around each crop (x its side) before the landmark model reads it")
    ap.add_argument("--workers", type=positive_int, default=2)
    ap.add_argument("--out", default="runs/bench-third-view", help="folder for the generated faces")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "third_view"),
                    help="writes RESULTS.json and RESULTS.md")
    args = ap.parse_args()
    print(publish(__file__, run(args), args.results, markdown))


if __name__ == "__main__":
    raise SystemExit(run_guarded(main))
