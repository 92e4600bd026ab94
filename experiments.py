"""The paper in miniature: a seeded, side-by-side study of Pass@1 and Pass@k training on mazes.

    python experiments.py --config configs/maze.yaml               # 11 arms x 6 seeds
    python experiments.py --config configs/maze.yaml --extended    # + rs_grpo
    python experiments.py --config configs/maze.yaml --commit      # commit each run's result
    python experiments.py --config configs/maze.yaml --device cuda --jobs 16 --pack study.tar.gz
    python experiments.py --config configs/maze.yaml --report-only # RESULTS.md from stored results
    python experiments.py --config configs/tiny.yaml --arms pass1,passk_analytic --seeds 1 \\
        --steps 2 --eval-problems 4 --eval-samples 8 --out /tmp/study \\
        --results /tmp/study/RESULTS.md

The study (Chen et al. 2025, arXiv 2508.10751; the claims: the numbered CLAIMS in study_plan.py):
1. Warm start once: warm_start.py's `warm_start` on the config (cached in <out>/../_warmstart/,
   with --run.threads threads), or --model.init CKPT. Every arm and seed starts RL from that one
   checkpoint, so the seed interval measures RL's variability, not the warm start's, and the
   verdicts hold for that one warm start.
2. Arms differ only in the advantage: the same steps, prompts per step, N = 16 responses per
   prompt, learning rate and everything else. Core: pass1 (grpo, Eq. 1-3), passk_full (Alg. 1),
   passk_bootstrap (Alg. 2), passk_analytic (Eq. 11-15), passk_then_pass1 (passk_analytic for the
   first half of the steps, then grpo); k = 4; and best_of_n (Tang et al. 2025, verl's grpo_passk),
   the "Pass@k" method researchers compare against. The arms of claims 5 and 6 and MaxRL, run by
   default too: passk_analytic with k = 2 and k = 8, passk_combined (Eq. 18), entropy_adaptive
   (Sec. 4.2.3), and maxrl (Tajwar et al. 2026, the gradient of log pass@1 = sum_k (1/k) pass@k),
   compared with the closed form as a FINDING. Extended (--extended): rs_grpo (Risk-Sensitive GRPO,
   beta = 2).
   No arm is tuned on its own. Runs are paired: seed s of every arm starts from the same warm start
   and sees the same prompt stream and sampling seeds (keyed by run seed, step and prompt index), so
   the per-seed difference between two arms removes the noise the arms share.
   Each (arm, seed) is one subprocess (`python experiments.py --job ...`, single-threaded) that
   trains with train.train, then evaluates; --jobs of them run side by side (on one GPU too, with
   --device cuda). A finished run's small result (its evaluation, the metrics the report needs, the
   machine it ran on) goes to --results-dir (results/study beside RESULTS.md), and with --commit
   into git, one commit per run; a run whose result is stored is skipped, so a sweep continues on a
   fresh clone where runs/ is gone. An interrupted run continues from its checkpoint (--resume); a
   run directory or a stored result made with other settings is an error, never silently reused.
   Any --section.key value override (train.py's) applies to the warm start and every run.
3. Measurements. After training, on held-out mazes at the training sizes and at the next odd size
   above them (generalisation): pass@k for k = 1..32 from 32 samples per maze at temperature 1.0,
   top-p 0.95 (the paper's setting), with the unbiased estimator; the per-maze correct counts are
   saved so intervals can be recomputed without sampling again. The held-out mazes are task.seed's
   held-out set, the same for every run seed, which no SFT or RL stream ever draws.
   Over training (train.py's metrics.jsonl): train/reward, train/entropy, train/wrong_distinct_frac
   (distinct answers among wrong responses, the paper's measure of exploration),
   train/all_agree_frac and the in-training held-out eval/pass@1. Cover@tau (eval.COVER_TAUS, Dragoi
   et al. 2025) from the same per-maze counts as pass@k.
4. RESULTS.md (study_report.py): the command, wall time, CPU minutes (every attempt of a resumed
   job counted), git revision and machines; per arm mean and 95 % interval over seeds (Student t;
   with one seed, a bootstrap over mazes instead) of pass@k and cover@tau; the plots; and a verdict
   per claim by the rule in `study_report.judge`: a claim "A beats B" takes the mean of the
   per-seed differences A - B with its 95 % paired t-interval (Welch's unpaired interval is shown
   beside it); confirms when the interval lies above 0, refutes when it lies below 0, and cannot
   tell when it holds 0 (then its half-width is the smallest effect the design could see) or with
   fewer than 2 common seeds. Until each of a claim's arms has all --seeds seeds stored, the claim
   says "not run yet (N of M seeds)" and shows its numbers only as provisional. MaxRL against the
   closed form (FINDINGS) is reported the same way, part by part.

Left out on purpose: any per-arm tuning, early stopping, and a correction for the several claims
tested at once (each verdict stands alone).
"""

