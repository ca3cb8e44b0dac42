"""Generator throughput: images/s of `byel generate` (render + PNG write, worker start-up
included) per backend, output size, grey/colour and worker count, with the speed-up over the
fewest workers measured in the same run.

    python benchmarks/generate_speed.py --sizes 48 64 --workers 1 2 [--sources ../shared/data/fer2013-train-neutral]

The mesh backend is measured with its quality gate (`mesh`) and without it (`mesh, no gate`); its
source faces are measured once, before the timed runs (cached), as a user's second run finds them.

The default count, 600 per class, is the demo's training set. Prints a markdown table and writes
JSON. Run it on an otherwise idle machine: the figure is wall-clock throughput, and any other load
on the cores lowers it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # common, also when imported by a test
from common import run_record  # noqa: E402

from byel.cli.args import Parser  # noqa: E402
from byel.cli.guard import run_guarded  # noqa: E402
from byel.errors import ConfigError  # noqa: E402
from byel.choices import BACKENDS, FROM_REAL  # noqa: E402
from byel.synth.generate import generate  # noqa: E402

TARGET = {"procedural": 200.0}  # images/s at 64 px on a 2-core CPU (the generator issue's bar)


def main() -> None:
    ap = Parser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[48, 64])
    ap.add_argument("--workers", type=int, nargs="+", default=[1, os.cpu_count() or 1])
    ap.add_argument("--per-class", type=int, default=600, help="images per class per measurement")
    ap.add_argument("--sources", help="neutral faces: also measure the warp and mesh backends")
    ap.add_argument("--backends", nargs="+", choices=BACKENDS,
                    help="default: procedural, and warp and mesh when --sources is given")
    ap.add_argument("--tones", nargs="+", choices=["grey", "colour"], default=["grey", "colour"])
    ap.add_argument("--repeats", type=int, default=3, help="runs per row; the table shows their median")
    ap.add_argument("--json", default="runs/generate-speed.json")
    args = ap.parse_args()

    backends = args.backends or ["procedural"] + (list(FROM_REAL) if args.sources else [])
    if set(FROM_REAL) & set(backends) and not args.sources:
        raise ConfigError("measuring the warp and mesh backends needs --sources DIR (neutral faces)")
    # (backend, gate): the mesh backend with and without its label-free gate
    variants = [(b, g) for b in backends for g in ([True, False] if b == "mesh" else [None])]
    if "mesh" in backends:  # the sources' meshes measured once, untimed (cached by pixels)
        from byel.synth.mesh import load_meshes

        load_meshes(args.sources, progress=False)
    if args.repeats < 1:
        raise ConfigError(f"--repeats must be at least 1, got {args.repeats}")
    workers = sorted(set(args.workers))
    rows = []
    for backend, gate in variants:
        name = backend + (", no gate" if gate is False else "")
        for tone in args.tones:
            for size in args.sizes:
                base = None
                for w in workers:
                    rates = []
                    for _ in range(args.repeats):
                        with tempfile.TemporaryDirectory() as tmp:
                            s = generate(Path(tmp) / "out", backend=backend, per_class=args.per_class, size=size,
                                         seed=0, workers=w, sources=None if backend == "procedural" else args.sources,
                                         grey=tone == "grey", progress=False, gate=gate)
                        rates.append(s["images_per_s"])
                    rate = float(np.median(rates))  # other load on the machine only ever slows a run down
                    base = base or rate  # the first (fewest workers) is the reference
                    rows.append({"backend": name, "tone": tone, "size": size, "workers": w,
                                 "images": s["n_images"], "images_per_s": round(rate, 1),
                                 "runs_images_per_s": [round(r, 1) for r in rates],
                                 "speedup_vs_fewest_workers": round(rate / base, 2)})
                    print(f"{name} {tone} {size} px, {w} worker(s): {rate:.1f} images/s "
                          f"(median of {', '.join(f'{r:.1f}' for r in rates)})", flush=True)

    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"cpu_count": os.cpu_count(), "rows": rows,
                                           "run": run_record(__file__)}, indent=2))
    print(f"\n{os.cpu_count()} CPU cores; {args.per_class} images per class per run, median of {args.repeats} runs"
          f" per row; JSON: {args.json}")
    print("| backend | tone | px | workers | images/s | speed-up vs fewest workers | target |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        t = TARGET.get(r["backend"])
        mark = f"≥ {t:.0f} ({'met' if r['images_per_s'] >= t else 'not met'})" if t and r["size"] == 64 else ""
        print(f"| {r['backend']} | {r['tone']} | {r['size']} | {r['workers']} | {r['images_per_s']} | "
              f"{r['speedup_vs_fewest_workers']} | {mark} |")


if __name__ == "__main__":
    raise SystemExit(run_guarded(main))
