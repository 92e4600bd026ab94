"""Checkpoints and stops: a run's directory, written so that nothing is lost.

A run writes `runs/<name>/`. Each checkpoint is a directory `ckpt_<step>/` holding the weights
(the policy's `save_weights`: `model.safetensors` for the tiny GPT, a `save_pretrained` folder for
Hugging Face models; FSDP2 adds `shards/`), `trainer.pt` (optimizer, step, every rank's RNG),
`evals.json` (the evaluations before and after RL), `run_id` (which run wrote it) and the resolved
`config.yaml`. It is written under a temporary name and renamed when complete, so a kill at any
moment leaves either the old checkpoint or the new one, never half of one; the file `latest` (also
written by rename) names the newest. Pruning deletes only older checkpoints of the same run, never
the one `latest` names. A directory with `latest` or a `ckpt_*` holds a run, and train.py refuses to
start a new run there without --resume. Resuming takes the newest intact checkpoint: `latest`'s, or,
when that is missing, unreadable or damaged, the next newest, and says what it skipped.

Beside the checkpoints, a run keeps `metrics.jsonl` (MetricsLog: one JSON object per line, each
with its step); a checkpoint keeps the RNG states (rng_state) that make a resumed run continue as
the uninterrupted one would. `GracefulStop` turns Ctrl-C, SIGTERM (schedulers, preemptible machines)
and SIGHUP into a stop at the end of the step in progress, with a checkpoint.

At the end, which checkpoint a command names (eval.py's --ckpt: a ckpt_N, a run directory or its
`latest`) and whether several are the seeds of one recipe.

Left out: cloud storage, asynchronous saving, keeping the best checkpoint by a metric.
"""

import contextlib
import errno
import json
import os
import random
import shutil
import signal
import socket
import threading

import torch
import yaml

LEFTOVER_MARKS = (".tmp-", ".old-")  # names of half-written files and swapped-out checkpoints


class RunError(Exception):
    """A run that cannot start or go on (its directory, its checkpoints): the message says what to
    do, in one line."""


class Diverged(RunError):
    """The weights or the loss are no longer finite: the run stops and keeps its last good
    checkpoint."""


class Stopped(KeyboardInterrupt):
    """A run stopped by a signal after saving its last step: the exit code says which signal (128 +
    its number)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def save_checkpoint(
    run_dir,
    step: int,
    model,
    trainer_state: dict,
    config: dict,
    keep: int = 2,
    temp=None,
    run_id: str = "",
) -> str:
    """Write runs/<name>/ckpt_<step>/ atomically (temp dir, then rename) and point `latest` at it.

    trainer_state's "evals" go to evals.json, the rest to trainer.pt. temp: a directory that already
    holds the weights (FSDP2: every rank's shards and the export, distributed.py), finished here;
    model is then None. keep: this run's checkpoints kept (older ones of the same run_id are
    deleted; another run's never are). A write that fails (a full disk) removes the temporary
    directory; a full disk is a one-line RunError."""
    final = os.path.join(run_dir, f"ckpt_{step}")
    if temp is None:
        temp = final + f".tmp-{os.getpid()}"
        shutil.rmtree(temp, ignore_errors=True)
    try:
        os.makedirs(temp, exist_ok=True)
        _write_checkpoint_files(temp, model, trainer_state, config, run_id)
    except (OSError, RuntimeError) as err:
        shutil.rmtree(temp, ignore_errors=True)
        if is_disk_full(err):
            last = latest_checkpoint(run_dir)
            raise RunError(
                f"no space left writing ckpt_{step}; the last complete checkpoint is "
                f"{os.path.basename(last) if last else 'none'} (free some space, then --resume)"
            ) from None
        raise
    old = None
    # re-saving a step (after a resume): move the old copy aside, never delete it first
    if os.path.exists(final):
        old = final + f".old-{os.getpid()}"
        os.replace(final, old)
    os.replace(temp, final)
    write_atomic(os.path.join(run_dir, "latest"), os.path.basename(final) + "\n")
    if old:
        shutil.rmtree(old, ignore_errors=True)
    older = [
        path for path in list_checkpoints(run_dir) if path != final and read_run_id(path) == run_id
    ]
    for path in older[: max(0, len(older) - (keep - 1))] if keep > 0 else []:
        shutil.rmtree(path, ignore_errors=True)
    return final


def _write_checkpoint_files(temp, model, trainer_state: dict, config: dict, run_id: str):
    if model is not None:
        model.save_weights(temp)
    state = dict(trainer_state)
    write_atomic(os.path.join(temp, "evals.json"), json.dumps(state.pop("evals", {})))
    torch.save(state, os.path.join(temp, "trainer.pt"))
    with open(os.path.join(temp, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    with open(os.path.join(temp, "run_id"), "w") as f:
        f.write(run_id)


def is_disk_full(err: Exception) -> bool:
    """ENOSPC (or a quota), or torch's serializer failing to write (it reports a full disk as a
    RuntimeError from inline_container.cc, without an errno)."""
    if isinstance(err, OSError):
        return err.errno in (errno.ENOSPC, errno.EDQUOT)
    return "inline_container" in str(err) or "file write failed" in str(err)


def write_atomic(path, text: str):
    """Write a small text file under a temporary name, then rename it: readers see the old or the
    new."""
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as f:
        f.write(text)
    os.replace(temp, path)


def read_run_id(checkpoint_dir) -> str:
    try:
        with open(os.path.join(checkpoint_dir, "run_id")) as f:
            return f.read().strip()
    except OSError:
        return ""


def read_evals(checkpoint_dir, trainer_state: dict) -> dict:
    """{"before", "after"}: a checkpoint's evaluations (evals.json; older checkpoints kept them in
    trainer.pt).

    A torn evals.json, or a missing one in a checkpoint that never kept them in trainer.pt, is a
    ValueError: resuming from it would evaluate again and log a row out of order (load_newest_intact
    skips it)."""
    path = os.path.join(checkpoint_dir, "evals.json")
    try:
        with open(path) as f:
            evals = json.load(f)
    except FileNotFoundError:
        if "eval_before" not in trainer_state:
            raise ValueError(f"{path} is missing") from None
        return {
            "before": trainer_state.get("eval_before"),
            "after": trainer_state.get("eval_after"),
        }
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"{path} is unreadable ({type(err).__name__})") from None
    if not isinstance(evals, dict) or not {"before", "after"} <= set(evals):
        raise ValueError(f"{path} does not hold the evaluations before and after RL")
    return evals


def record_evals(checkpoint_dir, evals: dict):
    """Update a checkpoint's evaluations (the final one, measured after its weights were saved)."""
    write_atomic(os.path.join(checkpoint_dir, "evals.json"), json.dumps(evals))


