"""Checks made before a command does any work, each failing with one ByelError line: where it
will write (the right kind of path, writable, not one of its inputs), the device it will use,
the picture format it will write, and the run folder it will train in (one run per folder, held
with a lock for the run's duration).

Light on purpose (no torch at import): the CLI runs these before loading anything heavy.
"""

from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path

from byel.errors import ByelError
from byel.files import naming

try:
    import fcntl
except ImportError:  # not POSIX: runs are not locked
    fcntl = None

# What marks a training run folder (byel pretrain / finetune --out) as holding a run.
RUN_MARKERS = ("config.yaml", "checkpoints/*.ckpt")


def same_path(a: str | Path, b: str | Path) -> bool:
    """The same file or folder (links and relative paths resolved)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist yet
        return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def lies_inside(path: str | Path, folder: str | Path) -> bool:
    """path is folder or lies below it (links and relative paths resolved)."""
    path, folder = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    return folder == path or folder in path.parents


def spec_paths(value: str) -> list[Path]:
    """The existing paths a command-line input names: a path, or a data spec such as
    imagefolder:DIR, affwild2:FRAMES,ANNOTATIONS or FILE.csv:PublicTest."""
    value = str(value)
    candidates = [value]
    head, sep, rest = value.partition(":")
    if sep and re.fullmatch(r"[a-z][\w-]*", head):
        candidates += [rest, *rest.split(",")]
    candidates += [value.rpartition(":")[0], value.rpartition("?")[0]]
    seen, out = set(), []
    for c in candidates:
        p = Path(c).expanduser()
        if c and p.exists() and p.resolve() not in seen:
            seen.add(p.resolve())
            out.append(p)
    return out


def _media(path: Path) -> bool:
    """An image or video: what a command reads from an input folder."""
    from byel.data.formats import IMAGE_EXTS, VIDEO_EXTS  # late: byel.data loads OpenCV

    return path.suffix.lower() in IMAGE_EXTS | VIDEO_EXTS


def check_output(path: str | Path, *, folder: bool, what: str = "--out",
                 inputs: dict[str, list] | None = None, inside_inputs_ok: bool = False) -> Path:
    """Refuse an output location that cannot work: a file where a folder is expected (or the
    reverse), a place this user cannot write, or one in the way of the command's own inputs
    (`inputs`: option name -> values): an output may not be an input, hold one (an output folder
    around an input: what it writes could replace input files, e.g. annotated copies under the
    photos' own names) or lie inside an input folder (it would replace input files or be read
    as input next time). `inside_inputs_ok`: a table (e.g. predictions.csv) is never read as
    input and may go inside an input folder, but never over an input file."""
    p = Path(path).expanduser()
    if str(path).strip() == "":
        raise ByelError(f"{what} is empty; give a path")
    if p.exists():
        if folder and not p.is_dir():
            raise ByelError(f"{what} {path} is a file; expected a folder")
        if not folder and p.is_dir():
            raise ByelError(f"{what} {path} is a folder; expected a file name")
    for name, values in (inputs or {}).items():
        for value in values:
            for q in spec_paths(value):
                if same_path(q, p):
                    raise ByelError(f"{what} {path} is also this command's input {name} {value}; "
                                    "choose another output path")
                if lies_inside(q, p):
                    raise ByelError(f"the input {name} {value} lies inside the output {what} {path}: what this "
                                    "command writes there could replace it or be read as input next time; "
                                    "choose an output path that holds no input")
                if not inside_inputs_ok and q.is_dir() and lies_inside(p, q):
                    raise ByelError(f"{what} {path} lies inside the input {name} {value}: what it writes would "
                                    "replace input files or be read as input next time; choose a path outside it")
                if q.is_dir() and p.is_file() and lies_inside(p, q) and _media(p):  # a table over a photo
                    raise ByelError(f"{what} {path} is one of the images or videos of the input {name} {value}; "
                                    "choose another output path")
    # Writable: the folder itself (or, for a file, the folder it goes in), or the nearest
    # existing folder above it, where the missing ones will be made.
    target = p if folder else p.parent
    probe = target
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise ByelError(f"cannot create {path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise ByelError(f"cannot write {path}: permission denied ({probe} is not writable)")
    if p.is_file() and not os.access(p, os.W_OK) and not folder:
        raise ByelError(f"cannot overwrite {path}: permission denied")
    return p


def check_apart(outputs: list[tuple[str, str | Path, bool]]) -> None:
    """Refuse two outputs of one command in each other's way: (what, path, is a folder) each; the
    same path twice (one would replace the other, or a folder and a file of one name), or a path
    below one that is written as a file. A file inside an output folder is fine."""
    for i, (what_a, a, folder_a) in enumerate(outputs):
        for what_b, b, folder_b in outputs[i + 1:]:
            if same_path(a, b):
                raise ByelError(f"{what_a} {a} and {what_b} {b} are the same path: one would replace the "
                                "other; choose different names")
            for (w_out, out, folder_out), (w_in, inner) in (((what_a, a, folder_a), (what_b, b)),
                                                             ((what_b, b, folder_b), (what_a, a))):
                if not folder_out and lies_inside(inner, out):
                    raise ByelError(f"{w_in} {inner} lies below {w_out} {out}, which is written as a file; "
                                    "choose different paths")


_DEVICE = re.compile(r"(cpu|cuda|mps)(:\d+)?")


def check_device(device: str) -> str:
    """A torch device this machine has: cpu, cuda, cuda:N or mps. Returns it normalised."""
    d = str(device).strip().lower()
    if not _DEVICE.fullmatch(d):
        raise ByelError(f"invalid device {device!r}: use cpu, cuda, cuda:N or mps")
    if d.startswith("cpu"):
        return d
    import torch  # late: only for an accelerator

    if d.startswith("cuda"):
        n = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if n == 0:
            raise ByelError(f"device {device!r} is not available: this torch {torch.__version__} sees no CUDA GPU; "
                            "use --device cpu")
        index = int(d.partition(":")[2] or 0)
        if index >= n:
            raise ByelError(f"device {device!r} does not exist: {n} CUDA GPU(s) visible (cuda:0 … cuda:{n - 1})")
    elif not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ByelError(f"device {device!r} is not available on this machine; use --device cpu")
    return d


def picture_formats() -> list[str]:
    """File extensions (without the dot) a matplotlib figure can be saved as."""
    from matplotlib.figure import Figure

    return sorted(Figure().canvas.get_supported_filetypes())


def check_picture(path: str | Path, what: str = "--out") -> None:
    ext = Path(path).suffix.lower().lstrip(".")
    formats = picture_formats()
    if ext not in formats:
        got = f"the extension .{ext}" if ext else "no extension"
        raise ByelError(f"{what} {path}: cannot write a picture with {got}; use one of "
                        + ", ".join(f".{f}" for f in formats))


# --- run folders ---------------------------------------------------------------------------------
def global_rank() -> int:
    """This process's rank over all processes and nodes, as the launcher set it (0 when not
    launched as one of many): the one place byel asks, valid before and after a Trainer exists.
    Rank 0 checks and locks the run folder (before it starts the other ranks), prints and writes
    reports; Lightning's own child processes carry LOCAL_RANK and NODE_RANK, torchrun and SLURM
    set RANK / SLURM_PROCID."""
    for key in ("RANK", "SLURM_PROCID", "LOCAL_RANK"):
        if os.environ.get(key, "").strip().isdigit():
            rank = int(os.environ[key])
            break
    else:
        rank = 0
    node = os.environ.get("NODE_RANK", "").strip()
    return rank or (int(node) if node.isdigit() else 0)


def run_in(folder: str | Path, markers=RUN_MARKERS) -> str | None:
    """The first marker (a path or glob under folder) that exists, else None."""
    f = Path(folder)
    for m in markers:
        if any(f.glob(m)) if "*" in m else (f / m).exists():
            return m
    return None


def check_run_folder(folder: str | Path, *, resume: bool, overwrite: bool, markers=RUN_MARKERS,
                     resume_hint: str | None = "--resume") -> None:
    """A run folder belongs to one run: refuse one that holds a run unless resuming or replacing it.
    `resume_hint`: how the command continues a run, None for one that cannot (adapt)."""
    if resume or overwrite or global_rank() != 0:
        return
    found = run_in(folder, markers)
    if found:
        if resume_hint is None:
            raise ByelError(f"{folder} already holds a run ({found}); choose another --out, "
                            "or write over it with --overwrite")
        raise ByelError(f"{folder} already holds a run ({found}); continue it with {resume_hint}, "
                        "replace it with --overwrite, or choose another --out")


_HELD: set[str] = set()  # the run folders this process holds the lock of


@contextmanager
def run_lock(folder: str | Path):
    """Hold FOLDER/.lock for the duration: a second run into the same folder is refused at once.
    Re-entrant within a process (the CLI takes it, then the training stage again). A folder
    that did not exist and holds nothing but the lock afterwards is removed again."""
    folder = Path(folder)
    key = os.path.realpath(folder)
    if fcntl is None or global_rank() != 0 or key in _HELD:  # unlocked, or held by an outer call
        yield
        return
    created = not folder.exists()
    folder.mkdir(parents=True, exist_ok=True)
    lock = folder / ".lock"
    f = open(lock, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        f.seek(0)
        holder = f.read().strip()
        f.close()
        raise ByelError(f"{folder} is in use by another byel run{f' (process {holder})' if holder.isdigit() else ''}; "
                        "wait for it to finish or choose another --out") from None
    _HELD.add(key)
    try:
        os.ftruncate(f.fileno(), 0)
        with naming(lock):  # unbuffered: a full disk fails here, naming the file, and not again on close
            os.write(f.fileno(), str(os.getpid()).encode())
        yield
    finally:
        _HELD.discard(key)
        f.truncate(0)
        if created and [p.name for p in folder.iterdir()] == [".lock"]:  # a run refused before writing
            lock.unlink()
            folder.rmdir()
        f.close()  # closing releases the lock
