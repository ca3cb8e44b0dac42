"""`byel benchmark speed`: what a pre-training step costs on this machine, and what a training run
achieves end to end.

What is timed, and why this way
-------------------------------
A step is timed by wall clock from one batch's start to the next batch's start. In byel's
Lightning run, a callback stamps the clock in every `on_train_batch_start`; the gap between two
consecutive stamps holds everything the loop does for one batch: the loader fetch of the next
batch and its transfer to the device (Lightning fetches between batches), per-sample
augmentation of the two views, forward/backward, the optimiser step, the LR schedule, every
`on_train_batch_end` hook — the module's EMA update comes *after* the callbacks' hooks, so a
start→end timer would miss it — and logging. Only gaps inside one epoch count: a gap across an
epoch boundary also holds epoch-end work (checkpoints), which the end-to-end run reports apart.

The plain-PyTorch reference drives the *same* module without Lightning: a for loop over the same
kind of DataLoader that calls the module's own `training_step` (one loss code path, no copy of its
wiring), `backward`, the optimiser and LR scheduler from the module's own `configure_optimizers`,
then the module's own EMA hook `on_train_batch_end` (the rate and τ: entries of the arrays the
module computed once, byel.optim.lr_schedule and ema_schedule, looked up at the step, as in byel's
run). A tiny stand-in for the Trainer gives those methods the step counter and schedule length
they read, and `self.log` becomes a no-op. Its clock
is stamped before every fetch, so its gaps hold the same work. The ratio byel ÷ plain is then what
Lightning's loop (hooks, logging, bookkeeping) costs or saves, nothing else.

Each loop runs `warmup` untimed steps, then `steps` timed ones; its figure is the median gap.
The two loops alternate `repeats` times (byel, plain, byel, ...) and the report gives the median of
the per-repeat medians with their min–max, so load from other processes hits both alike.

The end-to-end row is a real `byel.train.pretrain()` call (the preset's trainer, logger and
checkpoints, no progress bar) on random uint8 images for a couple of epochs: images ÷ wall time
of the whole call, split into start-up (config save, model, Trainer, first fetch), steady steps,
checkpoint saves (timed around `trainer.save_checkpoint`) and what is left per epoch (epoch
start/end hooks, logger flushes, teardown).

Other columns: FLOPs of one step counted by torch's FlopCounterMode (matmuls and convolutions,
forward + backward) over the whole-step time vs a square-matmul peak in the step's dtype; the
rate at which the loader alone delivers images; the preset's peak resident memory (VmHWM, reset
before each preset; the process-wide ru_maxrss where that reset is unavailable).
"""

from __future__ import annotations

import copy
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode

from byel.classes import NUM_CLASSES
from byel.config import Config, load_config
from byel.data.datamodule import ArrayDataModule
from byel.errors import ByelError
from byel.methods import create_method
from byel.provenance import run_record

AUTOCAST = {"32-true": None, "bf16-mixed": torch.bfloat16}


def clock() -> float:
    return time.perf_counter()  # one indirection, so tests can drive a fake clock


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def matmul_peak_flops(device: str = "cpu", dtype=torch.float32, n: int | None = None, repeats: int = 5) -> float:
    """FLOP/s of a square matmul: the dense peak the step is compared with."""
    n = n or (8192 if device.startswith("cuda") else 2048)
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    _sync(device)
    t = clock()
    for _ in range(repeats):
        a @ b
    _sync(device)
    return 2 * n**3 * repeats / (clock() - t)


class _StubTrainer:
    """The few Trainer attributes the module's own methods read: the step counter, the schedule's
    length, the epoch count, the optimiser; one process, no gradient accumulation."""

    world_size = accumulate_grad_batches = 1

    def __init__(self, total_steps: int, max_epochs: int):
        self.global_step, self.estimated_stepping_batches, self.max_epochs = 0, total_steps, max_epochs
        self.optimizers: list = []


def _no_log(*args, **kwargs) -> None:
    pass


