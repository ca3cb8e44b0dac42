"""Bad input, all in one place: every case ends as exactly one `byel: error:` line on stderr, a
non-zero exit code, no traceback — and leaves earlier outputs intact (byte for byte).

The kinds covered: numbers and choices (checked when the command line is parsed; a property test
walks the parser so a new option is covered without being listed), output paths (the wrong kind,
not writable, one of the command's inputs), the disk (full, killed writes), run folders (one run
per folder: no silent overwrite, a lock against a second run, a refused --resume writes nothing),
Ctrl-C, and problems that must be shown rather than hidden (unusable files, link loops, control
characters in messages)."""

import argparse
import contextlib
import errno
import fcntl
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from byel.checkpoint import atomic_torch_save
from byel.cli import build_parser, main
from byel.cli.args import Bounded
from byel.cli.guard import run_guarded
from byel.config import Config, _all_keys, load_config
from byel.data.sources import load
from byel.errors import ByelError, ConfigError
from conftest import SMOKE as TINY
from conftest import write_image

HAS_CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def world(tmp_path_factory, smoke_model):
    """A tiny data set, a trained stage-1 and stage-2 run (copies of the session's smoke model:
    the cases write beside them), and broken inputs of every kind."""
    root = tmp_path_factory.mktemp("world")
    data, pre, ft = root / "data", root / "pre", root / "ft"
    for src, dst in ((smoke_model.data, data), (smoke_model.pre, pre), (smoke_model.ft, ft)):
        shutil.copytree(src, dst)
    (root / "empty").mkdir()
    write_image(root / "only_neutral" / "neutral" / "n.jpg")
    broken = root / "broken"
    for cls in ("anger", "happy"):
        (broken / cls).mkdir(parents=True)
        (broken / cls / "zero.jpg").write_bytes(b"")
        (broken / cls / "text.png").write_text("I am not a PNG\n")
        good = write_image(broken / cls / "tmp.jpg").read_bytes()
        (broken / cls / "tmp.jpg").write_bytes(good[: len(good) // 3])  # truncated
    ckpt = pre / "checkpoints" / "last.ckpt"
    (root / "truncated.ckpt").write_bytes(ckpt.read_bytes()[:4000])
    torch.save({"state_dict": {}, "epoch": 1}, root / "foreign.ckpt")
    (root / "text.ckpt").write_text("not a checkpoint")
    (root / "hello.ckpt").write_text("hello\n")  # the unpickler fails with a KeyError on this one
    (root / "random.ckpt").write_bytes(np.random.default_rng(2).bytes(5000))
    shutil.copy(ft / "checkpoints" / "best.ckpt", root / "m.ckpt")
    (root / "random.yaml").write_bytes(b"\xff\xfe\x80" + np.random.default_rng(0).bytes(2000))
    (root / "a.yaml").write_text(f"base: {root / 'b.yaml'}\n")
    (root / "b.yaml").write_text(f"base: {root / 'a.yaml'}\n")
    (root / "afile").write_text("a file where a folder is expected\n")
    write_image(root / "face.png")
    (root / "demo").mkdir()
    (root / "demo" / "report.json").write_text('{"a demo": "that finished"}\n')
    (root / "binary.csv").write_bytes(b"\x1b[31m\x07emo\x00tion,\x08pix\n" + np.random.default_rng(1).bytes(3000))
    (root / "hugefield.csv").write_text('emotion,pixels,Usage\n"' + "7" * 200_000 + "\n")
    return {"root": root, "data": data, "pre": ckpt, "ft": ft / "checkpoints" / "best.ckpt", "m": root / "m.ckpt"}


def _snapshot(root):
    """Bytes of every earlier output and of the data: both runs, the fake demo, the checkpoint copy."""
    files = [p for d in ("pre", "ft", "demo", "data") for p in sorted((root / d).rglob("*")) if p.is_file()]
    return {str(p): p.read_bytes() for p in [*files, root / "m.ckpt"] if p.name != ".lock"}


CUDA = "CPU-only"  # marks a case that needs a machine without a GPU
CASES = {
    # data
    "missing data path": (["pretrain", "--data", "{root}/nope", "--out", "{root}/o"], "not found"),
    "empty folder": (["pretrain", "--data", "{root}/empty", "--out", "{root}/o"], "{root}/empty"),
    "only classes outside the six": (["pretrain", "--data", "{root}/only_neutral", "--out", "{root}/o"], "neutral"),
    "corrupt, zero-byte, truncated, text-as-PNG images only": (["pretrain", "--data", "{root}/broken", "--out", "{root}/o"], "no usable images"),
    "unknown data kind": (["pretrain", "--data", "lmdb:{root}/data", "--out", "{root}/o"], "lmdb"),
    "binary FER2013 CSV (control characters)": (["data", "inspect", "{root}/binary.csv"], "not a FER2013 CSV"),
    "CSV with a field over the csv module's limit": (["data", "inspect", "{root}/hugefield.csv"], "not a FER2013 CSV"),
    # configuration
    "unknown config key": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "optim.lrr=1"], "did you mean 'optim.lr'"),
    "unknown method": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--method", "simclr"], "--method"),
    "unknown method via --set": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "method.name=simclr"], "method.name"),
    "unknown preset": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--preset", "huge"], "cpu-demo"),
    "preset of random bytes": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--preset", "{root}/random.yaml"], "random.yaml"),
    "presets whose base: name each other": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--preset", "{root}/a.yaml"], "cycle"),
    "unparsable --set value": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "optim.lr=["], "optim.lr=["),
    "bad value type": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "optim.lr=fast"], "invalid value"),
    "YAML true where a number goes (was seed 1)": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "seed=true"], "invalid value True for seed"),
    "a number where true/false goes (was True)": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "trainer.progress=5"], "trainer.progress"),
    "a mapping where a name goes": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "trainer.strategy={{a: 1}}"], "trainer.strategy"),
    "unknown option": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--learning-rate", "1"], "unrecognized arguments"),
    # numbers (the property test below covers every numeric option; these are the reported ones)
    "zero image size": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--image-size", "0"], "--image-size"),
    "huge image size": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--image-size", "100000"], "--image-size"),
    "huge image size via --set": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "data.image_size=100000"], "data.image_size"),
    "negative epochs": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--epochs", "-1"], "--epochs"),
    "negative seed": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--seed", "-1"], "--seed"),
    "seed beyond 2**32": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--seed", "99999999999999999999"], "--seed"),
    "negative seed via --set": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "seed=-1"], "seed"),
    "negative data.num_workers via --set": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "data.num_workers=-1"], "data.num_workers"),
    "generate zero per class": (["generate", "--out", "{root}/g", "--per-class", "0"], "--per-class"),
    "generate negative size": (["generate", "--out", "{root}/g", "--size", "-5"], "--size"),
    "generate huge size": (["generate", "--out", "{root}/g", "--per-class", "1", "--size", "100000"], "--size"),
    "generate negative seed": (["generate", "--out", "{root}/g", "--per-class", "1", "--seed", "-1"], "--seed"),
    "evaluate batch size 0": (["evaluate", "--checkpoint", "{ft}", "--data", "{data}", "--batch-size", "0"], "--batch-size"),
    "demo zero per class": (["demo", "--out", "{root}/d0", "--per-class", "0"], "--per-class"),
    "ablation zero seeds": (["benchmark", "ablation", "--out", "{root}/ab", "--seeds", "0"], "--seeds"),
    "speed zero steps": (["benchmark", "speed", "--presets", "smoke", "--steps", "0"], "--steps"),
    "speed batch size of one": (["benchmark", "speed", "--presets", "smoke", "--batch-size", "smoke=1"], "--batch-size"),
    # choices, hardware, devices
    "unknown generator backend": (["generate", "--out", "{root}/g", "--backend", "gan"], "procedural"),
    "generate unknown class": (["generate", "--out", "{root}/g", "--classes", "contempt"], "contempt"),
    "warp without sources": (["generate", "--out", "{root}/g", "--backend", "warp"], "--sources"),
    "warp with empty sources": (["generate", "--out", "{root}/g", "--backend", "warp", "--sources", "{root}/empty"], "{root}/empty"),
    "bogus precision": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--precision", "bogus"], "--precision"),
    "bogus precision via --set": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "trainer.precision=bogus"], "trainer.precision"),
    "a precision that casts the weights only (16-true)": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--precision", "16-true"], "--precision"),
    "a precision that casts the weights only (64-true via --set)": (["finetune", "--checkpoint", "{pre}", "--data", "{data}", "--out", "{root}/o", "--set", "trainer.precision=64-true"], "trainer.precision"),
    "bogus strategy (Lightning refuses it)": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--strategy", "bogus"], "invalid trainer settings"),
    "zero nodes": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--num-nodes", "0"], "--num-nodes"),
    "negative devices": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--devices", "-3"], "--devices"),
    "negative devices via --set": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "trainer.devices=-3"], "trainer.devices"),
    "GPU accelerator on a CPU-only machine": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--accelerator", "gpu"], "--accelerator", CUDA),
    "GPU accelerator via --set on a CPU-only machine": (["pretrain", "--data", "{data}", "--out", "{root}/o", "--set", "trainer.accelerator=gpu"], "invalid trainer settings", CUDA),
    "evaluate on a bogus device": (["evaluate", "--checkpoint", "{ft}", "--data", "{data}", "--device", "bogus"], "--device"),
    "evaluate on cuda without one": (["evaluate", "--checkpoint", "{ft}", "--data", "{data}", "--device", "cuda"], "--device", CUDA),
    "predict on cuda without one": (["predict", "{root}/face.png", "--checkpoint", "{ft}", "--device", "cuda"], "--device", CUDA),
    "submit on cuda without one": (["submit", "--checkpoint", "{ft}", "--frames", "{root}/empty", "--out", "{root}/s", "--device", "cuda"], "--device", CUDA),
    "speed on cuda without one": (["benchmark", "speed", "--presets", "smoke", "--device", "cuda"], "--device", CUDA),
    "latents on cuda without one": (["plot", "latents", "--checkpoint", "{pre}", "--data", "{data}", "--device", "cuda"], "--device", CUDA),
    "contact sheet of an unknown picture type": (["data", "inspect", "{data}", "--out", "{root}/sheet.xyz"], ".xyz"),
    # checkpoints
    "missing checkpoint": (["evaluate", "--checkpoint", "{root}/none.ckpt", "--data", "{data}"], "not found"),
    "truncated checkpoint": (["evaluate", "--checkpoint", "{root}/truncated.ckpt", "--data", "{data}"], "truncated"),
    "text as checkpoint": (["evaluate", "--checkpoint", "{root}/text.ckpt", "--data", "{data}"], "cannot read checkpoint"),
    "a short text file as checkpoint": (["evaluate", "--checkpoint", "{root}/hello.ckpt", "--data", "{data}"], "cannot read checkpoint"),
    "random bytes as checkpoint": (["predict", "{root}/face.png", "--checkpoint", "{root}/random.ckpt", "--out", "{root}/r.csv"], "cannot read checkpoint"),
    "foreign checkpoint": (["evaluate", "--checkpoint", "{root}/foreign.ckpt", "--data", "{data}"], "not a byel checkpoint"),
    "stage-1 checkpoint to evaluate": (["evaluate", "--checkpoint", "{pre}", "--data", "{data}"], "fine-tune it first"),
    "predict on a missing input": (["predict", "--checkpoint", "{ft}", "{root}/nope.jpg", "--out", "{root}/p.csv", "--no-detect"], "nope.jpg"),
    # output paths
    "export over its own checkpoint": (["export", "--checkpoint", "{m}", "--out", "{m}"], "input --checkpoint"),
    "a gate for a backend without one": (["generate", "--out", "{root}/g", "--per-class", "1", "--no-gate"], "mesh backend"),
    "predictions under a picture's name": (["predict", "{root}/face.png", "--checkpoint", "{ft}", "--out", "{root}/p.png", "--no-detect"], "CSV table"),
    "predict over its own input image": (["predict", "{root}/face.png", "--checkpoint", "{ft}", "--out", "{root}/face.png", "--no-detect"], "input"),
    "run folder that is a file": (["pretrain", "--data", "{data}", "--out", "{root}/afile"], "is a file"),
    "run folder below a file": (["pretrain", "--data", "{data}", "--out", "{root}/afile/run"], "is a file"),
    "run folder that is the data": (["pretrain", "--data", "{data}", "--out", "{data}"], "input --data"),
    "generate into a file": (["generate", "--out", "{root}/afile", "--per-class", "1"], "is a file"),
    "report path that is a folder": (["evaluate", "--checkpoint", "{ft}", "--data", "{data}", "--report", "{root}/empty"], "is a folder"),
    "report inside the evaluated folder (its PNG would replace an input)": (["evaluate", "--checkpoint", "{ft}", "--data", "{data}", "--report", "{data}/preview.json"], "inside the input --data"),
    "report inside a class folder (its PNG would be read as a face)": (["evaluate", "--checkpoint", "{ft}", "--data", "{data}", "--report", "{data}/anger/r.json"], "inside the input --data"),
    "contact sheet over an image of the inspected set": (["data", "inspect", "{data}", "--out", "{data}/anger/0.png"], "inside the input SPEC"),
    "annotated copies inside the predicted folder": (["predict", "{data}", "--checkpoint", "{ft}", "--annotate", "{data}/annotated", "--out", "{root}/p.csv", "--no-detect"], "inside the input INPUT"),
    "run folder inside the data": (["pretrain", "--data", "{data}", "--out", "{data}/run"], "inside the input --data"),
    "fine-tune into the run folder of its checkpoint": (["finetune", "--checkpoint", "{pre}", "--data", "{data}", "--out", "{root}/pre", "--overwrite"], "inside"),
    # run folders
    "pre-train into a finished run": (["pretrain", "--data", "{data}", "--out", "{root}/pre"], "already holds a run"),
    "fine-tune into a finished run": (["finetune", "--checkpoint", "{pre}", "--data", "{data}", "--out", "{root}/ft"], "already holds a run"),
    "demo into a finished demo": (["demo", "--out", "{root}/demo"], "already holds a run"),
    "resume and overwrite together": (["pretrain", "--data", "{data}", "--out", "{root}/pre", "--resume", "--overwrite"], "--overwrite"),
    "nothing to resume": (["pretrain", "--data", "{data}", "--out", "{root}/fresh", "--resume"], "nothing to resume"),
    "resume another model": (["pretrain", "--data", "{data}", "--out", "{root}/pre", "--resume", "--backbone", "resnet18"], "model.backbone 'smallnet' → 'resnet18'"),
    "resume with another method": (["pretrain", "--data", "{data}", "--out", "{root}/pre", "--resume", "--method", "supervised"], "method.name"),
    "demo with a missing real folder": (["demo", "--out", "{root}/d1", "--real", "{root}/nope"], "not found"),
    # inputs checked before any work (here: after the plain evaluation had written its report)
    "evaluate with a missing --adapt-bn set": (["evaluate", "--checkpoint", "{ft}", "--data", "{data}", "--adapt-bn", "{root}/nope"], "--adapt-bn {root}/nope: not found"),
    "fine-tune with a missing --val set": (["finetune", "--checkpoint", "{pre}", "--data", "{data}", "--out", "{root}/o", "--val", "{root}/nope"], "--val {root}/nope: not found"),
    "self-train with a missing --synthetic set": (["adapt", "--checkpoint", "{ft}", "--data", "{data}", "--method", "self-train", "--out", "{root}/o", "--synthetic", "{root}/nope"], "--synthetic {root}/nope: not found"),
}
TRAINING = ("pretrain", "finetune", "demo")


