"""Optional experiment trackers: metrics.jsonl's rows, also sent to TensorBoard or Weights & Biases.

`open_tracker(kind, run_dir, settings)` returns an object with `.log(step, row)`, `.close()`:
  none         does nothing (the default; metrics.jsonl is always written by train.py)
  tensorboard  event files in run_dir itself, so `tensorboard --logdir runs` lists each run by its
               name (the CleanRL layout); the settings go in as a text summary named "config"
  wandb        a Weights & Biases run named after run_dir, files under run_dir/wandb, the settings
               as the run's config; WANDB_MODE=offline (or `wandb offline`) keeps it on disk, and
               WANDB_PROJECT picks the project ("passk" by default)
Only numbers are logged (a row's strings, such as the estimator's phase, stay in metrics.jsonl);
TensorBoard stores them as float32, as its scalar summaries do. Neither package is required by
passk: asking for a tracker whose package is missing is a one-line ConfigError naming it.

Left out on purpose: images (the PNGs stay in the run directory), other trackers, and resuming a
wandb run by id (a resumed passk run opens a new wandb run that starts after its checkpoint).
"""

import importlib
import json
import numbers
import os

import config

TRACKERS = ("none", "tensorboard", "wandb")


def _require(package: str, kind: str):
    """Import `package`, or a one-line ConfigError that says how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError:
        message = f"run.tracker {kind} needs the '{package}' package: pip install {package}"
        raise config.ConfigError(message) from None


def numbers_of(row: dict) -> dict:
    """The row's numeric values as floats (bools as 0/1); strings, lists and None are left out."""
    return {key: float(value) for key, value in row.items() if isinstance(value, numbers.Real)}


class NoTracker:
    def log(self, step: int, row: dict):
        pass

    def close(self):
        pass


class TensorBoardTracker:
    def __init__(self, run_dir: str, settings: dict, resume_step=None):
        _require("tensorboard", "tensorboard")  # torch's writer needs it; say so before torch does
        from torch.utils.tensorboard import SummaryWriter

        # a resumed run logs the steps after its checkpoint again: TensorBoard drops the old ones
        purge_step = None if resume_step is None else resume_step + 1
        self.writer = SummaryWriter(log_dir=run_dir, purge_step=purge_step)
        text = json.dumps(settings, indent=2, sort_keys=True, default=str)
        self.writer.add_text("config", "```\n" + text + "\n```", global_step=0)

    def log(self, step: int, row: dict):
        for key, value in numbers_of(row).items():
            self.writer.add_scalar(key, value, global_step=step)
        self.writer.flush()  # one row per RL step: flushing costs nothing and loses nothing

    def close(self):
        self.writer.close()


class WandbTracker:
    def __init__(self, run_dir: str, settings: dict):
        self.wandb = wandb = _require("wandb", "wandb")
        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", "passk"),
            dir=run_dir,
            name=os.path.basename(os.path.normpath(run_dir)),
            config=settings,
        )

    def log(self, step: int, row: dict):
        self.run.log(numbers_of(row), step=step)

    def close(self):
        self.run.finish()
        self.wandb.teardown()  # finish() may return before wandb's service has written the run out


def open_tracker(kind: str, run_dir: str, settings: dict, resume_step=None):
    """The tracker `kind` ("none", "tensorboard" or "wandb") writing for the run in run_dir.

    resume_step: the checkpoint's step when the run resumes (metrics.jsonl keeps the rows up to
    it); TensorBoard then discards what it holds after that step, as metrics.jsonl does.
    """
    if kind == "none":
        return NoTracker()
    if kind == "tensorboard":
        return TensorBoardTracker(run_dir, settings, resume_step)
    if kind == "wandb":
        return WandbTracker(run_dir, settings)
    raise config.ConfigError(f"run.tracker must be one of {', '.join(TRACKERS)}, got {kind!r}")