class PlainLoop:
    """byel's pre-training step without Lightning, calling the module's own methods:
    training_step → backward → (grad clip) → optimiser → LR schedule → EMA hook. The schedules are
    the module's arrays (`schedules`, from configure_optimizers), indexed by the stub's step count."""

    def __init__(self, model, total_steps: int, max_epochs: int = 1, device: str = "cpu", precision: str = "32-true"):
        if precision not in AUTOCAST:
            raise ByelError(f"benchmark speed measures precision 32-true or bf16-mixed, not {precision!r}")
        self.model, self.device, self.dtype = model.to(device).train(), device, AUTOCAST[precision]
        self.stub = _StubTrainer(total_steps, max_epochs)
        model.trainer = self.stub
        model.log = model.log_dict = _no_log  # instance attributes shadow LightningModule.log
        conf = model.configure_optimizers()
        self.opt, self.sched = conf["optimizer"], conf["lr_scheduler"]["scheduler"]
        self.schedules = model.schedules  # lr and (momentum methods) τ at each global step
        self.stub.optimizers = [self.opt]
        self.clip = model.cfg.optim.grad_clip

    def step(self, batch, batch_idx: int = 0):
        m = self.model
        batch = tuple(t.to(self.device, non_blocking=True) for t in batch)
        m.on_train_batch_start(batch, batch_idx)
        with torch.autocast(self.device.split(":")[0], dtype=self.dtype, enabled=self.dtype is not None):
            loss = m.training_step(batch, batch_idx)
        if loss is not None:  # None: a non-finite loss skipped (optim.nonfinite=skip), as in Lightning
            loss.backward()
            if self.clip:
                torch.nn.utils.clip_grad_norm_([p for g in self.opt.param_groups for p in g["params"]], self.clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        self.sched.step()
        self.stub.global_step += 1
        m.on_train_batch_end({"loss": loss}, batch, batch_idx)
        return None if loss is None else loss.detach()


class BatchClock(L.Callback):
    """Stamps the clock at every batch start (gaps = whole steps) and times checkpoint saves."""

    def __init__(self, device: str = "cpu"):
        self.device, self.stamps, self.saves = device, [], []

    def on_fit_start(self, trainer, pl_module):
        save = trainer.save_checkpoint

        def timed_save(*args, **kwargs):
            t = clock()
            try:
                return save(*args, **kwargs)
            finally:
                self.saves.append(clock() - t)

        trainer.save_checkpoint = timed_save  # ModelCheckpoint saves through this

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        _sync(self.device)
        self.stamps.append((trainer.current_epoch, clock()))

    def gaps(self) -> list[float]:
        """Whole-step times: gaps between consecutive batch starts of the same epoch."""
        return [b[1] - a[1] for a, b in zip(self.stamps, self.stamps[1:]) if a[0] == b[0]]


def _data(batch_size: int, n_batches: int, image_size: int, seed: int = 0):
    n = batch_size * n_batches
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, image_size, image_size, 3), dtype=np.uint8)
    return images, (np.arange(n) % NUM_CLASSES).astype(np.int64)


def _datamodule(cfg: Config, images, labels) -> ArrayDataModule:
    # as byel.train.pretrain builds it
    return ArrayDataModule((images, labels), batch_size=min(cfg.data.batch_size, len(labels)),
                           num_workers=cfg.data.num_workers, balanced=cfg.data.balanced)


def time_lightning(cfg: Config, images, labels, warmup: int, device: str, out_dir: Path) -> list[float]:
    """Whole-step times of byel's Lightning loop (the preset's trainer and logger, no checkpoints):
    one epoch over all batches, the first `warmup` gaps dropped."""
    from byel.train import build_trainer

    L.seed_everything(cfg.seed, verbose=False)
    clock_ = BatchClock(device)
    trainer = build_trainer(cfg, out_dir, 1, checkpoints=False, callbacks=[clock_])
    trainer.fit(create_method(cfg.to_dict()), datamodule=_datamodule(cfg, images, labels))
    return clock_.gaps()[warmup:]