def _fill(argv, world):
    return [a.format(**{k: str(v) for k, v in world.items()}) for a in argv]


def _one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    errors = [line for line in lines if "error:" in line]
    assert len(errors) == 1 and "Traceback" not in err and "internal error" not in err, err
    assert errors[0].startswith("byel") and all(ch.isprintable() for ch in errors[0]), repr(errors[0])
    return errors[0]


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_is_one_clear_line(case, world, capsys):
    argv, needle, *marks = CASES[case]
    if CUDA in marks and HAS_CUDA:
        pytest.skip("this machine has a GPU")
    argv = _fill(argv, world)
    if argv[0] in TRAINING:
        argv += TINY if "--preset" not in argv else TINY[2:]
    before = _snapshot(world["root"])
    capsys.readouterr()
    try:
        rc = main(argv)
    except SystemExit as e:  # argparse errors exit through SystemExit, with one line too
        rc = e.code
    line = _one_error_line(capsys.readouterr().err)
    assert rc not in (0, None), case
    assert needle.format(root=world["root"]) in line, (needle, line)
    after = _snapshot(world["root"])
    assert after.keys() == before.keys() and all(after[k] == before[k] for k in before), "earlier outputs changed"


# The scripts in benchmarks/ are commands too: one error line, whichever step refuses.
ROOT = Path(__file__).resolve().parents[1]
SCRIPT_CASES = {
    "geometry_transfer.py negative seed": (["geometry_transfer.py", "--real", "{data}", "--seed", "-1", "--warp-per-class", "0",
                                            "--procedural-per-class", "1", "--out", "{tmp}/g", "--results", "{tmp}/r"], "--seed"),
    "main_job.py negative seed": (["main_job.py", "--real", "{data}", "--seeds", "-1", "--runs", "{tmp}/runs", "--out", "{tmp}/o"], "--seeds"),
    "main_job.py passing on a demo option the demo refuses": (["main_job.py", "--real", "{data}", "--seeds", "0", "--runs", "{tmp}/runs",
                                                               "--out", "{tmp}/o", "--", "--per-class", "0"], "--per-class"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SCRIPT_CASES))
