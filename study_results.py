"""Where a study's runs keep their results: job claims, result keys, stored results, the archive.

A run directory records what it is for (JOB_FILE); a finished run's small result (its
evaluation, the training metrics the report reads, and the settings it was made with) goes to
results_dir/<run>/result.json, optionally one git commit per run, so a sweep continues on a fresh
clone. A directory or result made with other settings is an error naming the keys, never reused.
"""

import hashlib
import json
import os
import platform
import subprocess
import tarfile

import torch

import plots
from checkpoint import write_atomic
from study_plan import N_RESPONSES, StudyError, arm_schedule
from study_report import EVAL_FILE, RESULT_FILE, TRAIN_METRICS

REPO = os.path.dirname(os.path.abspath(__file__))
JOB_FILE = "study_job.json"


def claim_job(run_dir: str, key: dict):
    """Record what a run directory is for; a directory made with other settings is an error, never
    reused."""
    path = os.path.join(run_dir, JOB_FILE)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != key:
            changed = sorted(
                name
                for name in set(_as_dict(old)) | set(_as_dict(key))
                if _as_dict(old).get(name) != _as_dict(key).get(name)
            )
            raise StudyError(
                f"{run_dir} holds a run made with other settings ({', '.join(changed)}); "
                f"use another --out or delete it"
            )
        return
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        raise StudyError(
            f"{run_dir} exists but is not a run of this study ({JOB_FILE} missing); "
            f"use another --out or delete it"
        )
    os.makedirs(run_dir, exist_ok=True)
    write_atomic(path, json.dumps(key))


def _as_dict(key: dict) -> dict:
    args = key["train_args"]
    return {**dict(zip(args[::2], args[1::2])), **{f"eval {k}": v for k, v in key["eval"].items()}}


def result_key(
    config: str,
    defaults: list[str],
    overrides: list[str],
    arm: str,
    seed: int,
    steps: int,
    eval_key: dict,
) -> dict:
    """What a stored result was made with, free of this machine's paths: a continuation must match
    it."""
    return {
        "config": os.path.relpath(config, REPO),
        "study_defaults": defaults,
        "overrides": overrides,
        "arm": arm,
        "seed": seed,
        "steps": steps,
        "responses_per_prompt": N_RESPONSES,
        "schedule": arm_schedule(arm, steps),
        "eval": eval_key,
    }


def stored_result(results_dir: str, name: str, key: dict) -> bool:
    """True when results_dir holds this run's result; one made with other settings is an error."""
    path = os.path.join(results_dir, name, RESULT_FILE)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        old = json.load(f)["key"]
    if old != key:
        changed = sorted(name for name in set(old) | set(key) if old.get(name) != key.get(name))
        raise StudyError(
            f"{path} holds a result made with other settings ({', '.join(changed)}); "
            f"use another --results-dir"
        )
    return True


def store_result(run_dir: str, results_dir: str, name: str, key: dict, commit: bool):
    """Keep a finished run's small result: its evaluation, the metrics the report reads, and how it
    was made."""
    with open(os.path.join(run_dir, EVAL_FILE)) as f:
        evaluation_result = json.load(f)
    kept = ("step", *TRAIN_METRICS)
    rows = [
        {k: v for k, v in row.items() if k in kept or k.startswith("eval/pass@")}
        for row in plots.read_metrics(run_dir)
    ]
    path = os.path.join(results_dir, name, RESULT_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, json.dumps({"key": key, "eval": evaluation_result, "metrics": rows}))
    # one commit per run, in the repository that holds results_dir: a sweep continues from what is
    # committed
    if commit:
        git = lambda *command: subprocess.run(
            ["git", "-C", os.path.dirname(path), *command], capture_output=True, text=True
        )
        git("add", "-f", path)
        done = git("commit", "-q", "-m", f"Study result: {name}", "--", path)
        if done.returncode != 0:
            raise StudyError(
                f"could not commit {path}: {(done.stderr or done.stdout).strip()[:200]}"
            )


def machine(device) -> dict:
    """Where a run ran (results from machines whose floats differ are flagged in RESULTS.md)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(
                (line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu
            )
    except OSError:
        pass
    accelerator = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "device": accelerator,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def file_sha1(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:12]


def pack(results_dir: str, archive: str) -> str:
    """One .tar.gz of every stored result (to carry a sweep's results off a lent machine)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(results_dir, arcname=os.path.basename(os.path.normpath(results_dir)))
    return archive
