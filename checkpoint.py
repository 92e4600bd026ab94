"""Checkpoints: a run's directory, written so that nothing is lost.

A run writes `runs/<name>/`. Each checkpoint is a directory `ckpt_<step>/` holding the weights
(the policy's `save_weights`: `model.safetensors` for the tiny GPT, a `save_pretrained` folder for
Hugging Face models; FSDP2 adds `shards/`), `trainer.pt` (optimizer, step, every rank's RNG) and
the resolved `config.yaml`. It is written under a temporary name and renamed when complete, so a
kill at any moment leaves either the old checkpoint or the new one, never half of one; the file
`latest` (also written by rename) names the newest. A directory with `latest` or a `ckpt_*` holds a
run, and train.py refuses to start a new run there without --resume. Beside the checkpoints, a run
keeps `metrics.jsonl` (MetricsLog: one JSON object per line, each with its step), and a checkpoint
keeps the RNG states (rng_state) that make a resumed run continue as the uninterrupted one would.

Left out: cloud storage, asynchronous saving, keeping the best checkpoint by a metric.
"""
import json
import os
import random
import shutil

import torch
import yaml


def save_checkpoint(run_dir, step: int, model, trainer_state: dict, config: dict, keep: int = 2,
                    temp=None) -> str:
    """Write runs/<name>/ckpt_<step>/ atomically (temp dir, then rename) and point `latest` at it.

    temp: a directory that already holds the weights (FSDP2: every rank's shards and the export,
    distributed.py), finished here; model is then None.
    """
    final = os.path.join(run_dir, f"ckpt_{step}")
    if temp is None:
        temp = final + f".tmp-{os.getpid()}"
        shutil.rmtree(temp, ignore_errors=True)
        os.makedirs(temp)
    if model is not None:
        model.save_weights(temp)
    torch.save(trainer_state, os.path.join(temp, "trainer.pt"))
    with open(os.path.join(temp, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    if os.path.exists(final):  # re-saving a step (e.g. after a resume): swap out the old copy
        shutil.rmtree(final)
    os.replace(temp, final)
    write_atomic(os.path.join(run_dir, "latest"), os.path.basename(final) + "\n")
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def write_atomic(path, text: str):
    """Write a small text file under a temporary name, then rename it: readers see the old or the new."""
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as f:
        f.write(text)
    os.replace(temp, path)


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
    """The checkpoint `latest` names, or None when the run has none."""
    pointer = os.path.join(run_dir, "latest")
    if not os.path.exists(pointer):
        return None
    with open(pointer) as f:
        path = os.path.join(run_dir, f.read().strip())
    return path if os.path.isdir(path) else None


def resolve_checkpoint(path: str) -> str:
    """A checkpoint directory, or a run directory whose `latest` names one."""
    if os.path.isfile(os.path.join(path, "latest")):
        return latest_checkpoint(path) or path
    return path



def rng_state() -> dict:
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class MetricsLog:
    """metrics.jsonl: one JSON object per line, each with its step; path None (ranks > 0) writes nothing."""

    def __init__(self, path, resume_step=None):
        self.path = path
        if path is None:
            return
        if resume_step is not None and os.path.exists(path):  # drop what was logged after the checkpoint
            with open(path) as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
            with open(path, "w") as f:
                f.writelines(kept)
        elif resume_step is None:
            open(path, "w").close()

    def write(self, step, metrics):
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