def list_checkpoints(run_dir) -> list[str]:
    """Complete checkpoint directories, oldest first (temporary ones are ignored)."""
    if not os.path.isdir(run_dir):
        return []
    steps = [int(n[5:]) for n in os.listdir(run_dir) if n.startswith("ckpt_") and n[5:].isdigit()]
    return [os.path.join(run_dir, f"ckpt_{s}") for s in sorted(steps)]


def holds_run(run_dir) -> bool:
    """A run directory holds a run when it has a `latest` pointer or a ckpt_* directory."""
    return os.path.exists(os.path.join(run_dir, "latest")) or bool(list_checkpoints(run_dir))


def latest_checkpoint(run_dir):
    """The checkpoint `latest` names, or None when the run has none (or `latest` names nothing
    there)."""
    pointer = os.path.join(run_dir, "latest")
    try:
        with open(pointer) as f:
            name = f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None
    path = os.path.join(run_dir, name)
    return path if name.startswith("ckpt_") and os.path.isdir(path) else None


def resume_candidates(run_dir) -> tuple[list[str], list[str]]:
    """(checkpoints to try, newest first: `latest`'s, then the others; notes on a missing or broken
    `latest`)."""
    found = list_checkpoints(run_dir)[::-1]
    latest, notes = latest_checkpoint(run_dir), []
    if found and latest is None:
        notes.append(f"{os.path.join(run_dir, 'latest')} is missing or names no checkpoint")
    if latest in found:
        found.remove(latest)
        found.insert(0, latest)
    return found, notes


def resolve_checkpoint(path: str) -> str:
    """A checkpoint directory, or a run directory whose `latest` names one."""
    if os.path.isfile(os.path.join(path, "latest")):
        return latest_checkpoint(path) or path
    return path