import threads  # noqa: F401  (first, before torch: OpenMP threads that step aside, threads.py)
import argparse
import concurrent.futures
import json
import math
import os
import shlex
import signal
import subprocess
import sys
import threading
import time

import torch

import eval as evaluation
import tasks
import train
from warm_start import warm_start
from checkpoint import latest_checkpoint, resolve_checkpoint, write_atomic
from build import build_policy, build_task, load_for_eval, parse_config, pick_device
from config import ConfigError
from study_plan import (
    ARM_DOCS,
    CLAIM_ARMS,
    CLAIMS,
    CORE_ARMS,
    EARLIER,
    EVAL_PROBLEMS,
    EVAL_SAMPLES,
    EVAL_TEMPERATURE,
    EVAL_TOP_P,
    EXTENDED_ARMS,
    EXTENDED_KS,
    FINDINGS,
    JOBS,
    K,
    N_RESPONSES,
    SEEDS,
    STEPS,
    StudyError,
    run_name,
    run_overrides,
    study_defaults,
    train_args,
)
from study_results import (
    claim_job,
    file_sha1,
    machine,
    pack,
    result_key,
    store_result,
    stored_result,
)
from study_provenance import git_state
from study_report import (
    EVAL_FILE,
    RESULT_FILE,
    mean_pass_at_k,
    write_report,
)

REPO = os.path.dirname(os.path.abspath(__file__))
ATTEMPTS_FILE = "study_attempts.json"  # a run's training seconds, one per attempt (add_attempt)


def warm_start_checkpoint(cfg, log=print) -> str:
    """The one checkpoint every arm starts from: model.init if given, else train.py's cached warm
    start."""
    if cfg.model.init:
        return os.path.abspath(resolve_checkpoint(cfg.model.init))
    if cfg.sft.steps <= 0:
        raise StudyError(
            "the study starts every arm from one warm-start checkpoint: set sft.steps > 0 or "
            "model.init"
        )
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = pick_device(cfg.run.device)
    torch.manual_seed(cfg.run.seed)
    policy, tokenizer = build_policy(cfg, device)
    cached = warm_start(cfg, policy, tokenizer, build_task(cfg), device, log)
    if cached is None:  # every arm starts from one checkpoint on disk
        raise StudyError(
            f"the warm start could not be cached under {cfg.run.out_dir}/_warmstart (not "
            "writable): "
            "the study needs it on disk; give a writable --out"
        )
    return os.path.abspath(cached)


def checkpoint_step(run_dir: str) -> int:
    latest = latest_checkpoint(run_dir)
    return int(os.path.basename(latest).split("_")[1]) if latest else -1


def training_finished(run_dir: str, steps: int) -> bool:
    """train.py writes summary.md after its last checkpoint: both there means the run is
    complete."""
    return checkpoint_step(run_dir) >= steps and os.path.exists(os.path.join(run_dir, "summary.md"))


# ----------------------------------------------------------------------------- one job: train, then
# evaluate