def time_plain(cfg: Config, images, labels, warmup: int, device: str, precision: str) -> tuple[list[float], PlainLoop]:
    """Whole-step times of the plain loop over the same DataLoader (stamped before each fetch)."""
    L.seed_everything(cfg.seed, verbose=False)
    loader = _datamodule(cfg, images, labels).train_dataloader()
    loop = PlainLoop(create_method(cfg.to_dict()), len(loader), 1, device, precision)
    stamps, it = [], iter(loader)
    for i in range(len(loader)):
        _sync(device)
        stamps.append(clock())
        loop.step(next(it), i)
    return list(np.diff(stamps)[warmup:]), loop


def end_to_end(cfg: Config, epochs: int, steps: int, device: str, out_dir: Path) -> dict:
    """A real pretrain() run: images/s over the whole call, and where the time outside steps goes."""
    from byel.train import pretrain

    cfg = copy.deepcopy(cfg)
    cfg.pretrain.epochs = epochs
    images, labels = _data(cfg.data.batch_size, steps, cfg.data.image_size, seed=1)
    clock_ = BatchClock(device)
    t0 = clock()
    pretrain(cfg, images, labels, out_dir, callbacks=[clock_])
    _sync(device)
    total = clock() - t0
    gaps = clock_.gaps()
    step_s = float(np.median(gaps[1:] or gaps))  # the first gap warms up
    startup = clock_.stamps[0][1] - t0
    n_steps = epochs * steps
    ckpt = float(sum(clock_.saves))
    return {
        "e2e_epochs": epochs, "e2e_steps": n_steps, "e2e_images": n_steps * cfg.data.batch_size,
        "e2e_s": round(total, 2), "e2e_images_per_s": round(n_steps * cfg.data.batch_size / total, 1),
        "e2e_step_images_per_s": round(cfg.data.batch_size / step_s, 1),
        "e2e_startup_s": round(startup, 2),
        "checkpoint_saves": len(clock_.saves),
        "checkpoint_s": round(ckpt / max(1, len(clock_.saves)), 3),
        "epoch_overhead_s": round((total - startup - n_steps * step_s - ckpt) / epochs, 3),
    }


def loader_images_per_s(loader, min_s: float = 0.5) -> float:
    """Images/s the loader alone delivers (whole passes, each with its iterator start, for ≥ min_s)."""
    n, t = 0, clock()
    while True:
        n += sum(len(b[1]) for b in loader)
        if clock() - t >= min_s:
            return n / (clock() - t)


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM (Linux)
        return True
    except OSError:
        return False


def _peak_rss_mb(reset_ok: bool) -> int:
    if reset_ok:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _cfg(preset: str, batch_size: int | None, device: str) -> Config:
    over = {"trainer.progress": False, "trainer.devices": "1",
            "trainer.accelerator": "gpu" if device.startswith("cuda") else "cpu"}
    if batch_size:
        over["data.batch_size"] = batch_size
    return load_config(preset, over)


def check_settings(steps: int, warmup: int, repeats: int, e2e_epochs: int, e2e_steps: int, device: str) -> None:
    for name, v, low in (("steps", steps, 1), ("warmup", warmup, 0), ("repeats", repeats, 1),
                         ("e2e-epochs", e2e_epochs, 0), ("e2e-steps", e2e_steps, 2)):
        if v < low:
            raise ByelError(f"--{name} must be at least {low}, got {v}")
    if device != "cpu" and not (device.startswith("cuda") and torch.cuda.is_available()):
        raise ByelError(f"--device {device!r}: use cpu, or cuda on a machine with a CUDA GPU")


