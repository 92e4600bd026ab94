"""The paper in miniature: a seeded, side-by-side study of Pass@1 and Pass@k training on mazes.

    python experiments.py --config configs/maze.yaml                 # core arms x 6 seeds -> RESULTS.md
    python experiments.py --config configs/maze.yaml --extended      # + the Sec. 4 designs and k = 2, 8
    python experiments.py --config configs/maze.yaml --commit        # commit each finished run's result
    python experiments.py --config configs/maze.yaml --device cuda --jobs 16 --pack study.tar.gz   # one GPU
    python experiments.py --config configs/maze.yaml --report-only   # RESULTS.md from the stored results alone
    python experiments.py --config configs/tiny.yaml --arms pass1,passk_analytic --seeds 1 --steps 2 \\
        --eval-problems 4 --eval-samples 8 --out /tmp/study --results /tmp/study/RESULTS.md

The study (Chen et al. 2025, arXiv 2508.10751; the claims are the numbered CLAIMS below):
1. Warm start once: warm_start.py's `warm_start` on the config (cached in <out>/../_warmstart/,
   with --run.threads threads), or --model.init CKPT. Every arm and seed starts RL from that one
   checkpoint, so the seed interval measures RL's variability, not the warm start's, and the
   verdicts hold for that one warm start.
2. Arms differ only in the advantage: the same steps, prompts per step, N = 16 responses per
   prompt, learning rate and everything else. Core: pass1 (grpo, Eq. 1-3), passk_full (Alg. 1),
   passk_bootstrap (Alg. 2), passk_analytic (Eq. 11-15), passk_then_pass1 (passk_analytic for the
   first half of the steps, then grpo); k = 4; and best_of_n (Tang et al. 2025, verl's grpo_passk),
   the "Pass@k" method researchers compare against. Extended (--extended): passk_combined (Eq. 18),
   entropy_adaptive (Sec. 4.2.3), passk_analytic with k = 2 and k = 8, and rs_grpo (Risk-Sensitive
   GRPO, beta = 2).
   No arm is tuned on its own. Runs are paired: seed s of every arm starts from the same warm start
   and sees the same prompt stream and sampling seeds (keyed by run seed, step and prompt index), so
   the per-seed difference between two arms removes the noise the arms share.
   Each (arm, seed) is one subprocess (`python experiments.py --job ...`, single-threaded) that
   trains with train.train, then evaluates; --jobs of them run side by side (on one GPU too, with
   --device cuda). A finished run's small result (its evaluation, the metrics the report needs, the
   machine it ran on) goes to --results-dir (results/study beside RESULTS.md), and with --commit into
   git, one commit per run; a run whose result is stored is skipped, so a sweep continues on a fresh
   clone where runs/ is gone. An interrupted run continues from its checkpoint (--resume); a run
   directory or a stored result made with other settings is an error, never silently reused.
   Any --section.key value override (train.py's) applies to the warm start and every run.
3. Measurements. After training, on held-out mazes at the training sizes and at the next odd size
   above them (generalisation): pass@k for k = 1..32 from 32 samples per maze at temperature 1.0,
   top-p 0.95 (the paper's setting), with the unbiased estimator; the per-maze correct counts are
   saved so intervals can be recomputed without sampling again. The held-out mazes are task.seed's
   held-out set, the same for every run seed, which no SFT or RL stream ever draws.
   Over training (train.py's metrics.jsonl): train/reward, train/entropy, train/wrong_distinct_frac
   (distinct answers among wrong responses, the paper's measure of exploration),
   train/all_agree_frac and the in-training held-out eval/pass@1.
4. RESULTS.md (study_report.py): the command, wall time, git revision and machines; per arm mean
   and 95 % interval over seeds (Student t; with one seed, a bootstrap over mazes instead); the
   plots; and a verdict per claim by the rule in `study_report.judge`: a claim "A beats B" takes the
   mean of the per-seed differences A - B with its 95 % paired t-interval (Welch's unpaired interval
   is shown beside it); confirms when the interval lies above 0, refutes when it lies below 0, and
   cannot tell when it holds 0 (then its half-width is the smallest effect the design could see),
   when an arm was not run, or with fewer than 2 common seeds.

Left out on purpose: any per-arm tuning, early stopping, and a correction for the several claims
tested at once (each verdict stands alone).
"""
import argparse
import concurrent.futures
import hashlib
import json
import math
import os
import platform
import shlex
import signal
import subprocess
import sys
import tarfile
import threading
import time