def larger_size(max_size: int) -> int:
    return max_size + 2 if max_size % 2 else max_size + 1


def maze_answer_bound(size: int) -> int:
    """Longest possible answer on a size x size maze: a path through every cell, 2 moves per cell,
    in the tags."""
    cells = ((size + 1) // 2) ** 2
    return 2 * (cells - 1) + len(tasks.answer_tag(""))


def check_eval_settings(cfg, n_problems: int):
    if cfg.task.name != "maze":
        raise StudyError(f"the study evaluates mazes; task.name is {cfg.task.name}")
    if not 1 <= n_problems <= cfg.task.n_heldout:
        raise StudyError(
            f"--eval-problems {n_problems} must lie in 1..task.n_heldout={cfg.task.n_heldout} "
            "(only "
            f"those are kept out of the warm start's data)"
        )


def heldout_sets(cfg, n_problems: int) -> dict:
    """{'in_dist': ..., 'larger': ...}: each {problems, sizes, max_new_tokens}, mazes no training
    saw.

    in_dist: the first n_problems held-out mazes of task.seed (the same for every run seed), which
    the warm start's SFT stream and every run's RL stream skip.
    larger: mazes one odd size above task.max_size, which no stream of the training sizes can draw;
    their token budget grows with the longest possible answer, in proportion to the training one.
    """
    check_eval_settings(cfg, n_problems)
    t = cfg.task
    base = build_task(cfg)  # task.seed's held-out set: every run's SFT and RL streams skip it
    size = larger_size(t.max_size)
    larger = tasks.SyntheticTask(
        "maze", tasks.maze_maker(size, size, t.loop_frac), t.seed, n_problems
    )
    budget = math.ceil(t.max_new_tokens * maze_answer_bound(size) / maze_answer_bound(t.max_size))
    sizes = [s for s in range(t.min_size, t.max_size + 1) if s % 2]
    return {
        "in_dist": {
            "problems": base.heldout[:n_problems],
            "sizes": sizes,
            "max_new_tokens": t.max_new_tokens,
        },
        "larger": {"problems": larger.heldout, "sizes": [size], "max_new_tokens": budget},
    }


def evaluate_run(run_dir: str, *, n_problems: int, n_samples: int, heldout_seed: int) -> dict:
    """Correct counts of n_samples samples per held-out maze, both sets, at the paper's temperature
    and top-p."""
    cfg, policy, tokenizer, _ = load_for_eval(run_dir)
    result = {
        "run": os.path.basename(os.path.normpath(run_dir)),
        "seed": cfg.run.seed,
        "steps": cfg.rl.steps,
        "n_samples": n_samples,
        "temperature": EVAL_TEMPERATURE,
        "top_p": EVAL_TOP_P,
        "heldout_seed": heldout_seed,
        "machine": machine(next(policy.parameters()).device),
        "code": {key: value for key, value in git_state().items() if key in ("head", "code_sha1")},
        "warm_start_sha1": file_sha1(os.path.join(cfg.model.init, "model.safetensors"))
        if os.path.isfile(os.path.join(cfg.model.init, "model.safetensors"))
        else "",
        "sets": {},
    }
    for name, chosen in heldout_sets(cfg, n_problems).items():
        longest = (
            max(len(tokenizer.encode_prompt(p.prompt)) for p in chosen["problems"])
            + chosen["max_new_tokens"]
        )
        if longest > policy.config.block_size:
            raise StudyError(
                f"{name} mazes need {longest} positions but model.block_size is "
                f"{policy.config.block_size}"
            )
        correct, entropy, length = evaluation.count_correct(
            policy,
            tokenizer,
            chosen["problems"],
            cfg.task.name,
            n=n_samples,
            max_new_tokens=chosen["max_new_tokens"],
            temperature=EVAL_TEMPERATURE,
            top_p=EVAL_TOP_P,
            seed=heldout_seed,
        )
        result["sets"][name] = {
            "sizes": chosen["sizes"],
            "max_new_tokens": chosen["max_new_tokens"],
            "correct": correct,
            "entropy": entropy,
            "resp_len": length,
        }
    return result


def add_attempt(run_dir: str, train_wall: float, train_cpu: float) -> dict:
    """Add one attempt's training seconds to the run's ledger (ATTEMPTS_FILE); return the totals.

    An interrupted job resumes from its checkpoint in a new process: without the ledger the result
    would count only the last attempt's seconds (passk_bootstrap_s1 of the 4-seed study shows 2.9
    CPU minutes).
    """
    path = os.path.join(run_dir, ATTEMPTS_FILE)
    attempts = []
    if os.path.exists(path):
        with open(path) as f:
            attempts = json.load(f)
    attempts.append({"train_wall": train_wall, "train_cpu": train_cpu})
    write_atomic(path, json.dumps(attempts))
    return {
        "train_wall": sum(a["train_wall"] for a in attempts),
        "train_cpu": sum(a["train_cpu"] for a in attempts),
        "attempts": len(attempts),
    }


def run_job(run_dir: str, args: list[str], *, n_problems: int, n_samples: int, heldout_seed: int):
    """The job subprocess: train (or finish training) the run, evaluate it, write study_eval.json.

    Each attempt's training seconds go to the run's ledger, also when it is interrupted (a SIGKILL's
    are lost), so the result counts the CPU seconds of every attempt."""
    cfg, _ = parse_config(args)
    wall, cpu = time.time(), time.process_time()
    try:
        if not training_finished(run_dir, cfg.rl.steps):
            try:
                train.train(cfg)
            finally:
                train.distributed.teardown()
    finally:
        totals = add_attempt(run_dir, time.time() - wall, time.process_time() - cpu)
    wall, cpu = time.time(), time.process_time()
    result = evaluate_run(
        run_dir, n_problems=n_problems, n_samples=n_samples, heldout_seed=heldout_seed
    )
    result["seconds"] = {
        **totals,
        "eval_wall": time.time() - wall,
        "eval_cpu": time.process_time() - cpu,
    }
    write_atomic(os.path.join(run_dir, EVAL_FILE), json.dumps(result))
    print(
        f"evaluated {run_dir}: "
        + ", ".join(
            f"{name} pass@1 {mean_pass_at_k(s['correct'], n_samples, 1):.3f}"
            for name, s in result["sets"].items()
        )
    )


# ----------------------------------------------------------------------------- the sweep


def run_sweep(jobs: list[dict], parallel: int, log=print, finished=None) -> list[str]:
    """Run the jobs, `parallel` subprocesses at a time; returns the failures (run dir and log), []
    when all passed.

    finished(job) runs for every job that succeeded, one at a time (it stores, and may commit, the
    result).
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
            code = subprocess.run(
                job["command"], stdout=log_file, stderr=subprocess.STDOUT, env=env
            ).returncode
        done[0] += 1
        interrupted = code in (130, -signal.SIGINT)
        if code == 0 and finished is not None:
            with lock:
                finished(job)
        if code != 0:
            failures.append(
                f"{job['run_dir']} ({'interrupted' if interrupted else f'exit {code}'}, see "
                f"{job['log']})"
            )
        outcome = (
            "done" if code == 0 else "interrupted (rerun to resume)" if interrupted else "FAILED"
        )
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
    """(config path, base config, study defaults, run overrides, arms): all checked before any work
    starts."""
    config = os.path.abspath(args.config)
    base, _ = parse_config(["--config", config, *overrides])
    overrides = run_overrides(overrides)
    base_defaults = study_defaults(base)
    arms = (
        args.arms.split(",")
        if args.arms
        else [*CORE_ARMS, *CLAIM_ARMS, *(EXTENDED_ARMS if args.extended else ())]
    )
    unknown = [a for a in arms if a not in ARM_DOCS]
    if unknown:
        raise StudyError(f"unknown arm(s) {', '.join(unknown)}; known: {', '.join(ARM_DOCS)}")
    if args.steps < 2:
        raise StudyError(
            f"--steps {args.steps}: the Pass@k -> Pass@1 schedule needs at least 2 steps"
        )
    if args.seeds < 1 or args.jobs < 1:
        raise StudyError("--seeds and --jobs must be at least 1")
    if max(K, *EXTENDED_KS) >= N_RESPONSES:
        raise StudyError(f"every k must be below N = {N_RESPONSES}")
    check_eval_settings(base, args.eval_problems)
    if args.eval_samples < 1:
        raise StudyError(f"--eval-samples {args.eval_samples} must be at least 1")
    # each arm's runs as train.py will read them (no start yet): errors before the warm start
    for arm in arms:
        parse_config(train_args(config, base_defaults, overrides, "", arm, 0, args.steps, args.out))
    return config, base, base_defaults, overrides, arms


def make_jobs(
    args, config, base, defaults, overrides, arms, init
) -> tuple[list[dict], list[tuple[str, str]]]:
    """(jobs to run, every (arm, stored result) of the study) in seed-major order, so a partial
    sweep has every arm."""
    out, results_dir = os.path.abspath(args.out), results_directory(args)
    eval_key = {
        "problems": args.eval_problems,
        "samples": args.eval_samples,
        "heldout_seed": base.run.seed,
        "temperature": EVAL_TEMPERATURE,
        "top_p": EVAL_TOP_P,
    }
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
            command = [
                sys.executable,
                os.path.join(REPO, "experiments.py"),
                "--job",
                run_dir,
                "--eval-problems",
                str(args.eval_problems),
                "--eval-samples",
                str(args.eval_samples),
                "--heldout-seed",
                str(base.run.seed),
                "--",
                *args_,
                *resume,
            ]
            jobs.append(
                {
                    "name": name,
                    "run_dir": run_dir,
                    "train_args": args_ + resume,
                    "command": command,
                    "log": os.path.join(run_dir, "job.log"),
                    "key": key,
                }
            )
    return jobs, results


def results_directory(args) -> str:
    return os.path.abspath(
        args.results_dir
        or os.path.join(os.path.dirname(os.path.abspath(args.results)), "results", "study")
    )


# ----------------------------------------------------------------------------- CLI


def parse(argv):
    """(options, train.py args): a job subprocess gets its train.py args after --, the sweep gets
    the --section.key overrides that argparse does not know."""
    parser = argparse.ArgumentParser(
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        allow_abbrev=False,
        epilog="Any --section.key value (train.py's overrides) applies to every run.",
    )
    add_run_options(parser)
    add_result_options(parser)
    if "--" in argv:
        cut = argv.index("--")
        return parser.parse_args(argv[:cut]), argv[cut + 1 :]
    return parser.parse_known_args(argv)


def add_run_options(parser):
    """Which runs the study makes, and how: arms, seeds, steps, jobs, device, evaluation size."""
    parser.add_argument("--config", default="configs/maze.yaml", help="base config of every run")
    parser.add_argument(
        "--extended", action="store_true", help="also run " + ", ".join(EXTENDED_ARMS)
    )
    parser.add_argument(
        "--arms",
        default="",
        help="comma-separated arms instead (known: " + ", ".join(ARM_DOCS) + ")",
    )
    parser.add_argument("--seeds", type=int, default=SEEDS, help="seeds per arm: 0 .. seeds-1")
    parser.add_argument("--steps", type=int, default=STEPS, help="RL steps per run")
    parser.add_argument(
        "--jobs", type=int, default=JOBS, help="runs side by side (one thread each)"
    )
    parser.add_argument(
        "--out", default="runs/study", help="run directories; the warm start is cached beside it"
    )
    parser.add_argument(
        "--eval-problems", type=int, default=EVAL_PROBLEMS, help="held-out mazes per set"
    )
    parser.add_argument(
        "--eval-samples", type=int, default=EVAL_SAMPLES, help="samples per held-out maze"
    )
    parser.add_argument(
        "--device",
        default="",
        help="cuda: every run on the GPU (--jobs of them at once); default the config's run.device",
    )
    # a job subprocess: its run directory; its train.py args follow --
    parser.add_argument("--job", metavar="RUN_DIR", help=argparse.SUPPRESS)
    parser.add_argument("--heldout-seed", type=int, default=0, help=argparse.SUPPRESS)


def add_result_options(parser):
    """Where the results and the report go: RESULTS.md, the stored results, commits, the archive."""
    parser.add_argument(
        "--results",
        default="RESULTS.md",
        help="the report; its figures go to docs/results/ beside it",
    )
    parser.add_argument(
        "--results-dir",
        default="",
        help="finished runs' results (default results/study beside "
        "--results); a run stored there is not run again",
    )
    parser.add_argument(
        "--commit", action="store_true", help="git-commit each finished run's result as it lands"
    )
    parser.add_argument(
        "--pack", metavar="ARCHIVE", help="after the sweep, pack the results into one .tar.gz"
    )
    parser.add_argument(
        "--report-only",
        action="store_true",
        help="write RESULTS.md from the stored results, "
        "run nothing (every run of the study must be stored)",
    )


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args, rest = parse(argv)
    try:
        if args.job:
            return run_job(
                args.job,
                rest,
                n_problems=args.eval_problems,
                n_samples=args.eval_samples,
                heldout_seed=args.heldout_seed,
            )
        started = time.time()
        if args.device:
            rest = [*rest, "--run.device", args.device]
        config, base, defaults, overrides, arms = plan(args, rest)
        out, results_dir = os.path.abspath(args.out), results_directory(args)
        base.run.out_dir = os.path.dirname(out)  # the warm start is cached in <out>/../_warmstart/
        init = "" if args.report_only else warm_start_checkpoint(base)
        jobs, runs = make_jobs(args, config, base, defaults, overrides, arms, init)
        if args.report_only and jobs:
            # a partial sweep: report what is stored, each arm with its own seeds
            runs = [(arm, path) for arm, path in runs if os.path.exists(path)]
            if not runs:
                raise StudyError(
                    f"--report-only: no stored result for {', '.join(arms)} in {results_dir}"
                )
            print(
                f"--report-only: {len(jobs)} runs have no stored result "
                f"({', '.join(j['name'] for j in jobs)}); "
                f"the report covers the {len(runs)} stored and says what is not run yet",
                flush=True,
            )
            jobs = []
        print(
            f"study: {len(arms)} arms x {args.seeds} seeds, {len(runs) - len(jobs)} finished, "
            f"{len(jobs)} to run, {args.jobs} at a time; logs in {out}/<run>/job.log",
            flush=True,
        )
        store = lambda job: store_result(
            job["run_dir"], results_dir, job["name"], job["key"], args.commit
        )
        failures = run_sweep(
            jobs, args.jobs, log=lambda line: print(line, flush=True), finished=store
        )
        if args.pack:
            print(f"packed {pack(results_dir, args.pack)}")
        if failures:
            raise StudyError("runs failed, RESULTS.md not written: " + "; ".join(failures))
        command = "python experiments.py " + shlex.join(argv)
        path = write_report(
            args.results,
            command=command,
            wall_s=time.time() - started,
            config=config,
            base=base,
            runs=runs,
            steps=args.steps,
            init=init,
            skipped=len(runs) - len(jobs),
            eval_samples=args.eval_samples,
            jobs=args.jobs,
            arm_docs=ARM_DOCS,
            claims=CLAIMS,
            findings=FINDINGS,
            arms=arms,
            seeds=args.seeds,
            n_responses=N_RESPONSES,
            k=K,
            earlier=EARLIER,
        )
        print(f"wrote {path}")
    except (StudyError, ConfigError) as err:
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        print("interrupted: rerun the same command to resume", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
