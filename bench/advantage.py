"""Benchmark: the cost of each advantage estimator against grpo, measured in the same process.

One RL step's rewards: G = 512 prompts, N = 32 responses, k = 4, 0/1 rewards with a per-prompt
accuracy drawn uniformly. Each estimator is called as train.py calls it (ESTIMATORS[name](rewards,
k=k, **extra)), warmed up, then timed over --reps calls; the table shows the median and the ratio
to grpo's median. The closed forms are meant to stay within 3x of grpo; passk_bootstrap, which
draws N random groups per prompt, is reported beside them.

    python bench/advantage.py [--threads T] [--reps R] [--G 512] [--N 32] [--k 4] [--device cpu]
"""

import argparse
import inspect
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from advantage import ESTIMATORS  # noqa: E402


def median_seconds(fn, reps, device):
    for _ in range(5):  # warm-up: allocator, first-call dispatch
        fn()
    times = []
    for _ in range(reps):
        if device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's choice)"
    )
    parser.add_argument("--reps", type=int, default=200)
    parser.add_argument("--G", type=int, default=512)
    parser.add_argument("--N", type=int, default=32)
    parser.add_argument("--k", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)

    generator = torch.Generator().manual_seed(0)
    accuracy = torch.rand(args.G, 1, generator=generator)
    # [G, N]
    rewards = (torch.rand(args.G, args.N, generator=generator) < accuracy).float().to(device)
    available = {
        "prompt_entropy": torch.rand(args.G, generator=generator).to(device),
        "generator": torch.Generator(device=device).manual_seed(0),
        "n_groups": None,
    }

    print(
        f"G={args.G} N={args.N} k={args.k} device={device} threads={torch.get_num_threads()} "
        f"reps={args.reps} torch={torch.__version__}"
    )
    print(f"{'estimator':18s} {'median us':>10s} {'x grpo':>8s}")
    baseline = None
    for name, fn in ESTIMATORS.items():
        extra = {
            key: value
            for key, value in available.items()
            if key in inspect.signature(fn).parameters
        }
        seconds = median_seconds(lambda: fn(rewards, k=args.k, **extra), args.reps, device)
        baseline = baseline or seconds  # grpo is the table's first entry
        print(f"{name:18s} {seconds * 1e6:10.1f} {seconds / baseline:8.2f}")


if __name__ == "__main__":
    main()
