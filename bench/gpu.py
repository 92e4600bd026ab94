"""Every GPU measurement the README still lists as missing, in one command that fits 8 minutes on
one GPU, written to one markdown report.

    python3 bench/gpu.py --out DIR         # one CUDA GPU: DIR/gpu_report.md, DIR/logs/, DIR/maze/
    python3 bench/gpu.py --out DIR --tiny  # the same sections on the CPU at tiny shapes (the test)

Which python: the one that runs this script, with whatever torch it has. Nothing is installed: a
lent GPU machine may have no network and no project venv. The script needs only the standard
library itself; it first imports torch, transformers, peft and passk's own modules in a child
process, prints what it found, and skips each section whose imports fail (or that needs CUDA and
sees none) with a one-line reason. On a machine with pip and a network, the versions to install
are requirements.txt's (torch with `==` of the build the machine's CUDA wants).

Each section runs this repository's own benchmarks as child process groups, under its own time
limit and the run's overall budget (`--budget`, 470 s), so one hang costs its section only; the
report is rewritten after every section, so a run cut short keeps what it measured.
  sampler  bench/sampler.py: decode tokens/s of passk's eager (dynamic), static and compiled
           samplers against transformers' generate, bf16, Qwen2.5-0.5B's shape exactly (24
           layers, width 896, 14 heads and 2 KV heads, MLP 4864, vocabulary 151,936) with random
           weights;
  memory   bench/memory.py --device cuda at the 0.5B and 1.5B shapes, full fine-tuning and LoRA
           (the 1.5B LoRA RL step included), the four processes side by side (--jobs 4);
  maze     a few RL steps of configs/maze.yaml on the GPU and then on the CPU from the same warm
           start (cached by the first run), their metrics side by side;
  logprob  bench/logprob.py --device cuda --dtype bfloat16 at 16,384 tokens of the Qwen head.
--tiny runs the same sections and the same scripts on the CPU at shapes that take seconds: it checks
that the script and the benchmarks it calls still run together, and measures nothing.
"""

import argparse
import datetime
import json
import math
import os
import platform
import resource
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUDGET_S = 470  # the lent machine's 8 minutes, less the start of this script and its copy back
REPORT = "gpu_report.md"
OUTPUT_LINES = 400  # of a section's stdout kept in the report (all of it stays in logs/)
PROBE = """
import importlib, json, os, sys
found = {"python": sys.version.split()[0], "cpus": os.cpu_count()}
for name in ("torch", "transformers", "peft", "logprob", "hf_policy", "train"):
    try:
        found[name] = str(getattr(importlib.import_module(name), "__version__", "ok"))
    except Exception as error:
        found[name + " error"] = f"{type(error).__name__}: {error}".splitlines()[0]
if "torch" in found:
    import torch
    found["torch cuda"] = torch.version.cuda
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        found["cuda"] = f"{props.name}, {props.total_memory / 2**30:.1f} GiB"
print(json.dumps(found))
"""


@dataclass
class Section:
    name: str
    what: str
    commands: list  # argv lists, run one after the other
    needs: tuple  # modules the probe must import; "cuda": a CUDA device (full mode)
    limit_s: float
    summarize: object = None  # out_dir -> markdown shown under the output, or None


def python(script, *args) -> list:
    return [sys.executable, os.path.join(ROOT, script), *map(str, args)]


def maze_runs(out_dir, tiny) -> list:
    """train.py twice from one warm start: on the device (which caches it), then on the CPU."""
    config, steps, problems = ("tiny", 2, 4) if tiny else ("maze", 4, 16)
    common = (
        f"--config configs/{config}.yaml --run.out_dir {out_dir}/maze --run.progress false "
        f"--eval.before false --eval.every 0 --eval.n_problems {problems} --rl.steps {steps}"
        + (" --sft.steps 5" if tiny else "")  # tiny: a warm start that only has to run
    ).split()
    device = "cpu" if tiny else "cuda"  # tiny: both runs on the CPU, only the plumbing is checked
    return [
        python("train.py", *common, "--run.name", "device", "--run.device", device),
        python("train.py", *common, "--run.name", "cpu", "--run.device", "cpu"),
    ]