import torch

import eval as evaluation
import tasks
import train
from warm_start import warm_start
from checkpoint import latest_checkpoint, resolve_checkpoint, write_atomic
from config import ConfigError, build_policy, build_task, load_for_eval, parse_args, pick_device
from study_report import EVAL_FILE, RESULT_FILE, TRAIN_METRICS, git_state, mean_pass_at_k, write_report

# ----------------------------------------------------------------------------- the study's knobs
# Sizing, measured (each stored result records its CPU and wall seconds): on configs/maze.yaml (B = 64 prompts,
# N = 16, 60 RL steps) one run takes 8.4-10.0 single-thread CPU minutes to train and 0.4-0.6 to evaluate; the warm
# start (400 SFT steps) 2.2 min once, cached. The default sweep, 6 arms x 6 seeds = 36 runs, is about 350 CPU
# minutes: about 3 h at 2 jobs on an idle 2-core machine; other work on the machine stretches it 2-3x.

N_RESPONSES = 16        # N: responses per prompt in every arm (k = 4 needs >= 4 wrong of 16 for any signal)
K = 4                   # k of the Pass@k arms (the paper's smallest)
EXTENDED_KS = (2, 8)    # the extended arms' other k, closed form (claim 5)
STEPS = 60              # RL steps per run: fixed, never a time budget
SEEDS = 6               # seeds per arm
JOBS = 2                # runs side by side, one CPU thread each
EVAL_PROBLEMS = 100     # held-out mazes per set (training sizes; one size larger)
EVAL_SAMPLES = 32       # samples per held-out maze (the paper's 32): pass@k for k = 1..32
EVAL_TEMPERATURE = 1.0  # the paper's evaluation setting
EVAL_TOP_P = 0.95
TRAIN_EVAL_EVERY = 10   # in-training held-out pass@1 (train.py's eval) every this many steps
TRAIN_EVAL_PROBLEMS = 64
TRAIN_EVAL_SAMPLES = 4
CHECKPOINT_EVERY = 10   # RL steps between checkpoints: what an interrupted run loses at most

CORE_ARMS = ("pass1", "passk_full", "passk_bootstrap", "passk_analytic", "passk_then_pass1", "best_of_n")
EXTENDED_ARMS = ("passk_combined", "entropy_adaptive", *(f"passk_analytic_k{k}" for k in EXTENDED_KS), "rs_grpo")
ARM_DOCS = {
    "pass1": "Pass@1 training: grpo (Eq. 1-3)",
    "passk_full": f"Pass@{K}, full sampling (Alg. 1)",
    "passk_bootstrap": f"Pass@{K}, bootstrap sampling, N groups (Alg. 2, Eq. 6)",
    "passk_analytic": f"Pass@{K}, closed form (Alg. 3, Eq. 11-15)",
    "passk_then_pass1": f"Pass@{K} closed form for the first half of the steps, then Pass@1 (Table 2)",
    "passk_combined": f"Pass@{K} combined with Pass@1 (Eq. 18)",
    "best_of_n": "Best-of-N (Tang et al. 2025; verl's grpo_passk): only a group's best response, r_max - r_second",
    "rs_grpo": "Risk-Sensitive GRPO (Jiang et al. 2025), beta = 2: (1/beta) log E[exp(beta r)]",
    "entropy_adaptive": f"Pass@1 for the higher-entropy half of a batch, Pass@{K} for the rest (Sec. 4.2.3)",
    **{f"passk_analytic_k{k}": f"Pass@{k}, closed form" for k in EXTENDED_KS},
}

