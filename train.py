"""Train a policy with RL from verifiable rewards: warm start, then PPO/GRPO with Pass@k advantages.

    python train.py --config configs/maze.yaml               # the maze demo (CPU, minutes)
    python train.py --config configs/maze.yaml --rl.k 8      # any field can be overridden
    python train.py --config configs/maze.yaml --resume      # continue runs/<name>/
    python train.py --help                                   # every field with its meaning
    torchrun --nproc_per_node=8 train.py --config ...        # data parallel: DDP, or FSDP2 for
    model.hf

Stage 1, the warm start (warm_start.py): supervised training on the task's demonstrations, cached
under a key of its own config in runs/_warmstart/ so later runs reuse it.
Stage 2, RL: rl.steps calls of ppo.rl_step (one step on one screen: read ppo.py next), with the lr
schedule (optim.py), held-out evaluations (eval.py) and checkpoints (checkpoint.py).

This file is the plumbing around the algorithm: the run directory, resume, checkpoints, stops and
reports. docs/reliability.md says what a run guarantees: Ctrl-C, SIGTERM and SIGHUP finish the step
in progress and save it; --resume continues exactly as the uninterrupted run would have.
"""

import threads  # noqa: F401  (first, before torch: OpenMP threads that step aside, threads.py)
import dataclasses
import math
import os
import random
import signal
import sys
import uuid
from dataclasses import dataclass

import torch

import distributed
import eval as evaluation
import tracker
from build import build_policy, build_task, check_prompt_lengths, parse_config, pick_device
from checkpoint import (
    Diverged,
    GracefulStop,
    MetricsLog,
    RunError,
    Stopped,
    latest_checkpoint,
    load_newest_intact,
    prepare_run_dir,
    record_evals,
    resolve_checkpoint,
    resume_candidates,
    rng_state,
    set_rng_state,
    unlock_run_dir,
    write_config,
)
from config import Config, ConfigError, reward_options
from optim import make_optimizer, scheduled_lr
from ppo import rl_step
from warm_start import check_demonstration_lengths, warm_start