def sections(out_dir, tiny) -> list:
    """The measurements, most wanted first (a run that runs out of time loses the last)."""
    if tiny:
        sampler = "--device cpu --layers 1 --hidden 32 --heads 4 --vocab 256 --prompts 2 --n 2 "
        sampler += "--new 4 --repeats 1"
        memory = "--device cpu --shapes tiny --modes lora --prompts 2 --n 4 --prompt-tokens 12 "
        memory += "--new-tokens 8 --no-resident"
        logprob = "--device cpu --cases small-grad --methods naive,fused --repeats 1"
    else:  # Qwen2.5-0.5B's shape (see the docstring)
        sampler = "--device cuda --dtype bfloat16 --layers 24 --hidden 896 --heads 14 "
        sampler += "--kv-heads 2 --intermediate 4864 "
        sampler += "--vocab 151936 --prompts 32 --n 8 --new 64 --repeats 2"
        memory = "--device cuda --shapes 0.5b,1.5b --modes full,lora --jobs 4"
        logprob = "--device cuda --dtype bfloat16 --tokens 16384 --cases qwen-grad,qwen-nograd "
        logprob += "--repeats 5"
    skip = ["--skip", "compiled,no cache"] if tiny else []  # compiling on a CPU takes minutes
    memory_json = os.path.join(out_dir, "memory.json")
    return [
        Section(
            "sampler",
            "decode tokens/s: passk's samplers against transformers' generate",
            [python("bench/sampler.py", *sampler.split(), *skip)],
            ("hf_policy", "cuda"),
            150,
        ),
        Section(
            "memory",
            "the memory of RL steps at Qwen2.5's 0.5B and 1.5B shapes, full and LoRA",
            [python("bench/memory.py", *memory.split(), "--json", memory_json)],
            ("train", "peft", "cuda"),
            150,
        ),
        Section(
            "maze",
            "RL steps of the maze demo on the GPU checked against the CPU",
            maze_runs(out_dir, tiny),
            ("train", "cuda"),
            110,
            lambda out: compare_runs(
                os.path.join(out, "maze", "device"), os.path.join(out, "maze", "cpu")
            ),
        ),
        Section(
            "logprob",
            "fused chunked log-probs against the naive head, bf16",
            [python("bench/logprob.py", *logprob.split())],
            ("logprob", "cuda"),
            100,
        ),
    ]


# ----------------------------------------------------------------------------- running


def probe(timeout_s) -> dict:
    """What this python can import and which GPU torch sees, from a child process."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", PROBE],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=dict(os.environ, PYTHONPATH=ROOT),
        )
    except subprocess.TimeoutExpired:
        return {"probe error": f"importing torch took over {timeout_s:.0f} s"}
    if done.returncode != 0:
        return {"probe error": (done.stderr.strip().splitlines() or ["no output"])[-1]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def skip_reason(section, found, tiny) -> str | None:
    """Why `section` cannot run with what the probe found, in one line; None if it can."""
    if "probe error" in found:
        return f"the probe failed: {found['probe error']}"
    for need in section.needs:
        if need == "cuda":
            if not tiny and "cuda" not in found:
                return f"no CUDA device (torch {found.get('torch', '-')} sees none)"
        elif need not in found:
            return f"import {need} failed: {found.get(need + ' error', 'not tried')}"
    return None


def run_command(argv, timeout_s, log_prefix) -> int | None:
    """(exit status, or None if killed at timeout_s) of argv in a process group of its own, so that
    its children die with it; stdout and stderr to log_prefix + .out / .err."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PYTHONPATH=ROOT)
    with open(log_prefix + ".out", "a") as out, open(log_prefix + ".err", "a") as err:
        child = subprocess.Popen(
            argv, cwd=ROOT, stdout=out, stderr=err, env=env, start_new_session=True
        )
        try:
            return child.wait(timeout=max(timeout_s, 0.1))
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return None