# Each claim: (text, parts, metric's label); a part (better arm, worse arm, metric) says mean(better) > mean(worse).
# pass@k metrics are in-distribution held-out means over mazes; train/* are per-run means over the logged steps
# (reward: all steps, its area under the curve; the others: the second half, where the arms have parted).
CLAIMS = [
    ("Pass@k training improves pass@k over Pass@1 training (Table 7, Fig. 3-5)",
     [("passk_analytic", "pass1", f"in_dist/pass@{K}")]),
    ("the closed form is at least as good as bootstrap, and bootstrap better than full sampling at equal N "
     "(Sec. 2.4)",
     [("passk_analytic", "passk_bootstrap", f"in_dist/pass@{K}"),
      ("passk_bootstrap", "passk_full", f"in_dist/pass@{K}")]),
    ("Pass@k training keeps entropy and answer diversity higher (Sec. 3)",
     [("passk_analytic", "pass1", "train/entropy"), ("passk_analytic", "pass1", "train/wrong_distinct_frac")]),
    ("Pass@k -> Pass@1 reaches a higher pass@1 than Pass@1 training alone (Table 2)",
     [("passk_then_pass1", "pass1", "in_dist/pass@1")]),
    ("larger k learns more slowly at the same learning rate (Sec. 2, App. A)",
     [(f"passk_analytic_k{EXTENDED_KS[0]}", "passk_analytic", "train/reward"),
      ("passk_analytic", f"passk_analytic_k{EXTENDED_KS[1]}", "train/reward")]),
    ("combined and entropy-adaptive beat plain Pass@k training (Sec. 4.2)",
     [("passk_combined", "passk_analytic", f"in_dist/pass@{K}"),
      ("entropy_adaptive", "passk_analytic", f"in_dist/pass@{K}")]),
]
# the earlier, smaller study (3 seeds x 40 steps x 32 mazes a step, constant lr, unpaired Welch intervals, at
# 11294ce): quoted for the claims whose arms this study does not run by default (--extended runs them)
EARLIER = ("docs/results/40-steps.md", {
    5: "training reward k = 2 22.9 %, k = 4 21.5 %, k = 8 19.5 %; k = 2 vs 4 +1.35 points (95 % Welch CI -0.51 to "
       "+3.20), k = 4 vs 8 +2.00 (+0.35 to +3.66): cannot tell",
    6: "pass@4 of combined -1.64 points against the closed form (95 % Welch CI -8.24 to +4.96), of entropy-adaptive "
       "+0.24 (-6.22 to +6.70): cannot tell"})

# keys the runner sets for every run; the option that sets them instead
RUNNER_KEYS = {"rl.steps": "--steps", "rl.responses_per_prompt": "N_RESPONSES in experiments.py",
               "rl.advantage": "--arms", "rl.k": "--arms", "rl.schedule": "--arms", "run.seed": "--seeds",
               "run.name": "--arms", "run.out_dir": "--out", "run.resume": "the runner"}
WARM_START_ONLY = ("run.threads",)  # the warm start's threads (0 = torch's default); every run uses one
REPO = os.path.dirname(os.path.abspath(__file__))
JOB_FILE = "study_job.json"


class StudyError(ValueError):
    """A bad study setup: the message names the problem, in one line."""


# ----------------------------------------------------------------------------- arms and runs