def clean_leftovers(run_dir):
    """Tidy what interrupted writes left behind: a checkpoint moved aside by a re-save that was
    killed before the new copy took its place goes back (ckpt_N.old-* -> ckpt_N); every other
    *.tmp-* and *.old-* is removed (a disk-full failure otherwise leaves one per retry)."""
    if not os.path.isdir(run_dir):
        return
    for name in sorted(os.listdir(run_dir)):
        path = os.path.join(run_dir, name)
        original = os.path.join(run_dir, name.split(".old-")[0])
        if ".old-" in name and not os.path.exists(original):
            os.replace(path, original)
        elif any(mark in name for mark in LEFTOVER_MARKS):
            shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """metrics.jsonl: one JSON object per line, each with its step; path None (ranks > 0) writes
    nothing.

    Resuming keeps what the checkpoint accounts for: the rows up to its step, and at its step only
    the first row (the training step's) unless final_recorded (the checkpoint's evals.json holds the
    final evaluation, whose row follows): a kill between the final evaluation's row and its record,
    or a resume that evaluates again, never duplicates a row. A torn last line (a kill mid-write) is
    dropped with a note; a damaged line before it is a RunError that names the line. Rows are never
    reordered: a row whose step goes back is an error too."""

    def __init__(self, path, resume_step=None, log=print, final_recorded=True):
        self.path = path
        if path is None:
            return
        # drop what was logged after the checkpoint
        if resume_step is not None and os.path.exists(path):
            kept = self._rows_to_keep(path, resume_step, final_recorded, log)
            with open(path, "w") as f:
                f.writelines(kept)
        elif resume_step is None:
            open(path, "w").close()

    @staticmethod
    def _rows_to_keep(path, resume_step, final_recorded, log) -> list[str]:
        with open(path, "rb") as f:
            lines = [line.decode("utf-8", "replace") for line in f if line.strip()]
        kept, at_resume_step, last_step = [], 0, None
        for number, line in enumerate(lines, start=1):
            try:
                step = json.loads(line)["step"]
                valid = isinstance(step, int)
            except (json.JSONDecodeError, KeyError, TypeError):
                valid = False
            if not valid:
                if number < len(lines):
                    raise RunError(
                        f"{path}:{number} is not valid JSON with an integer step; fix or remove "
                        "that line, then --resume"
                    )
                log(f"{path}: dropped a torn last line (line {number})")
                continue
            if last_step is not None and step < last_step:
                raise RunError(
                    f"{path}:{number} goes back from step {last_step} to {step}; rows are out of "
                    "order: fix or remove the line, then --resume"
                )
            last_step = step
            at_resume_step += step == resume_step
            if step < resume_step or (
                step == resume_step and (at_resume_step == 1 or final_recorded)
            ):
                kept.append(line if line.endswith("\n") else line + "\n")
        return kept

    def write(self, step, metrics):
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")


class GracefulStop:
    """Ctrl-C (SIGINT), SIGTERM and SIGHUP. Inside `deferred()` (the training steps) the first one
    asks the run to stop at the end of the step in progress: `requested` is set, and train.py saves
    that step and stops. A second one, or the first one outside `deferred()` (an evaluation, where
    stopping loses nothing the last checkpoint does not hold), raises KeyboardInterrupt at once.
    Handlers are installed only in the main thread."""

    SIGNALS = ("SIGINT", "SIGTERM", "SIGHUP")

    def __init__(self, log=print):
        self.log, self.requested, self.deferring, self.previous = log, None, False, {}

    def __enter__(self):
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                if hasattr(signal, name):
                    number = getattr(signal, name)
                    self.previous[number] = signal.signal(number, self._handle)
        return self

    def __exit__(self, *exc):
        for number, handler in self.previous.items():
            signal.signal(number, handler)

    def _handle(self, number, frame):
        if self.deferring and self.requested is None:
            self.requested = number
            self.log(
                f"\n{signal.Signals(number).name}: stopping after the step in progress, with a "
                "checkpoint (again to stop at once, without one)"
            )
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def deferred(self):
        self.deferring = True
        try:
            yield self
        finally:
            self.deferring = False


# ---------------------------------------------------------------------- starting and resuming a run

LOCK_FILE = "lock"  # in the run directory: flock'ed by the run there (its pid and host inside)
_held_locks = {}  # real path of a run directory -> the open file whose lock this process holds