def test_benchmark_scripts_answer_bad_input_in_one_line(case, world, tmp_path):
    (script, *argv), needle = SCRIPT_CASES[case]
    argv = [a.format(data=world["data"], tmp=tmp_path) for a in argv]
    r = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *argv], capture_output=True, text=True,
                       cwd=tmp_path)
    errors = [line for line in r.stderr.splitlines() if "error:" in line]
    assert r.returncode == 2 and "Traceback" not in r.stderr and "internal error" not in r.stderr, r.stderr[-3000:]
    assert len(errors) == 1 and needle in errors[0], r.stderr[-3000:]


def test_demo_checks_its_inputs_before_the_first_step(world, capsys):
    out = world["root"] / "d2"
    assert main(["demo", "--out", str(out), "--real", str(world["root"] / "nope"), *TINY]) == 2
    assert not out.exists()  # nothing generated, nothing trained
    assert "not found" in _one_error_line(capsys.readouterr().err)


# --- every number, every subcommand: 0, -1 and a huge value ------------------------------------
def _commands(parser, path=()):
    """(subcommand path, its parser) for every runnable subcommand."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _commands(sub, (*path, name))
    if parser.get_default("func"):
        yield path, parser


def _numeric_options():
    for path, parser in _commands(build_parser()):
        for a in parser._actions:
            if a.option_strings and (a.type in (int, float) or isinstance(a.type, Bounded)):
                yield path, parser, a.option_strings[-1], getattr(a.type, "kind", a.type)


def _required(parser) -> list[str]:
    argv = []
    for a in parser._actions:
        if not a.option_strings and not isinstance(a, argparse._SubParsersAction):
            argv.append("x")
        elif a.required:  # a valid value, so only the option under test can be refused
            argv += [a.option_strings[-1], list(a.choices)[0] if a.choices else "x"]
    return argv


NUMERIC = [(p, opt, v) for p, _, opt, kind in _numeric_options()
           for v in ("0", "-1", "99999999999999999999" if kind is int else "1e30")]
# Zero is a real setting for these: seed 0, no warm-up, no end-to-end run, any free port.
ZERO_OK = {"--seed", "--warmup", "--e2e-epochs", "--port"}


def test_the_property_test_finds_the_options():
    found = {(p, o) for p, o, _ in NUMERIC}
    assert len(found) >= 35, found
    for must in [(("generate",), "--size"), (("pretrain",), "--seed"), (("evaluate",), "--batch-size"),
                 (("benchmark", "speed"), "--steps"), (("benchmark", "ablation"), "--seeds"), (("demo",), "--per-class")]:
        assert must in found


@pytest.mark.parametrize("path,option,value", NUMERIC, ids=[f"{' '.join(p)} {o} {v[:6]}" for p, o, v in NUMERIC])
def test_every_numeric_option_is_range_checked(path, option, value, capsys):
    parser = dict(_commands(build_parser()))[path]
    argv = [*path, *_required(parser), option, value]
    try:
        build_parser().parse_args(argv)
    except SystemExit as e:
        assert e.code == 2
        assert option in _one_error_line(capsys.readouterr().err)
        return
    assert value == "0" and option in ZERO_OK, f"{' '.join(argv)} was accepted"


def _numeric_keys():
    from typing import get_type_hints

    cfg = Config()
    for key in _all_keys(cfg):
        *sections, leaf = key.split(".")
        owner = cfg
        for s in sections:
            owner = getattr(owner, s)
        hint, value = get_type_hints(type(owner))[leaf], getattr(owner, leaf)
        if hint in (int, float) or (isinstance(value, tuple) and all(isinstance(v, (int, float)) for v in value)):
            yield key, len(value) if isinstance(value, tuple) else None


@pytest.mark.parametrize("key,n", list(_numeric_keys()))
@pytest.mark.parametrize("value", [-1, 1e30, float("nan")])
def test_every_numeric_config_key_is_range_checked(key, n, value):
    """--set reaches every key: the same bounds as the options, one ConfigError line."""
    with pytest.raises(ConfigError):
        load_config("smoke", {key: (value,) * n if n else value})


def _help_defaults():
    """(command path, option, its help text without line wraps, what --help should say) for every
    option with a default worth showing: the value itself, or its own help's words on the default
    (e.g. "default: the preset's")."""
    for path, parser in _commands(build_parser()):
        flat = " ".join(parser.format_help().split())  # argparse wraps lines: compare without them
        for a in parser._actions:
            if (not a.option_strings or a.help == argparse.SUPPRESS or isinstance(a, argparse._HelpAction)
                    or a.default in (None, False, [], argparse.SUPPRESS)):
                continue
            own = " ".join((a.help or "").split())
            yield path, a.option_strings[0], flat, own if "default" in own else f"{own} (default: {a.default})".strip()


def test_help_shows_choices_and_defaults(capsys):
    """Every option with a default shows it in --help (an option without help text would not)."""
    checked = 0
    for path, option, flat, shown in _help_defaults():
        assert shown in flat, (path, option, shown)
        checked += 1
    assert checked >= 10  # not vacuous: generate alone has --per-class, --size, --seed, --workers, ...
    generate = " ".join(dict(_commands(build_parser()))[("generate",)].format_help().split())
    assert "{procedural,warp" in generate and "images per class (default: 1000)" in generate


# --- output paths and the disk -----------------------------------------------------------------
def test_read_only_output_folder(world, tmp_path, monkeypatch, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    os.chmod(ro, 0o500)
    if os.access(ro, os.W_OK):  # root ignores permissions: make the folder refuse writes by hand
        real_mkdir = type(ro).mkdir

        def refuse(self, *a, **k):
            if str(self).startswith(str(ro)):
                raise PermissionError(13, "Permission denied", str(self))
            return real_mkdir(self, *a, **k)

        monkeypatch.setattr(type(ro), "mkdir", refuse)
    try:
        rc = main(["pretrain", "--data", str(world["data"]), "--out", str(ro / "run"), *TINY])
        line = _one_error_line(capsys.readouterr().err)
        assert rc == 2 and "permission denied" in line and str(ro) in line
    finally:
        os.chmod(ro, 0o700)


def test_full_disk_keeps_the_previous_checkpoint_and_says_so(world, tmp_path, monkeypatch, capsys):
    """A write error (ENOSPC) while saving: one line naming the file and the reason, exit 2, the
    last good checkpoint intact, and no temporary files — neither this write's nor a killed one's."""
    out = tmp_path / "run"
    assert main(["pretrain", "--data", str(world["data"]), "--out", str(out), *TINY]) == 0
    last = out / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    (last.parent / ".last.ckpt.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # a write killed mid-way

    def full_disk(obj, f, *a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    capsys.readouterr()
    rc = main(["pretrain", "--data", str(world["data"]), "--out", str(out), "--epochs", "2", "--resume", *TINY])
    line = _one_error_line(capsys.readouterr().err)
    assert rc == 2
    assert line == (f"byel: error: cannot write checkpoint to {last}: disk full (no space left on device); "
                    "the previous checkpoint is kept")
    assert last.read_bytes() == before
    assert sorted(p.name for p in last.parent.iterdir()) == ["last.ckpt"]


@contextlib.contextmanager
def _file_size_limit(nbytes: int):
    """A real failing write, as on a full disk: past nbytes a write fails with EFBIG (Python
    ignores SIGXFSZ). Torch's own writer turns that into a RuntimeError, or an abort."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (nbytes, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_real_failing_checkpoint_write_is_one_line(tmp_path):
    path = tmp_path / "last.ckpt"
    atomic_torch_save({"w": torch.zeros(10)}, path)
    before = path.read_bytes()
    with _file_size_limit(20_000), pytest.raises(ByelError) as e:
        atomic_torch_save({"w": torch.zeros(100_000)}, path)
    assert str(e.value) == (f"cannot write checkpoint to {path}: file too large (over this system's or this "
                            "shell's file-size limit, ulimit -f); the previous checkpoint is kept")
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["torchscript", "onnx"])
def test_a_real_failing_export_write_is_one_line(fmt, world, tmp_path):
    """In a process of its own: torch's TorchScript writer aborted the process on a failed write."""
    if fmt == "onnx":
        pytest.importorskip("onnx")
    out = tmp_path / "model.bin"
    code = ("import resource, sys; from byel.cli import main; "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, resource.getrlimit(resource.RLIMIT_FSIZE)[1])); "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "export", "--checkpoint", str(world["ft"]), "--out", str(out),
                        "--format", fmt], capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 2, r.stderr[-2000:]
    assert _one_error_line(r.stderr) == f"byel: error: cannot write {out}: file too large (over this system's or this " \
                                        "shell's file-size limit, ulimit -f)"
    assert not list(tmp_path.iterdir())