def train(cfg: Config, log=print) -> dict:
    """Warm start, then RL; returns the final evaluation's metrics. Ctrl-C, SIGTERM and SIGHUP stop
    the run after the step in progress, with a checkpoint of it; `--resume` continues it."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = distributed.setup(pick_device(cfg.run.device))  # joins torchrun's group, if any
    check_world(cfg)
    if not distributed.is_main():
        log = lambda *args, **kwargs: None  # rank 0 alone prints, logs, plots
    torch.manual_seed(cfg.run.seed)
    random.seed(cfg.run.seed)
    run = start_run(cfg, device, log)
    try:
        with GracefulStop(log) as stop:
            if run.evals["before"] is None and cfg.eval.before:
                run.evals["before"] = run_eval(cfg, run)
                write_row(run, 0, run.evals["before"])
                log("before RL: " + evaluation.format_metrics(run.evals["before"]))
            with stop.deferred():
                rl_loop(cfg, run, stop, log)
            if run.evals["after"] is None:  # a finished run resumed only redraws its report
                finish(cfg, run)
        if distributed.is_main():
            report(cfg, run, log)
    finally:
        run.tracker.close()
        unlock_run_dir(run.dir)
    return run.evals["after"]


def write_row(run, step: int, metrics: dict):
    """One row of metrics: metrics.jsonl (rank 0), and the tracker run.tracker names."""
    run.metrics_log.write(step, metrics)
    run.tracker.log(step, metrics)


def rl_loop(cfg: Config, run, stop, log):
    """The RL steps from run.start_step: lr schedule, rl_step, evaluations, checkpoints, stops."""
    skipped_in_a_row = 0  # updates skipped in a row (a non-finite loss or gradient)
    progress = progress_bar(cfg, run.start_step)
    for step in range(run.start_step, cfg.rl.steps):
        cosine = cfg.rl.lr_schedule == "cosine"
        lr = scheduled_lr(cfg.rl.lr, step, cfg.rl.warmup, cfg.rl.steps, cosine)
        for group in run.optimizer.param_groups:  # rl.warmup, then rl.lr_schedule
            group["lr"] = lr
        metrics = rl_step(step, cfg, run.policy, run.reference, run.optimizer, run.task,
                          run.tokenizer, run.device)  # fmt: skip
        skipped_each_update = metrics.pop("skipped_each_update")
        done = step + 1
        check_weights(run, done, metrics, log)
        if cfg.eval.every and done % cfg.eval.every == 0 and done < cfg.rl.steps:
            metrics.update(run_eval(cfg, run))
        write_row(run, done, metrics)
        if progress is not None:
            progress.update(1)
            progress.set_postfix(reward=f"{metrics['train/reward']:.3f}")
        for skipped in skipped_each_update:
            skipped_in_a_row = skipped_in_a_row + 1 if skipped else 0
            if cfg.rl.max_skipped_updates and skipped_in_a_row >= cfg.rl.max_skipped_updates:
                raise Diverged(f"{skipped_in_a_row} updates in a row had a non-finite loss or "
                               f"gradient (step {done}): the last good checkpoint is "
                               f"{latest_checkpoint(run.dir)} (lower rl.lr)")  # fmt: skip
        if distributed.any_rank(stop.requested is not None):  # a signal: save, then stop
            save(cfg, run, done)
            log(f"stopped after step {done} with a checkpoint: --resume continues the run")
            raise Stopped(stop.requested or signal.SIGINT)
        if done % cfg.run.checkpoint_every == 0 and done < cfg.rl.steps:
            save(cfg, run, done)
    if progress is not None:
        progress.close()


def finish(cfg: Config, run):
    """The last checkpoint, then the final evaluation (a stop in it loses nothing: the weights are
    saved), its metrics row and its record in the checkpoint."""
    resumed_finished = run.resumed_from and run.start_step >= cfg.rl.steps
    final = run.resumed_from if resumed_finished else save(cfg, run, cfg.rl.steps)
    run.evals["after"] = run_eval(cfg, run)
    write_row(run, cfg.rl.steps, run.evals["after"])
    if distributed.is_main():
        record_evals(final, run.evals)


@dataclass
class Run:
    """What a run holds between its steps."""

    dir: str
    device: torch.device
    task: object
    policy: object
    tokenizer: object
    reference: object = None  # the KL term's frozen reference, or None
    optimizer: torch.optim.Optimizer = None
    metrics_log: MetricsLog = None
    tracker: object = None
    start_step: int = 0
    evals: dict = dataclasses.field(default_factory=lambda: {"before": None, "after": None})
    run_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])
    resumed_from: str = None  # the checkpoint it resumed from, or None
    weight_norm: float = 0.0  # after the last step (or at the start): the next step's yardstick
    final_recorded: bool = True  # resumed: the checkpoint records the final evaluation


def start_run(cfg: Config, device, log) -> Run:
    """Build the task and the policy (so every config error comes first), take the run directory,
    warm-start, then build the reference and the optimizer, and resume when asked."""
    task = build_task(cfg)
    start = resolve_checkpoint(cfg.model.init) if cfg.model.init else None  # or the warm start
    policy, tokenizer = build_policy(cfg, device, checkpoint=start)
    check_prompt_lengths(cfg, task, tokenizer, policy.context_length)
    check_demonstration_lengths(cfg, task, tokenizer, policy.context_length)
    run_dir = os.path.join(cfg.run.out_dir, cfg.run.name)
    settings = dataclasses.asdict(cfg)
    prepare_run_dir(run_dir, cfg.run.resume, settings, distributed.is_main())
    candidates, notes = resume_candidates(run_dir) if cfg.run.resume else ([], [])
    for note in notes:
        log(f"--resume: {note}")
    if not start and cfg.sft.steps > 0 and (not candidates or cfg.rl.kl_coef > 0):
        warm_start(cfg, policy, tokenizer, task, device, log)  # resumed: only for the reference
    reference = build_reference(cfg, policy, device, start)
    resumed_from = load_newest_intact(candidates, policy, settings, log) if candidates else None
    if resumed_from and distributed.is_main():  # its settings, now that a checkpoint took them
        write_config(run_dir, settings)
    lora = cfg.model.lora_rank > 0
    mode = distributed.resolve_mode(cfg.run.distributed, bool(cfg.model.hf), lora=lora)
    policy = distributed.wrap(policy, mode, device)
    if reference is not None and distributed.is_sharded(policy):
        reference = distributed.shard(reference)  # forward only, but as large as the policy
    run = Run(run_dir, device, task, policy, tokenizer, reference, resumed_from=resumed_from)
    rl = cfg.rl  # the optimizer after wrap: FSDP2 swaps in sharded parameters
    run.optimizer = make_optimizer(policy, rl.lr, rl.weight_decay, rl.adam_beta2)
    if resumed_from:
        resume(cfg, run, log)
    metrics_path = os.path.join(run_dir, "metrics.jsonl") if distributed.is_main() else None
    resume_step = run.start_step if resumed_from else None
    run.metrics_log = MetricsLog(metrics_path, resume_step, log, final_recorded=run.final_recorded)
    kind = cfg.run.tracker if distributed.is_main() else "none"
    run.tracker = tracker.open_tracker(kind, run_dir, settings, resume_step=resume_step)
    run.weight_norm = weight_norm(policy)
    return run


def resume(cfg: Config, run: Run, log):
    """The optimizer, RNG, step and evaluations of the checkpoint run.resumed_from."""
    state = distributed.load_trainer_state(run.resumed_from, run.policy, run.optimizer)
    set_rng_state(state["rng"])
    run.start_step, run.evals = state["step"], state["evals"]
    run.run_id = state.get("run_id", "")
    run.final_recorded = run.evals["after"] is not None  # else a final row past it is dropped
    if run.start_step < cfg.rl.steps:  # more steps asked of a finished run: evaluate again
        run.evals["after"] = None
    log(f"resumed from {run.resumed_from} at step {run.start_step}")


def build_reference(cfg: Config, policy, device, start):
    """The KL term's frozen reference, only when rl.kl_coef > 0: LoRA's policy with its adapters
    off (no copy), or a frozen copy of the policy RL starts from."""
    if cfg.rl.kl_coef <= 0:
        return None
    if cfg.model.lora_rank:
        return policy.without_adapters()
    reference = build_policy(cfg, device, checkpoint=start)[0]
    reference.load_state_dict(policy.state_dict())
    return reference.requires_grad_(False).eval()


def check_world(cfg: Config):
    """What torchrun's number of ranks allows."""
    world = distributed.world_size()
    if cfg.rl.resample_rounds and world > 1:
        raise ConfigError("rl.resample_rounds (dynamic sampling) runs in one process: under "
                          "torchrun the refilled batch would have to move rollouts between "
                              "ranks")  # fmt: skip
    if cfg.rl.prompts_per_step % world:
        raise ConfigError(f"rl.prompts_per_step={cfg.rl.prompts_per_step} must be a multiple of "
                          f"the number of ranks ({world}): each samples an equal "
                              "share")  # fmt: skip


