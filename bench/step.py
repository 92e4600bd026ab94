"""Benchmark: one RL step of a config, by stage and by operator, against the machine's matmul rate.

    python bench/step.py                          # configs/maze.yaml, 2 threads
    python bench/step.py --compare HEAD~3         # the same step at another revision: a ratio
    python bench/step.py --shared                 # two step benches side by side vs one alone
    python bench/step.py --tiny --cache-dir /tmp/x    # seconds: configs/tiny.yaml (the test)

The step is ppo.rl_step as it is, on one fixed policy: the config's warm start (trained once,
cached under --cache-dir, default $TMPDIR/passk_bench_step) or `--init random` (then most prompts
carry no signal and the update is nearly empty: not the demo's step). The same step (same prompts,
same seeds) runs once to warm up, then `--repeats` times, each from the same weights and optimizer
state; medians are reported. Stages are timed by wrapping train.py's module-level functions from
here (train.py is not edited): rollout (sample_and_score), old log-probs (no_grad_logprobs), update
(ppo_update + optimizer.step), rest (scoring is inside rollout; advantages, metrics).

One more run under torch.profiler gives the top operators by self CPU time and the step's matrix
FLOPs: the profiler's count for mm/addmm/bmm/baddbmm plus scaled_dot_product_attention's from its
recorded shapes (4 B H Tq Tk hd forward, twice that backward). Beside them, the float32 (and bf16
where the CPU multiplies it natively) matmul rate of the model's own shapes, measured in this
process: the step's FLOP rate over the machine's is the distance from the limit.

--compare REV extracts REV with `git archive` into a temporary directory and runs this same file
as a child process against each tree in turn (this checkout, REV, this checkout, ...), alternating
A/B --rounds times; each child times the step after its own warm-up. Ratios of medians are printed.
Only rl_step (ppo.py; train.py at older revisions) and the
builders (bench_pieces) are needed at REV, so older revisions work.
"""

import argparse
import copy
import json
import os
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", default="configs/maze.yaml")
    parser.add_argument(
        "--tiny", action="store_true", help="configs/tiny.yaml, one repeat, short profile"
    )
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--repeats", type=int, default=3, help="timed runs of the step after a warm-up"
    )
    parser.add_argument("--step", type=int, default=0, help="which RL step (its prompts and seeds)")
    parser.add_argument(
        "--init",
        default="warm",
        help="warm (the config's cached warm start), random, or a checkpoint directory",
    )
    parser.add_argument(
        "--cache-dir", default=os.path.join(tempfile.gettempdir(), "passk_bench_step")
    )
    parser.add_argument(
        "--compare", metavar="REV", help="time the same step at git revision REV too"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="A/B alternations of --compare and --shared"
    )
    parser.add_argument(
        "--shared", action="store_true", help="two benches side by side vs one alone"
    )
    parser.add_argument(
        "--set",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="config overrides, e.g. rl.minibatches=2 (as train.py's --rl.minibatches 2)",
    )
    parser.add_argument(
        "--policy-set",
        nargs="*",
        default=[],
        metavar="NAME=VALUE",
        help="policy attributes, e.g. length_buckets=4 (options not yet in the config)",
    )
    parser.add_argument("--root", default=ROOT, help=argparse.SUPPRESS)  # the tree a child imports
    # print one JSON line
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--no-profile", action="store_true")
    args = parser.parse_args(argv)
    if args.tiny:
        args.config, args.repeats = "configs/tiny.yaml", 1
    return args


# ----------------------------------------------------------------------------- the pieces of a step


def step_modules():
    """(the module with rl_step and its stages, the builders', the optimizer's): where train.py's
    public pieces live at this revision (issue 23 moves them from train/config/warm_start to
    ppo/build/optim)."""
    import importlib
    import importlib.util

    pick = lambda *names: importlib.import_module(
        next(n for n in names if importlib.util.find_spec(n))
    )
    return pick("ppo", "train"), pick("build", "config"), pick("optim", "warm_start")


def bench_pieces(cfg, device, init_dir, policy_settings=()):
    """(policy, tokenizer, task, optimizer): fresh from the config, with the weights of init_dir if
    given.
    """
    _, builders, optim = step_modules()
    task = builders.build_task(cfg)
    policy, tokenizer = builders.build_policy(cfg, device)
    if init_dir:
        policy.load_weights(init_dir)
    for name, value in (item.split("=", 1) for item in policy_settings):
        if hasattr(policy, name):  # an older revision without the option runs without it
            setattr(policy, name, type(getattr(policy, name))(value))
    optimizer = optim.make_optimizer(policy, cfg.rl.lr, cfg.rl.weight_decay, cfg.rl.adam_beta2)
    return policy, tokenizer, task, optimizer