def children_cpu_s() -> float:
    """CPU seconds of every child process waited for so far (user + system)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_section(section, deadline, out_dir) -> dict:
    """Run a section's commands in order within min(its limit, the time left); a timeout ends it."""
    log_prefix = os.path.join(out_dir, "logs", section.name)
    for suffix in (".out", ".err"):
        open(log_prefix + suffix, "w").close()
    start, cpu_start = time.monotonic(), children_cpu_s()
    end = min(start + section.limit_s, deadline)
    statuses = []
    for argv in section.commands:
        code = run_command(argv, end - time.monotonic(), log_prefix)
        statuses.append(
            "timed out" if code is None else "ok" if code == 0 else f"failed (exit {code})"
        )
        if code is None:
            break
    wall_s, cpu_s = time.monotonic() - start, children_cpu_s() - cpu_start
    with open(log_prefix + ".out") as f:
        output = f.read().splitlines()
    with open(log_prefix + ".err") as f:
        errors = f.read().splitlines()
    status = next((s for s in statuses if s != "ok"), "ok")
    summary = section.summarize(out_dir) if section.summarize else ""
    return {
        "status": status,
        "wall_s": wall_s,
        "cpu_s": cpu_s,
        "limit_s": end - start,
        "output": output,
        "errors": errors if status != "ok" else [],
        "summary": summary,
    }


# ----------------------------------------------------------------------------- the maze check