def weight_norm(policy) -> float:
    """The L2 norm of the trainable weights, over all ranks (FSDP2 shards hold a part each)."""
    params = [p for p in policy.parameters() if p.requires_grad]
    squares = torch.stack([p.detach().float().pow(2).sum() for p in params]).sum().item()  # 1 sync
    if distributed.is_sharded(policy):
        squares = distributed.sum_floats([squares])[0]
    return math.sqrt(squares)


def check_weights(run: Run, done, metrics, log):
    """Non-finite weights end the run as a non-finite loss does (Diverged, naming the last good
    checkpoint). A step that moves the weights' norm by more than half (an rl.lr far too large),
    or a loss far out of range, is warned of in the log; metrics get train/weight_norm_change,
    |norm after - norm before| / norm before (a lower bound of the update's relative size)."""
    norm = weight_norm(run.policy)
    if not math.isfinite(norm):
        raise Diverged(f"the weights are no longer finite after step {done}: the last good "
                       f"checkpoint is {latest_checkpoint(run.dir)} (lower rl.lr)")  # fmt: skip
    change = abs(norm - run.weight_norm) / max(run.weight_norm, 1e-12)
    run.weight_norm = norm
    metrics["train/weight_norm_change"] = change
    loss = metrics["train/loss"]
    if change > 0.5 or abs(loss) > 1e3:
        log(f"warning: step {done}: the weights' norm moved by {change:.3g} of itself and the loss "
            f"is {loss:.3g}: the update is far out of range (lower rl.lr)")  # fmt: skip