def lock_run_dir(run_dir: str):
    """Take the run directory's exclusive lock, or refuse in one line naming the process that holds
    it.

    flock on runs/<name>/lock: taken atomically, held while this process lives and released by the
    OS when it ends, however it ends (a SIGKILL leaves no stale lock to clean). Re-entrant within a
    process (the tests and the notebook run several trainings in one). Under torchrun rank 0 alone
    takes it."""
    key = os.path.realpath(run_dir)
    if key in _held_locks:
        return
    try:
        import fcntl
    except ImportError:  # no flock (Windows): runs are not protected from each other
        return
    os.makedirs(run_dir, exist_ok=True)
    handle = open(os.path.join(run_dir, LOCK_FILE), "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.seek(0)
        holder = handle.read().split() or ["unknown", "?"]
        handle.close()
        raise RunError(
            f"{run_dir} is in use by another run (pid {holder[0]} on {holder[-1]}): wait for it to "
            f"end, or give this run its own --run.name"
        ) from None
    handle.seek(0)
    handle.truncate()
    handle.write(f"{os.getpid()} {socket.gethostname()}\n")
    handle.flush()
    _held_locks[key] = handle


def unlock_run_dir(run_dir: str):
    """Release this process's lock on a run directory (a process that ends releases it anyway)."""
    handle = _held_locks.pop(os.path.realpath(run_dir), None)
    if handle is not None:
        handle.close()  # closing the file releases the flock


def prepare_run_dir(run_dir: str, resume: bool, config: dict, main_rank: bool) -> str:
    """runs/<name>/, locked by this run (rank 0), refusing to start a new run over an earlier one,
    with the resolved config.yaml in it (a run resumed from a checkpoint writes it once one loads:
    write_config). An explicit --resume of a run that was never started names the runs there."""
    if resume:
        check_resume_target(run_dir)
    try:
        if main_rank:  # before anything is written: two runs started at once cannot both pass
            lock_run_dir(run_dir)
        if not resume and holds_run(run_dir):  # never overwrite an earlier run's checkpoints
            raise RunError(
                f"{run_dir} already holds a run: add --resume to continue it, or give this run "
                f"its own --run.name"
            )
        if os.path.isdir(os.path.join(run_dir, "latest")):
            raise RunError(
                f"{os.path.join(run_dir, 'latest')} is a directory, not the file that names the "
                "newest checkpoint: move it away, then --resume"
            )
        os.makedirs(run_dir, exist_ok=True)
        if main_rank:
            clean_leftovers(run_dir)
        if main_rank and not (resume and list_checkpoints(run_dir)):
            write_config(run_dir, config)
    except OSError as err:
        raise RunError(
            f"run.out_dir: cannot write the run directory {run_dir} ({err.strerror})"
        ) from None
    return run_dir


def write_config(run_dir: str, config: dict):
    """The run's resolved settings, runs/<name>/config.yaml (each checkpoint keeps its own too)."""
    write_atomic(os.path.join(run_dir, "config.yaml"), yaml.safe_dump(config, sort_keys=False))


def check_resume_target(run_dir: str):
    """An explicit --resume of a directory where no run ever started (a misspelt --run.name) is an
    error that names the runs that do exist beside it; a run stopped before its first checkpoint
    (its config.yaml is there) starts fresh.
    """
    if holds_run(run_dir) or os.path.isfile(os.path.join(run_dir, "config.yaml")):
        return
    out_dir = os.path.dirname(os.path.normpath(run_dir)) or "."
    runs = sorted(
        name
        for name in (os.listdir(out_dir) if os.path.isdir(out_dir) else [])
        if not name.startswith(("_", ".")) and os.path.isdir(os.path.join(out_dir, name))
    )
    raise RunError(
        f"--resume: no run in {run_dir}; runs in {out_dir}: {', '.join(runs) or 'none'} (drop "
        "--resume to start a new run)"
    )


def load_newest_intact(candidates, policy, config: dict, log) -> str:
    """The first of the checkpoints (newest first) whose weights and trainer state load; the policy
    holds its weights. Each one skipped is named; none intact is an error, never a silent fresh
    start."""
    skipped = []
    for candidate in candidates:
        try:
            policy.load_weights(candidate)
            state = torch.load(
                os.path.join(candidate, "trainer.pt"),
                weights_only=False,
                mmap=True,
                map_location="cpu",
            )
            read_evals(candidate, state)
        except Exception as err:  # truncated, deleted or garbage files: try the next one
            skipped.append(candidate)
            log(
                f"--resume: skipped {candidate}: "
                f"{str(err).splitlines()[0][:160] if str(err) else type(err).__name__}"
            )
            continue
        try:
            with open(os.path.join(candidate, "config.yaml")) as f:
                saved = flatten(yaml.safe_load(f) or {})
        except (OSError, yaml.YAMLError):
            saved = {}
            log(
                f"--resume: {candidate}'s config.yaml is unreadable: its settings cannot be "
                "compared"
            )
        now = flatten(config)
        changed = [
            f"{key} {saved.get(key)!r} -> {now.get(key)!r}"
            for key in sorted(set(saved) | set(now))
            if saved and key != "run.resume" and saved.get(key) != now.get(key)
        ]
        if changed:
            log(f"--resume: settings differ from {candidate}'s: " + "; ".join(changed))
        if saved and saved.get("run.threads") != now.get("run.threads"):
            log(
                f"--resume: run.threads {saved.get('run.threads')} -> {now.get('run.threads')} "
                "changes the trajectory: a resumed run repeats the uninterrupted one's numbers "
                "only at the same thread count"
            )
        return candidate
    run_dir = os.path.dirname(candidates[0])
    raise RunError(
        f"--resume: no checkpoint in {run_dir} loads (skipped "
        f"{', '.join(os.path.basename(c) for c in skipped)}, for the reasons above): if the model "
        f"settings changed, resume with the run's own (--config {run_dir}/config.yaml); if the "
        "files are damaged, move the run away to start it afresh"
    )


def flatten(settings: dict) -> dict:
    return {
        f"{section}.{key}": value
        for section, values in settings.items()
        if isinstance(values, dict)
        for key, value in values.items()
    }


# ------------------------------------------------------- which checkpoint a command names (eval.py)

# config keys that say where and how a run ran, not what it trained: one recipe's seeds may differ
NOT_RECIPE = (
    "run.seed",
    "run.name",
    "run.out_dir",
    "run.device",
    "run.threads",
    "run.checkpoint_every",
    "run.keep_checkpoints",
    "run.resume",
    "run.progress",
    "run.distributed",
)


def checkpoint_dir(path: str) -> str:
    """The checkpoint a --ckpt names: a ckpt_N directory, a run directory (its `latest`), or the
    `latest` file itself."""
    if not os.path.exists(path):
        raise ValueError(f"--ckpt {path}: no such file or directory")
    if os.path.isfile(path):
        found = latest_checkpoint(os.path.dirname(os.path.abspath(path)))
        if os.path.basename(path) != "latest" or found is None:
            raise ValueError(
                f"--ckpt {path} is a file but not a run's `latest` naming a checkpoint"
            )
        return found
    if os.path.exists(os.path.join(path, "latest")) or list_checkpoints(path):
        found = latest_checkpoint(path) or (list_checkpoints(path) or [None])[-1]
        if found is None:
            raise ValueError(
                f"--ckpt {path}: the run's `latest` names no checkpoint and it holds no ckpt_N"
            )
        return found
    if not os.path.isfile(os.path.join(path, "config.yaml")):
        raise ValueError(
            f"--ckpt {path} is neither a checkpoint (a ckpt_N with config.yaml) nor a run "
            f"directory "
            f"(with latest or ckpt_N)"
        )
    if not any(name.endswith(".safetensors") for name in os.listdir(path)):
        raise ValueError(
            f"--ckpt {path} holds no checkpoint: a config.yaml but no weights (*.safetensors) and "
            "no ckpt_N (a run stopped before its first checkpoint leaves just that)"
        )
    return path


def recipe_differences(checkpoints: list[str]) -> list[str]:
    """The config keys (section.key) whose values differ between the checkpoints, bookkeeping
    (NOT_RECIPE) aside."""
    flat = []
    for path in checkpoints:
        with open(os.path.join(path, "config.yaml")) as f:
            settings = flatten(yaml.safe_load(f) or {})
        flat.append({key: json.dumps(value, sort_keys=True) for key, value in settings.items()})
    keys = sorted(set().union(*flat) - set(NOT_RECIPE))
    return [key for key in keys if len({values.get(key) for values in flat}) > 1]


def run_name_of(checkpoint: str) -> str:
    """maze for runs/maze/ckpt_120: the run a checkpoint belongs to, named for the default --out."""
    path = os.path.normpath(os.path.abspath(checkpoint))
    name = os.path.basename(path)
    return os.path.basename(os.path.dirname(path)) if name.startswith("ckpt_") else name


def checkpoint_label(checkpoint: str, sep: str = "_step") -> str:
    """maze_step120 for runs/maze/ckpt_120, the default --out's name (sep " step ": maze step 120,
    for titles); a checkpoint directory not named ckpt_N is just its name."""
    name = os.path.basename(os.path.normpath(checkpoint))
    step = name[len("ckpt_") :] if name.startswith("ckpt_") else ""
    return run_name_of(checkpoint) + (f"{sep}{step}" if step.isdigit() else "")