def load_cfg(args):
    parse_args = getattr(step_modules()[1], "parse_config", None) or step_modules()[1].parse_args
    overrides = [
        part
        for item in args.set
        for part in ("--" + item.partition("=")[0], item.partition("=")[2])
    ]
    cfg, _ = parse_args(["--config", os.path.join(args.root, args.config), *overrides])
    cfg.run.out_dir = args.cache_dir  # the warm start's cache; nothing is written under runs/
    return cfg


def warm_policy_dir(args) -> str:
    """The checkpoint the step starts from: the cached warm start (trained here once), a directory,
    or ''.
    """
    if args.init == "random":
        return ""
    if args.init != "warm":
        return args.init
    import torch

    from warm_start import warm_start

    cfg = load_cfg(args)
    torch.manual_seed(cfg.run.seed)
    builders = step_modules()[1]
    policy, tokenizer = builders.build_policy(cfg, torch.device("cpu"))
    return warm_start(
        cfg, policy, tokenizer, builders.build_task(cfg), torch.device("cpu"), log=lambda *a: None
    )


STAGES = {
    "rollout": ["sample_and_score"],
    "old log-probs": ["no_grad_logprobs"],
    "update": ["ppo_update"],
}


class StageTimes:
    """Wraps train.py's stage functions (and optimizer.step) with timers and profiler ranges,
    restoring on exit.
    """

    def __init__(self, train_module, optimizer):
        self.train, self.optimizer, self.seconds, self.saved = train_module, optimizer, {}, []

    def wrap(self, owner, name, stage):
        import torch

        original = getattr(owner, name, None)
        if original is None:
            return

        def timed(*args, **kwargs):
            start = time.perf_counter()
            with torch.profiler.record_function(f"stage: {stage}"):
                result = original(*args, **kwargs)
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            return result

        self.saved.append((owner, name, original))
        setattr(owner, name, timed)

    def __enter__(self):
        for stage, names in STAGES.items():
            for name in names:
                self.wrap(self.train, name, stage)
        self.wrap(self.optimizer, "step", "update")
        return self

    def __exit__(self, *exc):
        for owner, name, original in reversed(self.saved):
            if owner is self.optimizer:
                del owner.step  # back to the class's method
            else:
                setattr(owner, name, original)


def run_step(args, cfg, pieces, profile=False):
    """One rl_step from the saved state; -> (seconds, {stage: seconds}, profiler or None)."""
    import torch

    train = step_modules()[0]
    policy, tokenizer, task, optimizer = pieces
    policy.load_state_dict(pieces.start_weights)
    optimizer.load_state_dict(copy.deepcopy(pieces.start_optimizer))
    profiler = torch.profiler.profile(record_shapes=True, with_flops=True) if profile else None
    with StageTimes(train, optimizer) as stages:
        if profiler:
            profiler.start()
        start = time.perf_counter()
        train.rl_step(args.step, cfg, policy, None, optimizer, task, tokenizer, torch.device("cpu"))
        seconds = time.perf_counter() - start
        if profiler:
            profiler.stop()
    stages.seconds["rest"] = seconds - sum(stages.seconds.values())
    return seconds, stages.seconds, profiler


class Pieces(tuple):
    start_weights: dict
    start_optimizer: dict


def prepare(args):
    import torch

    torch.set_num_threads(args.threads)
    init_dir = warm_policy_dir(args)
    cfg = load_cfg(args)
    torch.manual_seed(cfg.run.seed)
    pieces = Pieces(bench_pieces(cfg, torch.device("cpu"), init_dir, args.policy_set))
    pieces.start_weights = copy.deepcopy(pieces[0].state_dict())
    pieces.start_optimizer = copy.deepcopy(pieces[3].state_dict())
    return cfg, pieces


def time_step(args):
    """-> (cfg, pieces, [seconds per repeat], [{stage: seconds} per repeat]) after one warm-up
    run.
    """
    cfg, pieces = prepare(args)
    run_step(args, cfg, pieces)  # warm-up: allocator, lazy initialisation
    runs = [run_step(args, cfg, pieces)[:2] for _ in range(args.repeats)]
    return cfg, pieces, [r[0] for r in runs], [r[1] for r in runs]


def median(values):
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


# ----------------------------------------------------------------------------- FLOPs and the
# machine's rate