def arm_schedule(arm: str, steps: int) -> list[dict]:
    """The arm's advantage schedule as train.py's rl.schedule: [{until_step, advantage, k}] (best_of_n and
    rs_grpo ignore k)."""
    if arm == "pass1":
        return [{"until_step": steps, "advantage": "grpo", "k": 1}]
    if arm == "passk_then_pass1":
        return [{"until_step": steps // 2, "advantage": "passk_analytic", "k": K},
                {"until_step": steps, "advantage": "grpo", "k": 1}]
    if arm.startswith("passk_analytic_k"):
        return [{"until_step": steps, "advantage": "passk_analytic", "k": int(arm[len("passk_analytic_k"):])}]
    return [{"until_step": steps, "advantage": arm, "k": K}]


def run_name(arm: str, seed: int) -> str:
    return f"{arm}_s{seed}"


def study_defaults(cfg) -> list[str]:
    """Overrides the study applies before the user's: train.py's in-training eval and checkpoints, kept cheap."""
    samples, problems = TRAIN_EVAL_SAMPLES, min(TRAIN_EVAL_PROBLEMS, cfg.task.n_heldout)
    return ["--eval.every", str(TRAIN_EVAL_EVERY), "--eval.n_problems", str(problems),
            "--eval.n_samples", str(samples), "--eval.ks", json.dumps(evaluation.powers_of_two(samples)),
            "--run.checkpoint_every", str(CHECKPOINT_EVERY)]


def train_args(config: str, defaults: list[str], overrides: list[str], init: str, arm: str, seed: int, steps: int,
               out: str) -> list[str]:
    """train.py's arguments for one run: the config, the study's defaults, the user's overrides, then the arm."""
    return ["--config", config, *defaults, *overrides, "--model.init", init, "--run.seed", str(seed),
            "--run.name", run_name(arm, seed), "--run.out_dir", out, "--run.threads", "1", "--run.progress", "false",
            "--rl.steps", str(steps), "--rl.responses_per_prompt", str(N_RESPONSES),
            "--rl.schedule", json.dumps(arm_schedule(arm, steps))]


def run_overrides(overrides: list[str]) -> list[str]:
    """The user's --section.key overrides (already valid for train.py) as [--key, value, ...] for every run.

    Keys the runner sets are refused by name; run.threads is the warm start's alone (runs use one thread).
    """
    pairs, i = [], 0
    while i < len(overrides):
        key, _, value = overrides[i][2:].partition("=")
        if not value:
            value, i = overrides[i + 1], i + 1
        i += 1
        if key in RUNNER_KEYS:
            raise StudyError(f"--{key} is set by the study for each run (use {RUNNER_KEYS[key]} instead)")
        if key not in WARM_START_ONLY:
            pairs += [f"--{key}", value]
    return pairs


def warm_start_checkpoint(cfg, log=print) -> str:
    """The one checkpoint every arm starts from: model.init if given, else train.py's cached warm start."""
    if cfg.model.init:
        return os.path.abspath(resolve_checkpoint(cfg.model.init))
    if cfg.sft.steps <= 0:
        raise StudyError("the study starts every arm from one warm-start checkpoint: set sft.steps > 0 or model.init")
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = pick_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    policy, tokenizer = build_policy(cfg, device)
    return os.path.abspath(warm_start(cfg, policy, tokenizer, build_task(cfg), device, log))


def checkpoint_step(run_dir: str) -> int:
    latest = latest_checkpoint(run_dir)
    return int(os.path.basename(latest).split("_")[1]) if latest else -1


def training_finished(run_dir: str, steps: int) -> bool:
    """train.py writes summary.md after its last checkpoint: both there means the run is complete."""
    return checkpoint_step(run_dir) >= steps and os.path.exists(os.path.join(run_dir, "summary.md"))


def claim_job(run_dir: str, key: dict):
    """Record what a run directory is for; a directory made with other settings is an error, never reused."""
    path = os.path.join(run_dir, JOB_FILE)
    if os.path.exists(path):
        with open(path) as f:
            old = json.load(f)
        if old != key:
            changed = sorted(name for name in set(_as_dict(old)) | set(_as_dict(key))
                             if _as_dict(old).get(name) != _as_dict(key).get(name))
            raise StudyError(f"{run_dir} holds a run made with other settings ({', '.join(changed)}); "
                             f"use another --out or delete it")
        return
    if os.path.isdir(run_dir) and os.listdir(run_dir):
        raise StudyError(f"{run_dir} exists but is not a run of this study ({JOB_FILE} missing); "
                         f"use another --out or delete it")
    os.makedirs(run_dir, exist_ok=True)
    write_atomic(path, json.dumps(key))


def _as_dict(key: dict) -> dict:
    args = key["train_args"]
    return {**dict(zip(args[::2], args[1::2])), **{f"eval {k}": v for k, v in key["eval"].items()}}


def result_key(config: str, defaults: list[str], overrides: list[str], arm: str, seed: int, steps: int,
               eval_key: dict) -> dict:
    """What a stored result was made with, free of this machine's paths: a continuation must match it."""
    return {"config": os.path.relpath(config, REPO), "study_defaults": defaults, "overrides": overrides, "arm": arm,
            "seed": seed, "steps": steps, "responses_per_prompt": N_RESPONSES, "schedule": arm_schedule(arm, steps),
            "eval": eval_key}


def stored_result(results_dir: str, name: str, key: dict) -> bool:
    """True when results_dir holds this run's result; one made with other settings is an error."""
    path = os.path.join(results_dir, name, RESULT_FILE)
    if not os.path.exists(path):
        return False
    with open(path) as f:
        old = json.load(f)["key"]
    if old != key:
        changed = sorted(name for name in set(old) | set(key) if old.get(name) != key.get(name))
        raise StudyError(f"{path} holds a result made with other settings ({', '.join(changed)}); "
                         f"use another --results-dir")
    return True


def store_result(run_dir: str, results_dir: str, name: str, key: dict, commit: bool):
    """Keep a finished run's small result: its evaluation, the metrics the report reads, and how it was made."""
    with open(os.path.join(run_dir, EVAL_FILE)) as f:
        evaluation_result = json.load(f)
    kept = ("step", *TRAIN_METRICS)
    rows = [{k: v for k, v in row.items() if k in kept or k.startswith("eval/pass@")}
            for row in evaluation.read_metrics(run_dir)]
    path = os.path.join(results_dir, name, RESULT_FILE)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    write_atomic(path, json.dumps({"key": key, "eval": evaluation_result, "metrics": rows}))
    if commit:  # one commit per run, in the repository that holds results_dir: a sweep continues from what is committed
        git = lambda *command: subprocess.run(["git", "-C", os.path.dirname(path), *command], capture_output=True,
                                              text=True)
        git("add", "-f", path)
        done = git("commit", "-q", "-m", f"Study result: {name}", "--", path)
        if done.returncode != 0:
            raise StudyError(f"could not commit {path}: {(done.stderr or done.stdout).strip()[:200]}")


def machine(device) -> dict:
    """Where a run ran (results from machines whose floats differ are flagged in RESULTS.md)."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    accelerator = torch.cuda.get_device_name(device) if device.type == "cuda" else device.type
    return {"cpu": cpu, "cpus": os.cpu_count(), "threads": torch.get_num_threads(), "device": accelerator,
            "torch": torch.__version__, "python": platform.python_version()}


def file_sha1(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.sha1(f.read()).hexdigest()[:12]


def pack(results_dir: str, archive: str) -> str:
    """One .tar.gz of every stored result (to carry a sweep's results off a lent machine)."""
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(results_dir, arcname=os.path.basename(os.path.normpath(results_dir)))
    return archive


# ----------------------------------------------------------------------------- one job: train, then evaluate

def larger_size(max_size: int) -> int:
    return max_size + 2 if max_size % 2 else max_size + 1


def maze_answer_bound(size: int) -> int:
    """Longest possible answer on a size x size maze: a path through every cell, 2 moves per cell, in the tags."""
    cells = ((size + 1) // 2) ** 2
    return 2 * (cells - 1) + len(tasks.answer_tag(""))


def check_eval_settings(cfg, n_problems: int):
    if cfg.task.name != "maze":
        raise StudyError(f"the study evaluates mazes; task.name is {cfg.task.name}")
    if not 1 <= n_problems <= cfg.task.n_heldout:
        raise StudyError(f"--eval-problems {n_problems} must lie in 1..task.n_heldout={cfg.task.n_heldout} (only "
                         f"those are kept out of the warm start's data)")


def heldout_sets(cfg, n_problems: int) -> dict:
    """{'in_dist': ..., 'larger': ...}: each {problems, sizes, max_new_tokens}, mazes no training saw.

    in_dist: the first n_problems held-out mazes of task.seed (the same for every run seed), which the
    warm start's SFT stream and every run's RL stream skip.
    larger: mazes one odd size above task.max_size, which no stream of the training sizes can draw;
    their token budget grows with the longest possible answer, in proportion to the training one.
    """
    check_eval_settings(cfg, n_problems)
    t = cfg.task
    base = build_task(cfg)  # task.seed's held-out set: every run's SFT and RL streams skip it
    size = larger_size(t.max_size)
    larger = tasks.SyntheticTask("maze", tasks.maze_maker(size, size, t.loop_frac), t.seed, n_problems)
    budget = math.ceil(t.max_new_tokens * maze_answer_bound(size) / maze_answer_bound(t.max_size))
    sizes = [s for s in range(t.min_size, t.max_size + 1) if s % 2]
    return {"in_dist": {"problems": base.heldout[:n_problems], "sizes": sizes,
                        "max_new_tokens": t.max_new_tokens},
            "larger": {"problems": larger.heldout, "sizes": [size], "max_new_tokens": budget}}


def evaluate_run(run_dir: str, *, n_problems: int, n_samples: int, heldout_seed: int) -> dict:
    """Correct counts of n_samples samples per held-out maze, both sets, at the paper's temperature and top-p."""
    cfg, policy, tokenizer, _ = load_for_eval(run_dir)
    result = {"run": os.path.basename(os.path.normpath(run_dir)), "seed": cfg.run.seed, "steps": cfg.rl.steps,
              "n_samples": n_samples, "temperature": EVAL_TEMPERATURE, "top_p": EVAL_TOP_P,
              "heldout_seed": heldout_seed, "machine": machine(next(policy.parameters()).device),
              "code": {key: value for key, value in git_state().items() if key in ("head", "code_sha1")},
              "warm_start_sha1": file_sha1(os.path.join(cfg.model.init, "model.safetensors"))
              if os.path.isfile(os.path.join(cfg.model.init, "model.safetensors")) else "", "sets": {}}
    for name, chosen in heldout_sets(cfg, n_problems).items():
        longest = max(len(tokenizer.encode_prompt(p.prompt)) for p in chosen["problems"]) + chosen["max_new_tokens"]
        if longest > policy.config.block_size:
            raise StudyError(f"{name} mazes need {longest} positions but model.block_size is "
                             f"{policy.config.block_size}")
        correct, entropy, length = evaluation.sample_and_score(
            policy, tokenizer, chosen["problems"], cfg.task.name, n=n_samples, max_new_tokens=chosen["max_new_tokens"],
            temperature=EVAL_TEMPERATURE, top_p=EVAL_TOP_P, seed=heldout_seed)
        result["sets"][name] = {"sizes": chosen["sizes"], "max_new_tokens": chosen["max_new_tokens"],
                                "correct": correct, "entropy": entropy, "resp_len": length}
    return result


def run_job(run_dir: str, args: list[str], *, n_problems: int, n_samples: int, heldout_seed: int):
    """The job subprocess: train (or finish training) the run, then evaluate it and write study_eval.json."""
    cfg, _ = parse_args(args)
    wall, cpu = time.time(), time.process_time()
    if not training_finished(run_dir, cfg.rl.steps):
        try:
            train.train(cfg)
        finally:
            train.distributed.teardown()
    train_wall, train_cpu = time.time() - wall, time.process_time() - cpu
    result = evaluate_run(run_dir, n_problems=n_problems, n_samples=n_samples, heldout_seed=heldout_seed)
    result["seconds"] = {"train_wall": train_wall, "train_cpu": train_cpu, "eval_wall": time.time() - wall - train_wall,
                         "eval_cpu": time.process_time() - cpu - train_cpu}
    write_atomic(os.path.join(run_dir, EVAL_FILE), json.dumps(result))
    print(f"evaluated {run_dir}: " + ", ".join(
        f"{name} pass@1 {mean_pass_at_k(s['correct'], n_samples, 1):.3f}" for name, s in result["sets"].items()))


# ----------------------------------------------------------------------------- the sweep

def run_sweep(jobs: list[dict], parallel: int, log=print, finished=None) -> list[str]:
    """Run the jobs, `parallel` subprocesses at a time; returns the failures (run dir and log), [] when all passed.

    finished(job) runs for every job that succeeded, one at a time (it stores, and may commit, the result).
    """
    stop, failures, done, lock = threading.Event(), [], [0], threading.Lock()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}

    def work(job):
        if stop.is_set():
            return
        started = time.time()
        with open(job["log"], "a") as log_file:
            log_file.write(f"\n$ python train.py {shlex.join(job['train_args'])}\n")
            log_file.flush()
            code = subprocess.run(job["command"], stdout=log_file, stderr=subprocess.STDOUT, env=env).returncode
        done[0] += 1
        interrupted = code in (130, -signal.SIGINT)
        if code == 0 and finished is not None:
            with lock:
                finished(job)
        if code != 0:
            failures.append(f"{job['run_dir']} ({'interrupted' if interrupted else f'exit {code}'}, see {job['log']})")
        outcome = "done" if code == 0 else "interrupted (rerun to resume)" if interrupted else "FAILED"
        log(f"[{done[0]}/{len(jobs)}] {job['name']}: {outcome} in {time.time() - started:.0f}s")

    pool = concurrent.futures.ThreadPoolExecutor(max_workers=parallel)
    try:
        for future in concurrent.futures.as_completed([pool.submit(work, job) for job in jobs]):
            future.result()
    except KeyboardInterrupt:  # the children got the same Ctrl-C and save a checkpoint
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    pool.shutdown()
    return failures


def plan(args, overrides: list[str]) -> tuple:
    """(config path, base config, study defaults, run overrides, arms): all checked before any work starts."""
    config = os.path.abspath(args.config)
    base, _ = parse_args(["--config", config, *overrides])
    overrides = run_overrides(overrides)
    base_defaults = study_defaults(base)
    arms = args.arms.split(",") if args.arms else [*CORE_ARMS, *(EXTENDED_ARMS if args.extended else ())]
    unknown = [a for a in arms if a not in ARM_DOCS]
    if unknown:
        raise StudyError(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARM_DOCS)}")
    if args.steps < 2:
        raise StudyError(f"--steps {args.steps}: the Pass@k -> Pass@1 schedule needs at least 2 steps")
    if args.seeds < 1 or args.jobs < 1:
        raise StudyError("--seeds and --jobs must be at least 1")
    if max(K, *EXTENDED_KS) >= N_RESPONSES:
        raise StudyError(f"every k must be below N = {N_RESPONSES}")
    check_eval_settings(base, args.eval_problems)
    if args.eval_samples < 1:
        raise StudyError(f"--eval-samples {args.eval_samples} must be at least 1")
    for arm in arms:  # each arm's runs as train.py will read them (no start yet): errors before the warm start
        parse_args(train_args(config, base_defaults, overrides, "", arm, 0, args.steps, args.out))
    return config, base, base_defaults, overrides, arms


def make_jobs(args, config, base, defaults, overrides, arms, init) -> tuple[list[dict], list[tuple[str, str]]]:
    """(jobs to run, every (arm, stored result) of the study) in seed-major order, so a partial sweep has every arm."""
    out, results_dir = os.path.abspath(args.out), results_directory(args)
    eval_key = {"problems": args.eval_problems, "samples": args.eval_samples, "heldout_seed": base.run.seed,
                "temperature": EVAL_TEMPERATURE, "top_p": EVAL_TOP_P}
    jobs, results = [], []
    for seed in range(args.seeds):
        for arm in arms:
            name = run_name(arm, seed)
            run_dir = os.path.join(out, name)
            key = result_key(config, defaults, overrides, arm, seed, args.steps, eval_key)
            results.append((arm, os.path.join(results_dir, name, RESULT_FILE)))
            if stored_result(results_dir, name, key):
                continue
            args_ = train_args(config, defaults, overrides, init, arm, seed, args.steps, out)
            if not args.report_only:
                claim_job(run_dir, {"train_args": args_, "eval": eval_key})
            resume = ["--resume"] if latest_checkpoint(run_dir) else []
            command = [sys.executable, os.path.join(REPO, "experiments.py"), "--job", run_dir,
                       "--eval-problems", str(args.eval_problems), "--eval-samples", str(args.eval_samples),
                       "--heldout-seed", str(base.run.seed), "--", *args_, *resume]
            jobs.append({"name": name, "run_dir": run_dir, "train_args": args_ + resume, "command": command,
                         "log": os.path.join(run_dir, "job.log"), "key": key})
    return jobs, results


def results_directory(args) -> str:
    return os.path.abspath(args.results_dir or os.path.join(os.path.dirname(os.path.abspath(args.results)),
                                                             "results", "study"))


# ----------------------------------------------------------------------------- CLI

def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False,
                                     epilog="Any --section.key value (train.py's overrides) applies to every run.")
    parser.add_argument("--config", default="configs/maze.yaml", help="base config of every run")
    parser.add_argument("--extended", action="store_true", help="add " + ", ".join(EXTENDED_ARMS))
    parser.add_argument("--arms", default="", help="comma-separated arms instead (known: " + ", ".join(ARM_DOCS) + ")")
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds per arm: 0 .. seeds-1")
    parser.add_argument("--steps", type=int, default=STEPS, help="RL steps per run")
    parser.add_argument("--jobs", type=int, default=JOBS, help="runs side by side (one thread each)")
    parser.add_argument("--out", default="runs/study", help="run directories; the warm start is cached beside it")
    parser.add_argument("--results", default="RESULTS.md", help="the report; its figures go to docs/results/ beside it")
    parser.add_argument("--eval-problems", type=int, default=EVAL_PROBLEMS, help="held-out mazes per set")
    parser.add_argument("--eval-samples", type=int, default=EVAL_SAMPLES, help="samples per held-out maze")
    parser.add_argument("--results-dir", default="", help="finished runs' results (default results/study beside "
                        "--results); a run stored there is not run again")
    parser.add_argument("--commit", action="store_true", help="git-commit each finished run's result as it lands")
    parser.add_argument("--device", default="", help="cuda: every run on the GPU (--jobs of them at once); "
                        "default the config's run.device")
    parser.add_argument("--pack", metavar="ARCHIVE", help="after the sweep, pack the results into one .tar.gz")
    parser.add_argument("--report-only", action="store_true", help="write RESULTS.md from the stored results, "
                        "run nothing (every run of the study must be stored)")
    parser.add_argument("--job", metavar="RUN_DIR", help=argparse.SUPPRESS)  # a job subprocess: train.py args after --
    parser.add_argument("--heldout-seed", type=int, default=0, help=argparse.SUPPRESS)
    if "--" in argv:
        cut = argv.index("--")
        return parser.parse_args(argv[:cut]), argv[cut + 1:]
    return parser.parse_known_args(argv)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, rest = parse(argv)
    try:
        if args.job:
            return run_job(args.job, rest, n_problems=args.eval_problems, n_samples=args.eval_samples,
                           heldout_seed=args.heldout_seed)
        started = time.time()
        if args.device:
            rest = [*rest, "--run.device", args.device]
        config, base, defaults, overrides, arms = plan(args, rest)
        out, results_dir = os.path.abspath(args.out), results_directory(args)
        base.run.out_dir = os.path.dirname(out)  # the warm start is cached in <out>/../_warmstart/
        init = "" if args.report_only else warm_start_checkpoint(base)
        jobs, runs = make_jobs(args, config, base, defaults, overrides, arms, init)
        if args.report_only and jobs:  # a partial sweep: report what is stored, each arm with its own seeds
            runs = [(arm, path) for arm, path in runs if os.path.exists(path)]
            empty = [arm for arm in arms if arm not in {arm for arm, _ in runs}]
            if empty:
                raise StudyError(f"--report-only: no stored result for {', '.join(empty)} in {results_dir}")
            print(f"--report-only: {len(jobs)} runs have no stored result ({', '.join(j['name'] for j in jobs)}); "
                  f"the report covers the {len(runs)} stored, its tables give each arm's seeds", flush=True)
            jobs = []
        print(f"study: {len(arms)} arms x {args.seeds} seeds, {len(runs) - len(jobs)} finished, "
              f"{len(jobs)} to run, {args.jobs} at a time; logs in {out}/<run>/job.log", flush=True)
        store = lambda job: store_result(job["run_dir"], results_dir, job["name"], job["key"], args.commit)
        failures = run_sweep(jobs, args.jobs, log=lambda line: print(line, flush=True), finished=store)
        if args.pack:
            print(f"packed {pack(results_dir, args.pack)}")
        if failures:
            raise StudyError("runs failed, RESULTS.md not written: " + "; ".join(failures))
        command = "python experiments.py " + shlex.join(argv)
        path = write_report(args.results, command=command, wall_s=time.time() - started, config=config, base=base,
                            runs=runs, steps=args.steps, init=init, skipped=len(runs) - len(jobs),
                            eval_samples=args.eval_samples, jobs=args.jobs, arm_docs=ARM_DOCS, claims=CLAIMS,
                            extended_arms=EXTENDED_ARMS, n_responses=N_RESPONSES, k=K, earlier=EARLIER)
        print(f"wrote {path}")
    except (StudyError, ConfigError) as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
