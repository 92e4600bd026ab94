"""Benchmark: fused chunked log-probs vs naive full-logits log-probs (eager and torch.compile'd).

    python bench/logprob.py                                  # CPU, float32
    python bench/logprob.py --threads 1                      # steadier on a shared CPU
    python bench/logprob.py --device cuda --dtype bfloat16   # GPU

Cases: the LM head of Qwen2.5-0.5B (hidden 896, vocabulary 151,936) over 4,096 response tokens,
forward + backward of the log-probs (the PPO step) and a no-grad pass of log-probs + entropy (the
old/reference log-probs); and the same two at a small vocabulary (a character-level tiny GPT). Every
method gets the same inputs (same seed) and runs in its own subprocess, so each peak is its own:
peak RSS from resource.getrusage on CPU (with glibc told to return every block of 1 MiB or more to
the OS on free, so RSS follows live memory), torch.cuda.max_memory_allocated on GPU.

Each worker runs the method once to warm up (torch.compile compiles here; its time is reported),
then `--repeats` timed runs (five times as many for the small cases), and reports the fastest wall
time and, on CPU, the smallest process CPU time (all threads together), which moves much less than
wall time on a shared machine. Memory is reported as the total peak and as the part above what every
method must hold: the process with its inputs (and torch.compile's compiler), measured just before
the timed runs, plus the weight gradient. Ratios are against eager naive in the same run. Prints a
markdown table.
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
# noqa: E402, F401  (OpenMP threads that sleep when the cores are shared: before torch)
import threads  # noqa: E402, F401  (before torch: OpenMP threads that step aside)

CASES = {  # name: (tokens M, hidden d, vocabulary V, backward?)
    "qwen-grad": (4096, 896, 151936, True),
    "qwen-nograd": (4096, 896, 151936, False),
    "small-grad": (16384, 256, 96, True),
    "small-nograd": (16384, 256, 96, False),
}
METHODS = ["naive", "compiled", "fused"]
MB = 2**20


def case_shape(case, tokens):
    M, d, V, backward = CASES[case]
    return (tokens if case.startswith("qwen") else M), d, V, backward


def worker(args):
    import torch
    import logprob

    if args.threads:
        torch.set_num_threads(args.threads)
    M, d, V, backward = case_shape(args.case, args.tokens)
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    gen = torch.Generator(device).manual_seed(0)
    # filled in place: no temporaries to inflate the baseline
    hidden = torch.empty(M, d, device=device, dtype=dtype).normal_(generator=gen)  # [M, d]
    # [V, d]
    weight = torch.empty(V, d, device=device, dtype=dtype).normal_(std=2 / d**0.5, generator=gen)
    targets = torch.randint(0, V, (M,), device=device, generator=gen)  # [M]
    grad_logp = torch.randn(M, device=device, generator=gen)  # upstream gradient of the PPO loss
    hidden.requires_grad_(backward)
    weight.requires_grad_(backward)

    if args.method == "fused":

        def compute(h, w, t):
            return logprob.fused_logprobs(
                h, w, t, chunk_size=args.chunk_size, return_entropy=not backward
            )
    else:
        naive = logprob.naive_logprobs_unchecked
        if args.method == "compiled":
            naive = torch.compile(naive)

        def compute(h, w, t):
            return naive(h, w, t, 1.0, V, not backward)

    cpu_seconds = []  # process CPU time of each run, to read wall times on a shared machine

    def run_once():
        sync()
        cpu_start = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
        start = time.perf_counter()
        if backward:
            compute(hidden, weight, targets).backward(grad_logp)
            hidden.grad = weight.grad = None
        else:
            with torch.no_grad():
                compute(hidden, weight, targets)
        sync()
        cpu_seconds.append(sum(resource.getrusage(resource.RUSAGE_SELF)[:2]) - cpu_start)
        return time.perf_counter() - start

    warmup_s = run_once()
    if device.type == "cuda":
        baseline = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
    else:
        with open("/proc/self/statm") as f:
            baseline = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")  # resident now
    load_before = os.getloadavg()[0]
    times = [run_once() for _ in range(args.repeats)]
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated()
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    must_hold = weight.numel() * weight.element_size() if backward else 0  # the weight gradient
    # on GPU it only counts the launches
    cpu = min(cpu_seconds[1:]) if device.type == "cpu" else None
    print(
        json.dumps(
            dict(
                time=min(times),
                times=times,
                cpu=cpu,
                cpus=cpu_seconds[1:],
                warmup=warmup_s,
                peak=peak,
                baseline=baseline,
                above=peak - baseline - must_hold,
                load=(load_before, os.getloadavg()[0]),
            )
        )
    )


def run_worker(case, method, args):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--case",
        case,
        "--method",
        method,
        "--device",
        args.device,
        "--dtype",
        args.dtype,
        "--tokens",
        str(args.tokens),
        "--repeats",
        str(args.repeats if case.startswith("qwen") else 5 * args.repeats),
    ]
    if args.chunk_size:
        command += ["--chunk-size", str(args.chunk_size)]
    if args.threads:
        command += ["--threads", str(args.threads)]
    # glibc: serve every allocation of 1 MiB or more with mmap and give it back on free, so that
    # peak RSS measures what a method holds rather than what the allocator kept
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(MB), MALLOC_TRIM_THRESHOLD_=str(MB))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        print(f"[{case} / {method}] failed:\n{done.stderr[-3000:]}", file=sys.stderr)
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def ratio(numerator, denominator, key):
    if numerator is None or denominator is None or numerator[key] is None:
        return "-"
    return f"{numerator[key] / max(denominator[key], 1e-9):.2f}" + (
        "" if key in ("time", "cpu") else "x"
    )


def cpu_text(result):
    return "-" if result["cpu"] is None else f"{result['cpu']:.2f}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument(
        "--tokens", type=int, default=4096, help="response tokens at the Qwen shape"
    )
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs per method (the fastest is kept)"
    )
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="fused chunk size (default: logprob's)"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=None,
        help="CPU threads per worker (default: torch's); 1 is steadier on a shared machine",
    )
    parser.add_argument(
        "--cases", default=",".join(CASES), help="comma-separated subset of " + ",".join(CASES)
    )
    parser.add_argument(
        "--methods",
        default=",".join(METHODS),
        help="comma-separated subset of " + ",".join(METHODS),
    )
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--case", help=argparse.SUPPRESS)
    parser.add_argument("--method", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import torch

    n_threads = args.threads or torch.get_num_threads()
    where = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU, {n_threads} threads"
    print(
        f"torch {torch.__version__}, {where}, {args.dtype}; best of {args.repeats} runs at the "
        "Qwen shape, "
        f"{5 * args.repeats} at the small one, after one warm-up; "
        f"load average before: {os.getloadavg()[0]:.1f}"
    )
    header = (
        "| case | method | time (s) | time / naive | process CPU (s) | CPU / naive | peak total "
        "(MB) "
        "| naive / this | above inputs + weight grad (MB) | naive / this |"
    )
    rows = [header, "|" + "---|" * 10]
    labels = {
        "naive": "naive (eager)",
        "compiled": "naive (torch.compile)",
        "fused": "fused (chunked)",
    }
    for case in args.cases.split(","):
        M, d, V, backward = case_shape(case, args.tokens)
        title = f"M={M}, d={d}, V={V}, " + ("fwd+bwd" if backward else "no-grad, +entropy")
        results = {}
        for method in args.methods.split(","):
            results[method] = result = run_worker(case, method, args)
            if result is None:
                continue
            # 0.1 ms: GPU runs take tens of ms
            runs = ", ".join(f"{t:.4f}" for t in result["times"])
            cpu = ", ".join(f"{t:.1f}" for t in result["cpus"])
            print(
                f"{case:13s} {method:9s} time {result['time']:8.4f} s (runs {runs}; process CPU s "
                f"{cpu}; "
                f"warm-up {result['warmup']:.1f} s; load {result['load'][0]:.1f} -> "
                f"{result['load'][1]:.1f})  "
                f"peak {result['peak'] / MB:.0f} MB, above {result['above'] / MB:.0f} MB",
                flush=True,
            )
        base = results.get("naive")
        for method, result in results.items():
            if result is None:
                continue
            rows.append(
                f"| {title} | {labels[method]} | {result['time']:.4f} | "
                f"{ratio(result, base, 'time')} "
                f"| {cpu_text(result)} | {ratio(result, base, 'cpu')} "
                f"| {result['peak'] / MB:.0f} | {ratio(base, result, 'peak')} "
                f"| {result['above'] / MB:.0f} | {ratio(base, result, 'above')} |"
            )
    print()
    print("\n".join(rows))
    print(f"\nload average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