MATMUL_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")
SDPA_OPS = {
    "aten::_scaled_dot_product_flash_attention_for_cpu": 4,
    "aten::_scaled_dot_product_flash_attention_for_cpu_backward": 8,
}


def step_flops(profiler) -> dict:
    """Matrix FLOPs of the profiled step: {'matmul': mm family, 'attention': SDPA from its
    query/key shapes}.
    """
    matmul = attention = 0
    for event in profiler.events():
        if event.name in MATMUL_OPS:
            matmul += event.flops or 0
        elif event.name in SDPA_OPS and event.input_shapes and len(event.input_shapes[0]) == 4:
            # backward's first input is grad_out
            shape_index = 1 if event.name.endswith("backward") else 0
            B, H, Tq, hd = event.input_shapes[shape_index]
            Tk = event.input_shapes[shape_index + 1][2]
            attention += SDPA_OPS[event.name] * B * H * Tq * Tk * hd
    return {"matmul": matmul, "attention": attention}


def top_operators(profiler, count=12) -> list[tuple[str, float, int]]:
    """[(name, self CPU seconds, calls)] of the most expensive operators."""
    rows = [
        (e.key, e.self_cpu_time_total / 1e6, e.count)
        for e in profiler.key_averages()
        if not e.key.startswith("stage: ")
    ]
    return sorted(rows, key=lambda row: -row[1])[:count]


def model_shapes(cfg) -> list[tuple[int, int, int]]:
    """(rows, in, out) of the GPT's matmuls at a decode step of the whole batch and a training
    micro-batch.
    """
    d, rows = cfg.model.n_embd, cfg.rl.prompts_per_step * cfg.rl.responses_per_prompt
    vocab = 64  # the maze tokenizer's padded vocabulary
    return [
        (rows, d, 3 * d),
        (rows, d, 4 * d),
        (rows, 4 * d, d),
        (rows, d, vocab),
        (8 * rows, d, 3 * d),
        (8 * rows, d, 4 * d),
        (8 * rows, 4 * d, d),
    ]


def matmul_rate(shapes, dtype, seconds_each=0.2) -> float:
    """FLOP/s of torch.mm over the shapes (total FLOPs / total time, each shape's median of its
    runs).
    """
    import torch

    flops = elapsed = 0.0
    for rows, k, n in shapes:
        a, b = torch.randn(rows, k).to(dtype), torch.randn(k, n).to(dtype)
        torch.mm(a, b)
        times, deadline = [], time.perf_counter() + seconds_each
        while time.perf_counter() < deadline or len(times) < 3:
            start = time.perf_counter()
            torch.mm(a, b)
            times.append(time.perf_counter() - start)
        flops, elapsed = flops + 2 * rows * k * n, elapsed + median(times)
    return flops / elapsed


def native_bf16() -> bool:
    """The CPU multiplies bf16 in hardware (AMX tiles or AVX512-BF16): bf16 matmuls can beat
    float32.
    """
    import torch

    cpu = getattr(torch, "cpu", None)
    return bool(
        getattr(cpu, "_is_amx_tile_supported", lambda: False)()
        or getattr(cpu, "_is_avx512_bf16_supported", lambda: False)()
    )


# ----------------------------------------------------------------------------- the modes


def report(args):
    import torch

    cfg, pieces, seconds, stage_runs = time_step(args)
    step_s = median(seconds)
    print(
        f"one RL step of {args.config} (step {args.step}, init {args.init}), "
        f"{args.threads} threads, "
        f"{torch.__version__}, CPU capability {torch.backends.cpu.get_cpu_capability()}"
    )
    print(
        f"step: {step_s:.3f} s median of {len(seconds)} ({', '.join(f'{s:.3f}' for s in seconds)})"
    )
    for stage in [*STAGES, "rest"]:
        stage_s = median([run.get(stage, 0.0) for run in stage_runs])
        print(f"  {stage:<14} {stage_s:7.3f} s  {100 * stage_s / step_s:5.1f} %")
    if args.no_profile:
        return
    _, _, profiler = run_step(args, cfg, pieces, profile=True)
    total = sum(row[1] for row in top_operators(profiler, count=10**6))
    print("top operators (self CPU time under the profiler):")
    for name, op_s, calls in top_operators(profiler):
        print(f"  {name:<52} {op_s:7.3f} s {100 * op_s / total:5.1f} % {calls:7d} calls")
    flops = step_flops(profiler)
    step_flop = flops["matmul"] + flops["attention"]
    fp32 = matmul_rate(model_shapes(cfg), torch.float32)
    print(
        f"matrix FLOPs: {step_flop / 1e9:.1f} GFLOP ({flops['matmul'] / 1e9:.1f} mm, "
        f"{flops['attention'] / 1e9:.1f} attention): "
        f"{step_flop / step_s / 1e9:.1f} GFLOP/s over the step"
    )
    print(
        f"the model's matmul shapes, this process: float32 {fp32 / 1e9:.0f} GFLOP/s; "
        f"the step runs at {step_flop / step_s / fp32:.3f} of it "
        f"(its matmuls alone would take {step_flop / fp32:.3f} s)"
    )
    if native_bf16():
        bf16 = matmul_rate(model_shapes(cfg), torch.bfloat16)
        print(
            f"  bfloat16 {bf16 / 1e9:.0f} GFLOP/s (native bf16: AMX or AVX512-BF16); the step at "
            f"{step_flop / step_s / bf16:.3f} of it"
        )
    else:
        print("  bfloat16: not native on this CPU (no AMX / AVX512-BF16), not measured")