def save(cfg: Config, run: Run, step):
    """A checkpoint of `step` (checkpoint.py: atomic); refused when a weight is not finite."""
    params = run.policy.parameters()
    if distributed.any_rank(not all(torch.isfinite(p).all() for p in params)):
        raise Diverged(f"the weights are no longer finite at step {step}: not saved; the last "
                       f"good checkpoint is {latest_checkpoint(run.dir)} (lower "
                           "rl.lr)")  # fmt: skip
    state = {"step": step, "rng": rng_state(), "evals": run.evals, "run_id": run.run_id}
    settings = dataclasses.asdict(cfg)
    return distributed.save_checkpoint(
        run.dir,
        step,
        run.policy,
        run.optimizer,
        state,
        settings,
        # fmt: skip
        keep=cfg.run.keep_checkpoints,
        run_id=run.run_id,
    )


def run_eval(cfg: Config, run: Run) -> dict:
    """pass@k and cover@tau on the held-out problems (eval.py); under torchrun each rank samples a
    share of them."""
    problems = run.task.heldout[: cfg.eval.n_problems]
    e = cfg.eval
    with distributed.full_weights(run.policy) as sampler:
        # fmt: skip
        return evaluation.evaluate(
            sampler,
            run.tokenizer,
            problems,
            run.task.name,
            n=e.n_samples,
            max_new_tokens=cfg.task.max_new_tokens,
            temperature=e.temperature,
            top_p=e.top_p,
            ks=e.ks,
            seed=cfg.run.seed,
            reward_options=reward_options(cfg),
        )


def report(cfg: Config, run: Run, log):
    """Plots, summary.md and the held-out table (rank 0)."""
    evaluation.plot_run(run.dir)
    table = evaluation.summary_table(run.evals["before"] or {}, run.evals["after"], cfg.eval.ks)
    with open(os.path.join(run.dir, "summary.md"), "w") as f:
        f.write(table + "\n")
    log(f"\nheld-out {cfg.task.name}: {cfg.eval.n_problems} problems, pass@k from n = "
        f"{cfg.eval.n_samples} samples at temperature {cfg.eval.temperature}\n{table}\n"
        f"(plots and metrics in {run.dir}/)")  # fmt: skip


def progress_bar(cfg: Config, start: int):
    """A tqdm bar over all RL steps, from `start` (a resumed run shows where it stands), or None."""
    if not (cfg.run.progress and distributed.is_main()):
        return None
    from tqdm import tqdm

    return tqdm(total=cfg.rl.steps, initial=start, desc="RL", dynamic_ncols=True)


def main(argv=None):
    try:
        cfg, _ = parse_config(sys.argv[1:] if argv is None else argv, usage=__doc__)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    try:
        train(cfg)
        distributed.barrier()  # every rank is done (rank 0 plots last): none closes early
    except (ConfigError, RunError) as err:  # bad data, a model that cannot load, damage, divergence
        sys.exit(f"error: {err}")
    except KeyboardInterrupt as stop:  # 128 + the signal's number, as a shell reports it
        signum = getattr(stop, "signum", signal.SIGINT)
        if not isinstance(stop, Stopped):  # a signal outside the RL steps (an evaluation, a save)
            print(f"stopped by {signal.Signals(signum).name} outside an RL step: every finished "
                  f"step is saved; --resume continues from the last checkpoint",
                  file=sys.stderr)  # fmt: skip
        sys.exit(128 + signum)
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