def measure(preset: str, steps: int = 8, warmup: int = 2, repeats: int = 3, batch_size: int | None = None,
            device: str = "cpu", e2e_epochs: int = 2, e2e_steps: int = 4) -> dict:
    """One preset: byel's whole step vs the plain loop, FLOPs, loader, memory, end to end."""
    from byel.train import quiet_lightning, resolve_precision

    check_settings(steps, warmup, repeats, e2e_epochs, e2e_steps, device)
    quiet_lightning()
    rss_reset = _peak_rss_reset()
    if device.startswith("cuda"):
        torch.cuda.reset_peak_memory_stats()
    cfg = _cfg(preset, batch_size, device)
    precision = resolve_precision(cfg.trainer.precision)
    bs = cfg.data.batch_size
    images, labels = _data(bs, warmup + steps + 1, cfg.data.image_size)
    work = Path(tempfile.mkdtemp(prefix="byel-speed-"))
    try:
        ours, plain = [], []
        for r in range(repeats):
            ours.append(float(np.median(time_lightning(cfg, images, labels, warmup, device, work / f"fit{r}"))))
            gaps, loop = time_plain(cfg, images, labels, warmup, device, precision)
            plain.append(float(np.median(gaps)))
        with FlopCounterMode(display=False) as fc:
            loop.step((torch.from_numpy(images[:bs]), torch.from_numpy(labels[:bs])))
        flops = fc.get_total_flops()
        del loop

        loader_rate = loader_images_per_s(_datamodule(cfg, images, labels).train_dataloader())

        e2e = end_to_end(cfg, e2e_epochs, e2e_steps, device, work / "e2e") if e2e_epochs else {}
    finally:
        shutil.rmtree(work, ignore_errors=True)

    step_s, plain_s = float(np.median(ours)), float(np.median(plain))
    peak = matmul_peak_flops(device, AUTOCAST[precision] or torch.float32)
    row = {
        "preset": cfg.preset, "method": cfg.method.name, "backbone": cfg.model.backbone, "width": cfg.model.width,
        "small_input": cfg.model.small_input, "image_size": cfg.data.image_size, "batch_size": bs,
        "optimizer": cfg.optim.optimizer, "precision": precision, "device": device,
        "threads": torch.get_num_threads(), "steps": steps, "warmup": warmup, "repeats": repeats,
        "byel_images_per_s": round(bs / step_s, 1),
        "byel_images_per_s_range": [round(bs / max(ours), 1), round(bs / min(ours), 1)],
        "reference_images_per_s": round(bs / plain_s, 1),
        "reference_images_per_s_range": [round(bs / max(plain), 1), round(bs / min(plain), 1)],
        "ratio": round(plain_s / step_s, 3),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_gflops": round(flops / step_s / 1e9, 1), "matmul_peak_gflops": round(peak / 1e9, 1),
        "percent_of_peak": round(100 * flops / step_s / peak, 1),
        "loader_images_per_s": round(loader_rate), "loader_vs_step": round(loader_rate * step_s / bs, 1),
        "peak_rss_mb": _peak_rss_mb(rss_reset), "peak_rss_kind": "preset (VmHWM)" if rss_reset else "process",
        **e2e,
    }
    if device.startswith("cuda"):
        row["peak_gpu_mb"] = round(torch.cuda.max_memory_allocated() / 2**20)
    return row


def machine_info(device: str = "cpu", run: dict | None = None) -> dict:
    """The machine the table was measured on: `run`'s (a byel.provenance.run_record; default:
    this process's) CPU, cores, OS and versions, and the torch threads, load and GPU now."""
    run = run or run_record()
    m, v = run["machine"], run["versions"]
    info = {
        "cpu": m["cpu"], "logical_cpus": m["cores"], "torch_threads": torch.get_num_threads(),
        "torch": v["torch"], "lightning": v["lightning"], "python": v["python"],
        "os": m["os"], "load_average_1min_at_start": round(os.getloadavg()[0], 2),
    }
    if device.startswith("cuda"):
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


MAIN = [("preset", "preset"), ("backbone", "backbone"), ("width", "width"), ("image_size", "px"),
        ("batch_size", "batch"), ("byel_images_per_s", "byel step img/s (min–max)"),
        ("reference_images_per_s", "plain-PyTorch step img/s (min–max)"), ("ratio", "ratio"),
        ("e2e_images_per_s", "end-to-end img/s"), ("gflop_per_step", "GFLOP/step"),
        ("achieved_gflops", "achieved GFLOP/s"), ("matmul_peak_gflops", "matmul peak GFLOP/s"),
        ("percent_of_peak", "% of peak"), ("loader_images_per_s", "loader img/s"),
        ("loader_vs_step", "loader ÷ step"), ("peak_rss_mb", "peak RSS MB")]