def test_checkpoints_get_the_usual_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        atomic_torch_save({"x": 1}, tmp_path / "c.ckpt")
    finally:
        os.umask(old)
    assert (tmp_path / "c.ckpt").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0600


@pytest.mark.parametrize("error,expected", [
    (FileExistsError(errno.EEXIST, "File exists", "X"), "cannot create X: a file of that name is in the way"),
    (OSError(errno.ENOSPC, "No space left on device", "X"), "cannot write X: disk full (no space left on device)"),
    (OSError(errno.EROFS, "Read-only file system", "X"), "cannot write X: read-only file system"),
    (PermissionError(errno.EACCES, "Permission denied", "X"), "cannot use X: permission denied"),
])
def test_os_errors_are_one_readable_line(error, expected, capsys):
    def fail():
        raise error

    assert run_guarded(fail) == 2
    assert _one_error_line(capsys.readouterr().err) == f"byel: error: {expected}"


def test_control_characters_and_memory_errors_stay_one_line(capsys):
    def bad():
        raise ByelError("header \x1b[31mred\x07\nsecond line\ttab")

    def big():
        raise MemoryError

    assert run_guarded(bad) == 2
    assert "\\x1b[31mred\\x07\\nsecond line\\ttab" in _one_error_line(capsys.readouterr().err)
    assert run_guarded(big) == 2
    assert "out of memory" in _one_error_line(capsys.readouterr().err)