def read_metrics(run_dir) -> dict:
    """{step: {metric: value}} from a run's metrics.jsonl (a step's rows merged); {} if absent."""
    rows = {}
    path = os.path.join(run_dir, "metrics.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                if line.strip():
                    row = json.loads(line)
                    rows.setdefault(row["step"], {}).update(row)
    return rows


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def difference(a, b) -> float:
    """|a - b|, 0 when both are NaN (a metric with nothing to average on either device)."""
    return 0.0 if math.isnan(a) and math.isnan(b) else abs(a - b)


def compare_runs(device_dir, cpu_dir) -> str:
    """The two runs' metrics side by side: each at the first RL step both logged and the largest
    difference over every step both logged; their timings (time/...) apart, as means."""
    device, cpu = read_metrics(device_dir), read_metrics(cpu_dir)
    steps = sorted(set(device) & set(cpu) - {0})
    if not steps:
        return "No RL step was logged by both runs: nothing to compare."
    first = steps[0]
    shared = sorted(
        n
        for n, v in device[first].items()
        if n != "step" and is_number(v) and is_number(cpu[first].get(n))
    )
    lines = [
        f"| metric | step {first}: device | step {first}: CPU | largest difference, "
        f"steps {steps[0]}-{steps[-1]} |",
        "|---|---|---|---|",
    ]
    metrics = [n for n in shared if not n.startswith("time/")]
    agree = 0
    for name in metrics:
        largest = max(
            difference(device[s][name], cpu[s][name])
            for s in steps
            if is_number(device[s].get(name)) and is_number(cpu[s].get(name))
        )
        a, b = device[first][name], cpu[first][name]
        agree += difference(a, b) <= 1e-3 * max(1.0, abs(b))
        lines.append(f"| {name} | {a:.6g} | {b:.6g} | {largest:.3g} |")
    lines.append(
        f"\nAt step {first}, {agree} of {len(metrics)} metrics agree within 1e-3 (relative "
        "above 1). Sampling is hash-based, so the same weights draw the same tokens on "
        "both devices unless float differences move a probability across a draw."
    )
    lines += [
        "",
        "| timing, mean over the steps | device | CPU | CPU / device |",
        "|---|---|---|---|",
    ]
    for name in (n for n in shared if n.startswith("time/")):
        a, b = (sum(run[s][name] for s in steps) / len(steps) for run in (device, cpu))
        lines.append(f"| {name} | {a:.3f} | {b:.3f} | {b / a if a else math.nan:.2f}x |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the report


def environment_lines(found, tiny, budget_s) -> list:
    versions = ", ".join(
        f"{name} {found[name]}" for name in ("torch", "transformers", "peft") if name in found
    )
    failed = [f"{name}: {error}" for name, error in found.items() if name.endswith(" error")]
    mode = (
        "tiny: the CPU at tiny shapes, a check of the script (its times mean nothing)"
        if tiny
        else "full: one CUDA GPU"
    )
    return [
        f"- mode: {mode}; budget {budget_s:.0f} s",
        f"- {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}, "
        f"{platform.node()}, {found.get('cpus', os.cpu_count())} CPUs",
        f"- python {found.get('python', platform.python_version())} ({sys.executable}); "
        f"{versions or 'no torch'}; CUDA {found.get('torch cuda', '-')}",
        f"- GPU: {found.get('cuda', 'none')}",
        f"- code: {code_version()}",
    ] + [f"- failed import, {line}" for line in failed]


def code_version() -> str:
    """The checkout's commit, and whether files differ from it; a copy without .git says so."""
    try:
        git = ["git", "-C", ROOT]
        commit = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        changed = subprocess.run(
            [*git, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "not a git checkout"
    return f"commit {commit}" + (" with local changes" if changed else "")


def command_words(argv) -> list:
    """argv as a reader would type it in the repository's root."""
    return ["python"] + [os.path.relpath(a, ROOT) if a.startswith(ROOT) else a for a in argv[1:]]


def section_markdown(section, result) -> list:
    lines = [f"## {section.name}: {section.what}", ""]
    if "skipped" in result:
        return lines + [f"**status: skipped**: {result['skipped']}", ""]
    lines += [
        f"**status: {result['status']}** · wall {result['wall_s']:.1f} s "
        f"(limit {result['limit_s']:.0f} s), CPU {result['cpu_s']:.1f} s",
        "",
    ]
    lines += ["    " + " ".join(command_words(argv)) for argv in section.commands]
    output = result["output"][-OUTPUT_LINES:]
    lines += ["", "```text", *output, "```"] if output else ["", "(no output)"]
    if result["errors"]:
        lines += ["", "stderr, last lines:", "", "```text", *result["errors"][-30:], "```"]
    if result["summary"]:
        lines += ["", result["summary"]]
    return lines + [""]


def write_report(path, header, done) -> None:
    lines = ["# GPU measurements (bench/gpu.py)", "", *header, ""]
    for section, result in done:
        lines += section_markdown(section, result)
    with open(path + ".tmp", "w") as f:
        f.write("\n".join(lines))
    os.replace(path + ".tmp", path)


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="directory for the report, logs and runs")
    parser.add_argument("--tiny", action="store_true", help="CPU, tiny shapes: checks the script")
    parser.add_argument("--budget", type=float, default=BUDGET_S, help="seconds for everything")
    args = parser.parse_args(argv)
    started = time.monotonic()
    deadline = started + args.budget
    out_dir = os.path.abspath(args.out)
    os.makedirs(os.path.join(out_dir, "logs"), exist_ok=True)
    report = os.path.join(out_dir, REPORT)
    found = probe(min(120.0, args.budget)) if args.budget > 0 else {"probe error": "no time left"}
    header = environment_lines(found, args.tiny, args.budget)
    print("\n".join(header), flush=True)
    done = []
    for section in sections(out_dir, args.tiny):
        reason = skip_reason(section, found, args.tiny)
        if reason is None and time.monotonic() >= deadline:
            reason = f"the {args.budget:.0f} s budget ran out"
        result = {"skipped": reason} if reason else run_section(section, deadline, out_dir)
        done.append((section, result))
        status = (
            f"skipped: {reason}" if reason else f"{result['status']} in {result['wall_s']:.0f} s"
        )
        print(f"{section.name}: {status}", flush=True)
        write_report(report, header + [f"- total wall {time.monotonic() - started:.0f} s"], done)
    print(f"report: {report}")
    return report


if __name__ == "__main__":
    main()