E2E = [("preset", "preset"), ("e2e_epochs", "epochs"), ("e2e_steps", "steps"), ("e2e_images", "images"),
       ("e2e_s", "wall s"), ("e2e_images_per_s", "img/s"), ("e2e_step_images_per_s", "steady step img/s"),
       ("e2e_startup_s", "start-up s"), ("checkpoint_s", "s per checkpoint save"),
       ("epoch_overhead_s", "other s per epoch")]


def _cell(r: dict, key: str) -> str:
    v = r.get(key, "–")
    rng = r.get(f"{key}_range")
    return f"{v} ({rng[0]}–{rng[1]})" if rng else str(v)


def table(rows: list[dict], cols: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(h for _, h in cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(_cell(r, k) for k, _ in cols) + " |" for r in rows]
    return "\n".join(lines)


def markdown(result: dict) -> str:
    rows, m = result["rows"], result["machine"]
    r0 = rows[0] if rows else {}
    out = [
        "# byel pre-training speed", "",
        f"Command: `{result['command']}`", "",
        f"Machine: {m['cpu']}, {m['logical_cpus']} logical CPUs, torch {m['torch']} ({m['torch_threads']} threads), "
        f"Lightning {m['lightning']}, Python {m['python']}" + (f", GPU {m['gpu']}" if "gpu" in m else "")
        + f"; 1-min load average at start {m['load_average_1min_at_start']}.", "",
        f"Step: median wall time from one batch start to the next (fetch, augmentation, forward/backward, "
        f"optimiser, LR schedule, EMA, logging), {r0.get('steps')} timed steps after {r0.get('warmup')} warm-up; "
        f"median (min–max) over {r0.get('repeats')} alternating repeats. The plain-PyTorch loop calls the module's "
        "own training_step, optimiser, schedule and EMA hook; ratio = byel ÷ plain. % of peak = FLOPs of one step "
        "(FlopCounterMode) ÷ whole-step time ÷ a square-matmul peak in the step's dtype.", "",
        table(rows, MAIN), "",
    ]
    if any("e2e_s" in r for r in rows):
        out += ["End to end: one `byel.train.pretrain()` call on random uint8 images (the preset's logger, "
                "a checkpoint per epoch, no progress bar); img/s = images ÷ wall time of the call. Start-up: call → "
                "first batch; other s per epoch: wall − start-up − steps × steady step − checkpoint saves, per epoch.",
                "", table([r for r in rows if "e2e_s" in r], E2E), ""]
    return "\n".join(out)


def run_speed(presets: list[str], steps: int = 8, batch_sizes: dict[str, int] | None = None, out: str | None = None,
              device: str = "cpu", warmup: int = 2, repeats: int = 3, e2e_epochs: int = 2, e2e_steps: int = 4,
              name: str = "results", command: str = "") -> dict:
    """Measure each preset, print a row as each finishes, and write OUT/NAME.json and OUT/NAME.md."""
    batch_sizes = batch_sizes or {}
    check_settings(steps, warmup, repeats, e2e_epochs, e2e_steps, device)
    for p in presets:  # a wrong preset name fails before any measuring
        _cfg(p, batch_sizes.get(p), device)
    run = run_record(command or None)  # the command, machine, versions and git commit behind the table
    result = {"command": command, "machine": machine_info(device, run), "run": run, "rows": []}
    print("| " + " | ".join(h for _, h in MAIN) + " |")
    print("|" + "---|" * len(MAIN), flush=True)
    for p in presets:
        r = measure(p, steps, warmup, repeats, batch_sizes.get(p), device, e2e_epochs, e2e_steps)
        result["rows"].append(r)
        print("| " + " | ".join(_cell(r, k) for k, _ in MAIN) + " |", flush=True)
    if out:
        d = Path(out)
        d.mkdir(parents=True, exist_ok=True)
        (d / f"{name}.json").write_text(json.dumps(result, indent=2) + "\n")
        (d / f"{name}.md").write_text(markdown(result))
        print(f"results: {d / f'{name}.md'}, {d / f'{name}.json'}")
    return result