def child_command(args, root, init_dir):
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        "--root",
        root,
        "--config",
        args.config,
        "--threads",
        str(args.threads),
        "--repeats",
        str(args.repeats),
        "--step",
        str(args.step),
        "--init",
        init_dir or "random",
        "--cache-dir",
        args.cache_dir,
        "--set",
        *args.set,
        "--policy-set",
        *args.policy_set,
    ]
    return command


def run_children(commands) -> list[dict]:
    """Start the children at once, wait for all; -> each one's JSON line."""
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True) for command in commands
    ]
    results = []
    for process in processes:
        out, _ = process.communicate()
        if process.returncode:
            sys.exit(f"error: a child bench failed (exit {process.returncode})")
        results.append(json.loads(out.strip().splitlines()[-1]))
    return results


def compare(args):
    init_dir = warm_policy_dir(args)
    with tempfile.TemporaryDirectory() as other:
        if os.path.isdir(args.compare):  # a tree already extracted
            other = args.compare
        else:
            archive = subprocess.run(
                ["git", "-C", ROOT, "archive", args.compare], capture_output=True, check=True
            )
            subprocess.run(["tar", "-x", "-C", other], input=archive.stdout, check=True)
        times = {"this checkout": [], args.compare: []}
        for _ in range(args.rounds):
            for name, root in (("this checkout", ROOT), (args.compare, other)):
                times[name].append(
                    median(run_children([child_command(args, root, init_dir)])[0]["seconds"])
                )
    this, base = median(times["this checkout"]), median(times[args.compare])
    print(
        f"one RL step of {args.config}, {args.threads} threads, "
        f"{args.rounds} alternating rounds (medians):"
    )
    for name, values in times.items():
        print(f"  {name:<16} {median(values):.3f} s  ({', '.join(f'{v:.3f}' for v in values)})")
    print(f"speed-up of this checkout over {args.compare}: {base / this:.2f}x")


def shared(args):
    """Two step benches at once on the same cores vs one alone, alternating; the fair ratio is 2 or
    less.
    """
    init_dir = warm_policy_dir(args)
    alone, pair = [], []
    for _ in range(args.rounds):
        alone.append(median(run_children([child_command(args, ROOT, init_dir)])[0]["seconds"]))
        both = run_children([child_command(args, ROOT, init_dir)] * 2)
        pair.append(median([median(result["seconds"]) for result in both]))
    print(
        f"one RL step of {args.config}, {args.threads} threads each, "
        f"{args.rounds} rounds (medians):"
    )
    print(f"  alone         {median(alone):.3f} s  ({', '.join(f'{v:.3f}' for v in alone)})")
    print(f"  two at once   {median(pair):.3f} s  ({', '.join(f'{v:.3f}' for v in pair)})")
    print(
        f"two side by side over one alone: {median(pair) / median(alone):.2f}x "
        f"(sharing alone explains "
        f"{min(2.0, 2 * args.threads / max(os.cpu_count() or 1, args.threads)):.1f}x)"
    )


def main(argv=None):
    args = parse(sys.argv[1:] if argv is None else argv)
    if os.path.abspath(args.root) != ROOT:  # an older tree must not fall back on this one's modules
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != ROOT]
    sys.path.insert(0, args.root)
    if args.child:
        _, _, seconds, stage_runs = time_step(args)
        print(json.dumps({"seconds": seconds, "stages": stage_runs}))
    elif args.compare:
        compare(args)
    elif args.shared:
        shared(args)
    else:
        report(args)


if __name__ == "__main__":
    sys.path.insert(0, ROOT)
    import threads  # noqa: E402, F401  (OpenMP's wait policy, before torch loads)

    main()
