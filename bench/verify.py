"""Throughput of the math verifier: answers per second, inline vs one worker vs the pool.

Two workloads: typical short answers (a few sentences ending in a \\boxed{} answer, a mix of
integers, fractions, radicals, intervals, sets and equations, half of them correct), and the
same with one answer in ten replaced by a hostile one (towers of powers, huge factorials, deep
nesting, 100k-character answers, code for eval). Workers are started before timing; their start
time is reported on its own. Each figure is the best of a few runs on fresh numbers (the machine
may be shared); ratios are against the single-worker pool measured in this run.

    python bench/verify.py [--answers 2000] [--repeats 3] [--workers N]
"""

import argparse
import os
import random
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import pool  # noqa: E402
import reward  # noqa: E402


def random_item(rng):
    """(gold, a correct way to write it, a wrong one), with fresh numbers so no cache helps."""
    a, b, c = rng.randint(2, 99), rng.randint(2, 99), rng.randint(2, 9)
    kind = rng.randrange(10)
    if kind == 0:
        return (
            f"\\frac{{{a}}}{{{b}}}",
            f"\\dfrac{{{2 * a}}}{{{2 * b}}}",
            f"\\frac{{{a + 1}}}{{{b}}}",
        )
    if kind == 1:
        return str(a * b), f"{a * b}", f"{a * b + 1}"
    if kind == 2:
        return f"{c}\\sqrt{{{a}}}", f"\\sqrt{{{c * c * a}}}", f"\\sqrt{{{c * c * a + 1}}}"
    if kind == 3:
        return f"[{a}, {a + b})", f"[{a},{a + b})", f"[{a},{a + b}]"
    if kind == 4:
        return f"\\{{{a}, {b}, {c}\\}}", f"\\{{{c}, {b}, {a}\\}}", f"\\{{{a}, {b}\\}}"
    if kind == 5:
        return f"({a}, -{b})", f"({a},-{b})", f"(-{b},{a})"
    if kind == 6:
        return (
            f"\\frac{{{a}\\pi}}{{{b}}}",
            f"\\frac{{{a}}}{{{b}}}\\pi",
            f"\\frac{{{a}\\pi}}{{{b + 1}}}",
        )
    if kind == 7:
        return f"x^2 + {2 * a}x + {a * a}", f"(x+{a})^2", f"(x-{a})^2"
    if kind == 8:
        return f"y = {a}x + {b}", f"{a}x - y + {b} = 0", f"y = {a}x - {b}"
    return f"{a}\\%", f"{a}", f"{a / 100}"


HOSTILE = [
    "\\boxed{9^{9^{9^{9}}}}",
    "\\boxed{(10^{6})!}",
    "\\boxed{e^{e^{e^{e^{e^{x}}}}}}",
    "\\boxed{" + "{" * 5_000 + "1" + "}" * 5_000 + "}",
    "\\boxed{" + "1+" * 50_000 + "1}",
    "\\boxed{__import__('os').system('true')}",
    "$" + "(" * 20_000 + "$",
]


def workload(n_answers, hostile_every, seed=0):
    rng = random.Random(seed)
    golds, responses = [], []
    for index in range(n_answers):
        gold, right, wrong = random_item(rng)
        answer = right if rng.random() < 0.5 else wrong
        response = (
            "We simplify step by step, check the cases, and conclude. "
            f"The answer is $\\boxed{{{answer}}}$."
        )
        if hostile_every and index % hostile_every == 0:
            response = rng.choice(HOSTILE)
        golds.append(gold)
        responses.append(response)
    return golds, responses


def answers_per_second(n_answers, hostile_every, workers, repeats):
    """Best of `repeats` runs, each on fresh numbers (so no cache carries over between runs)."""
    best = 0.0
    for repeat in range(repeats):
        golds, responses = workload(n_answers, hostile_every, seed=repeat)
        start = time.perf_counter()
        reward.score_batch("math", responses, golds, workers=workers, timeout_s=5.0)
        best = max(best, n_answers / (time.perf_counter() - start))
    return best


def start_pool(workers):
    pool.shutdown()
    start = time.perf_counter()
    reward.score_batch("math", ["1"] * workers, ["1"] * workers, workers=workers)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--answers", type=int, default=2000, help="answers per run")
    parser.add_argument(
        "--repeats", type=int, default=3, help="runs per measurement (the best is kept)"
    )
    parser.add_argument(
        "--workers", type=int, default=os.cpu_count() or 1, help="workers of the pool"
    )
    args = parser.parse_args()

    print(
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; "
        f"best of {args.repeats} runs of {args.answers} answers"
    )
    print(f"pool of {args.workers} workers started and warm in {start_pool(args.workers):.2f} s")
    for name, hostile_every in (("typical short answers", 0), ("with 1 in 10 hostile", 10)):
        inline = answers_per_second(args.answers, hostile_every, 0, args.repeats)
        start_pool(1)
        single = answers_per_second(args.answers, hostile_every, 1, args.repeats)
        start_pool(args.workers)
        pooled = answers_per_second(args.answers, hostile_every, args.workers, args.repeats)
        print(
            f"{name:24s} inline {inline:6.0f}/s | 1 worker {single:6.0f}/s | "
            f"{args.workers} workers {pooled:6.0f}/s | pool / 1 worker {pooled / single:4.2f}x | "
            f"1 worker / inline {single / inline:4.2f}x"
        )
    print("verifier stats:", reward.verifier_stats())
    pool.shutdown()


if __name__ == "__main__":
    main()