# --- run folders ---------------------------------------------------------------------------------
def _held_elsewhere(folder):
    """Another process holding FOLDER/.lock, as a run in progress does."""
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "f.write('4242'); f.flush(); print('held', flush=True); time.sleep(120)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(folder / ".lock")], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def _is_locked(folder) -> bool:
    with open(folder / ".lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f, fcntl.LOCK_UN)
        return False


@pytest.mark.parametrize("command", ["pretrain", "finetune", "demo"])
def test_a_second_run_into_a_folder_in_use_is_refused(command, world, tmp_path, capsys):
    """Two runs started together into one --out: the second is refused at once, before it
    writes anything (the first holds OUT/.lock for its whole run)."""
    out = tmp_path / "run"
    shutil.copytree(world["pre"].parent.parent, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != ".lock"}
    argv = {"pretrain": ["pretrain", "--data", str(world["data"]), "--resume", "--epochs", "2", "--seed", "5"],
            "finetune": ["finetune", "--checkpoint", str(world["pre"]), "--data", str(world["data"]), "--overwrite"],
            "demo": ["demo", "--overwrite"]}[command]
    holder = _held_elsewhere(out)  # the first run, still training
    try:
        capsys.readouterr()
        rc = main([*argv, "--out", str(out), *TINY])
    finally:
        holder.kill()
        holder.wait()
    assert rc == 2 and "in use by another byel run (process 4242)" in _one_error_line(capsys.readouterr().err)
    assert all(p.read_bytes() == b for p, b in before.items())


def test_a_refused_run_leaves_no_empty_run_folder(world, tmp_path, capsys):
    out = tmp_path / "new"
    assert main(["pretrain", "--data", str(tmp_path / "nope"), "--out", str(out), *TINY]) == 2
    assert not out.exists()


def test_the_lock_is_held_while_training(world, tmp_path):
    out, seen = tmp_path / "run", []

    class TryLock(L.Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append("held" if _is_locked(out) else "free")

    from byel.train import pretrain

    data = load(str(world["data"]), 32, progress=False)
    pretrain(load_config("smoke", {"trainer.progress": False, "trainer.logger": "none"}), data.images, data.labels,
             out, callbacks=[TryLock()])
    assert seen == ["held"] and not _is_locked(out)  # and released afterwards


def test_overwrite_replaces_a_run_and_its_stale_checkpoints(world, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(world["ft"].parent.parent, out)
    (out / "checkpoints" / "best.ckpt").write_bytes(b"an old best checkpoint")
    assert main(["pretrain", "--data", str(world["data"]), "--out", str(out), "--overwrite", *TINY]) == 0
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["last.ckpt"]
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["byel"]["kind"] == "pretrain"


def test_demo_resume_refused_leaves_the_config(world, tmp_path, capsys):
    """`demo --resume` with another --method: refused by the pre-training stage before it writes
    its config.yaml (the refused settings never replace the run's)."""
    out = tmp_path / "demo"
    assert main(["generate", "--out", str(out / "synthetic"), "--per-class", "4", "--size", "32", "--workers", "1",
                 "--no-progress"]) == 0
    shutil.copytree(world["pre"].parent.parent, out / "pretrain")
    keep = {p: p.read_bytes() for p in [out / "pretrain" / "config.yaml", world["pre"].parent.parent / "config.yaml"]}
    capsys.readouterr()
    rc = main(["demo", "--out", str(out), "--resume", "--method", "supervised", *TINY])
    assert rc == 2 and "method.name" in _one_error_line(capsys.readouterr().err)
    assert (out / "pretrain" / "config.yaml").read_bytes() == keep[out / "pretrain" / "config.yaml"]
    assert not (out / "finetune").exists()


def test_ctrl_c_during_training_says_how_to_resume(world, tmp_path, capsys):
    """Lightning catches Ctrl-C and exits 1 without a word; byel says what happened, exits 130,
    keeps the last checkpoint, gives Ctrl-C back, and --resume then finishes the run."""
    from byel.data.split import holdout_split
    from byel.train import pretrain

    class CtrlC(L.Callback):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if trainer.current_epoch == 1:
                raise KeyboardInterrupt

    data = load(str(world["data"]), 32, progress=False)
    cfg = load_config("smoke", {"trainer.progress": False, "trainer.logger": "none", "pretrain.epochs": 2})
    train = holdout_split(data, cfg.data.val_fraction, cfg.seed)[0]  # the images `byel pretrain` trains on
    out = tmp_path / "run"
    handler = signal.getsignal(signal.SIGINT)
    capsys.readouterr()
    rc = run_guarded(lambda: pretrain(cfg, data.images[train], data.labels[train], out, callbacks=[CtrlC()],
                                      overwrite=False))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 130 and err[-1] == "byel: interrupted; resume with --resume"
    assert signal.getsignal(signal.SIGINT) is handler
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 0
    assert main(["pretrain", "--data", str(world["data"]), "--out", str(out), "--epochs", "2", "--resume", *TINY]) == 0
    assert torch.load(out / "checkpoints" / "last.ckpt", weights_only=True)["epoch"] == 1


def test_a_run_that_fails_before_its_first_checkpoint_leaves_no_run_behind(world, tmp_path, capsys):
    """A start that fails before any checkpoint (e.g. refused by the devices) takes its config.yaml
    away: the next start into the same folder needs neither --overwrite nor --resume."""
    from byel.train import pretrain

    class Refused(L.Callback):
        def on_train_start(self, trainer, pl_module):
            raise ConfigError("the devices refused")

    data = load(str(world["data"]), 32, progress=False)
    cfg = load_config("smoke", {"trainer.progress": False, "trainer.logger": "none"})
    out = tmp_path / "run"
    rc = run_guarded(lambda: pretrain(cfg, data.images, data.labels, out, callbacks=[Refused()], overwrite=False))
    assert rc == 2 and "the devices refused" in _one_error_line(capsys.readouterr().err)
    assert not (out / "config.yaml").exists() and not list(out.glob("checkpoints/*.ckpt"))
    assert main(["pretrain", "--data", str(world["data"]), "--out", str(out), *TINY]) == 0
    # a folder that held a run before the failed start still holds one (--overwrite was asked for)
    rc = run_guarded(lambda: pretrain(cfg, data.images, data.labels, out, callbacks=[Refused()], overwrite=True))
    assert rc == 2 and (out / "config.yaml").exists()


# --- problems shown, not hidden -----------------------------------------------------------------
def test_evaluate_lists_the_files_it_could_not_use(world, tmp_path, capsys):
    data = tmp_path / "mixed"
    shutil.copytree(world["data"], data)
    (data / "anger" / "zero.png").write_bytes(b"")
    (data / "fear" / "corrupt.jpg").write_bytes(b"not a jpeg" * 20)
    (data / "sadness" / "anim.gif").write_bytes(b"GIF89a" + bytes(40))
    report = tmp_path / "eval" / "mixed.json"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(world["ft"]), "--data", str(data), "--report", str(report),
                 "--no-progress"]) == 0
    first = capsys.readouterr().out.splitlines()[0]
    log = tmp_path / "eval" / "mixed-data-problems.txt"
    assert "24 images" in first and "3 unusable file(s)" in first and str(log) in first
    assert all(name in log.read_text() for name in ("zero.png", "corrupt.jpg", "anim.gif"))


def test_a_link_loop_in_a_class_folder_counts_nothing_twice(world, tmp_path):
    data = tmp_path / "looped"
    shutil.copytree(world["data"], data)
    os.symlink("..", data / "happiness" / "loop")
    (data / "sadness" / "nested").mkdir()
    os.symlink("..", data / "sadness" / "nested" / "up")  # back into sadness itself: harmless
    s = load(str(data), 32, progress=False, cache=False)
    assert s.counts() == {c: 4 for c in s.counts()}
    assert any("loop" in where and "link_outside_folder" in reason for where, reason in s.problems)


def test_a_run_that_writes_no_checkpoint_is_not_a_success(world, tmp_path, capsys):
    """Exit 0 only when the promised checkpoint exists (here: training stopped before its first)."""
    from byel.train import pretrain

    class StopAtOnce(L.Callback):
        def on_train_start(self, trainer, pl_module):
            trainer.should_stop = True

    data = load(str(world["data"]), 32, progress=False)
    cfg = load_config("smoke", {"trainer.progress": False, "trainer.logger": "none"})
    rc = run_guarded(lambda: pretrain(cfg, data.images, data.labels, tmp_path / "run", callbacks=[StopAtOnce()]))
    assert rc == 2 and "without writing its checkpoint" in _one_error_line(capsys.readouterr().err)


@pytest.mark.slow
def test_a_real_failing_image_write_in_generate_is_one_line(tmp_path):
    """OpenCV's imwrite printed 'libpng error: Write Error' beside byel's line on a failed write;
    images are now encoded in memory and written by Python (byel.imageio)."""
    out = tmp_path / "gen"
    code = ("import resource, sys; from byel.cli import main; "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1500, resource.getrlimit(resource.RLIMIT_FSIZE)[1])); "
            "sys.exit(main(sys.argv[1:]))")
    r = subprocess.run([sys.executable, "-c", code, "generate", "--out", str(out), "--per-class", "1", "--size", "64",
                        "--workers", "1", "--no-progress"],
                       capture_output=True, text=True, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"})
    assert r.returncode == 2, r.stderr[-2000:]
    line = _one_error_line(r.stderr)
    assert line.startswith(f"byel: error: cannot write {out}") and line.endswith("file-size limit, ulimit -f)"), line
    assert "libpng" not in r.stderr and "Traceback" not in r.stderr
