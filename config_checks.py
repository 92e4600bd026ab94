"""The config's checks: every numeric field's range, every choice field's choices, and the rules
across fields (validate); one ConfigError whose one-line message names the key and the problem.

config.py reads a config and calls these; build.py adds the checks that need the task registry or
the model code. Nothing here builds anything.
"""

import dataclasses
import math
import os

import advantage
import distributed
from checkpoint import flatten, resolve_checkpoint


class ConfigError(ValueError):
    """A bad config: the message names the key and the problem, in one line."""


PHASE_KEYS = {"until_step": 0, "advantage": "", "k": 0}  # a phase's keys; coerce types by these


def coerce(key: str, value, default):
    """Check a YAML/CLI value against the type of the field's default."""
    expected = type(default)
    if expected is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML reads 1e-3 (no dot) as a string
            return float(value)
        except ValueError:
            pass
    if expected is str and value is None:
        return ""
    if not isinstance(value, expected) or (expected is int and isinstance(value, bool)):
        raise ConfigError(f"{key} must be {expected.__name__}, got {value!r}")
    return value


def phases(cfg) -> list[dict]:
    """The advantage schedule: [{until_step, advantage, k}], the last phase running to the end."""
    if not cfg.rl.schedule:
        return [{"until_step": cfg.rl.steps, "advantage": cfg.rl.advantage, "k": cfg.rl.k}]
    return cfg.rl.schedule


def active_phase(cfg, step: int) -> dict:
    """The first phase whose until_step lies beyond `step` (steps count from 0)."""
    schedule = phases(cfg)
    return next((p for p in schedule if step < p["until_step"]), schedule[-1])


# every numeric field's allowed range: (test, what the message says); checked when it is loaded
POSITIVE, NON_NEGATIVE = (lambda v: v > 0, "> 0"), (lambda v: v >= 0, ">= 0")
AT_LEAST_1, PROBABILITY = (lambda v: v >= 1, ">= 1"), (lambda v: 0 < v <= 1, "in (0, 1]")
SEED = (lambda v: 0 <= v < 2**32, "in [0, 2**32)")  # rollout.combine_seeds keeps 32 bits
RANGES = {
    "run.checkpoint_every": AT_LEAST_1,
    "run.keep_checkpoints": (lambda v: v >= 0, ">= 0 (0 keeps every one)"),
    "run.threads": NON_NEGATIVE,
    "run.seed": SEED,
    "task.seed": SEED,
    "model.n_layer": AT_LEAST_1,
    "model.n_head": AT_LEAST_1,
    "model.n_embd": AT_LEAST_1,
    "model.block_size": AT_LEAST_1,
    "model.lora_rank": NON_NEGATIVE,
    "model.lora_alpha": POSITIVE,
    "model.lora_dropout": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "task.min_size": (lambda v: v >= 3, ">= 3"),
    "task.max_size": (lambda v: v >= 3, ">= 3"),
    "task.loop_frac": (lambda v: 0 <= v <= 1, "in [0, 1]"),
    "task.n_numbers": AT_LEAST_1,
    "task.max_number": AT_LEAST_1,
    "task.n_heldout": AT_LEAST_1,
    "task.max_new_tokens": AT_LEAST_1,
    "sft.steps": NON_NEGATIVE,
    "sft.batch_size": AT_LEAST_1,
    "sft.lr": POSITIVE,
    "sft.warmup": NON_NEGATIVE,
    "sft.weight_decay": NON_NEGATIVE,
    "sft.buckets": AT_LEAST_1,
    "rl.steps": NON_NEGATIVE,
    "rl.prompts_per_step": AT_LEAST_1,
    "rl.responses_per_prompt": (
        lambda v: v >= 2,
        ">= 2 (group advantages compare a prompt's responses)",
    ),
    "rl.k": AT_LEAST_1,
    "rl.n_groups": NON_NEGATIVE,
    "rl.lr": POSITIVE,
    "rl.warmup": NON_NEGATIVE,
    "rl.weight_decay": NON_NEGATIVE,
    "rl.adam_beta2": (lambda v: 0 < v < 1, "in (0, 1)"),
    "rl.epochs": AT_LEAST_1,
    "rl.minibatches": AT_LEAST_1,
    "rl.micro_batch": NON_NEGATIVE,
    "rl.rollout_prompts": NON_NEGATIVE,
    "rl.length_buckets": AT_LEAST_1,
    "rl.eps_low": (lambda v: 0 <= v < 1, "in [0, 1)"),
    "rl.eps_high": NON_NEGATIVE,
    "rl.kl_coef": NON_NEGATIVE,
    "rl.grad_clip": POSITIVE,
    "rl.temperature": POSITIVE,
    "rl.top_p": PROBABILITY,
    "rl.top_k": NON_NEGATIVE,
    "rl.tis_cap": (
        lambda v: v == 0 or v >= 1,
        "0 (off) or >= 1 (a cap below 1 would shrink every token)",
    ),
    "rl.dual_clip": NON_NEGATIVE,
    "rl.resample_rounds": NON_NEGATIVE,
    "rl.max_skipped_updates": NON_NEGATIVE,
    "eval.every": NON_NEGATIVE,
    "eval.n_samples": AT_LEAST_1,
    "eval.n_problems": AT_LEAST_1,
    "eval.temperature": (lambda v: v >= 0, ">= 0 (0 is greedy)"),
    "eval.top_p": PROBABILITY,
    "reward.workers": NON_NEGATIVE,
    "reward.timeout_s": POSITIVE,
    "rl.rs_beta": (lambda v: True, "a finite number"),
}
CHOICES = {
    "reward.backend": ("sympy", "math_verify"),
    "rl.lr_schedule": ("constant", "cosine"),
    "rl.loss_agg": ("token_mean", "seq_mean", "constant"),
    "rl.logprob": ("fused", "naive"),
    "rl.old_logprobs": ("recompute", "sampler"),
    "rl.entropy_mean": ("token", "response"),
    "run.distributed": distributed.MODES,
    "run.tracker": ("none", "tensorboard", "wandb"),
}
DEVICES = ("auto", "cpu", "cuda", "mps")  # and cuda:N


def check_ranges(cfg):
    """Every field in RANGES within its range (numbers finite) and every field in CHOICES one of its
    choices."""
    values = flatten(dataclasses.asdict(cfg))  # section.key -> value
    for key, (test, allowed) in RANGES.items():
        value = values[key]  # an int is finite, and may be too large for a float
        if (isinstance(value, float) and not math.isfinite(value)) or not test(value):
            raise ConfigError(f"{key}={value} is out of range: it must be {allowed}")
    for key, choices in CHOICES.items():
        if values[key] not in choices:
            raise ConfigError(f"{key} '{values[key]}' must be one of {', '.join(choices)}")
    device = cfg.run.device
    if device not in DEVICES and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise ConfigError(f"run.device '{device}' must be one of {', '.join(DEVICES)} or cuda:N")
    m = cfg.model
    if m.n_embd % m.n_head or (m.n_embd // m.n_head) % 2:
        raise ConfigError(
            f"model.n_embd={m.n_embd} must split into model.n_head={m.n_head} heads of an even "
            "width (rotary embeddings rotate pairs)"
        )
    # the largest maze grid, a newline per row and BOS, then the response
    if cfg.task.name == "maze" and not m.hf:
        longest = cfg.task.max_size * (cfg.task.max_size + 1) + 1 + cfg.task.max_new_tokens
        if m.block_size < longest:
            raise ConfigError(
                f"model.block_size={m.block_size} is shorter than the longest maze prompt plus "
                f"task.max_new_tokens ({longest} tokens at task.max_size={cfg.task.max_size})"
            )


def validate(cfg):
    """Every check that needs only the config (build.check_buildable does the rest)."""
    check_ranges(cfg)
    validate_schedule(cfg)
    parts = cfg.run.name.replace("\\", "/").split("/")  # a folder in run.out_dir (study/a_s0)
    if not all(parts) or any(part[0] in "_." for part in parts):
        raise ConfigError(f"run.name {cfg.run.name!r} must be a folder in run.out_dir: names "
                          "not empty, none starting with _ or . (beside _warmstart/)")  # fmt: skip
    rl, N = cfg.rl, cfg.rl.responses_per_prompt
    if N % rl.minibatches:
        raise ConfigError(f"rl.minibatches={rl.minibatches} must divide rl.responses_per_prompt="
                          f"{N} (each mini-batch takes an equal share of every prompt's "
                          "responses)")  # fmt: skip
    if rl.dual_clip and not rl.dual_clip > 1 + rl.eps_high:
        raise ConfigError(f"rl.dual_clip={rl.dual_clip} must be 0 (off) or above 1 + rl.eps_high = "
                          f"{1 + rl.eps_high}")  # fmt: skip
    if rl.tis_cap and rl.old_logprobs == "sampler":
        raise ConfigError("rl.tis_cap weighs by the trainer's old log-probs over the sampler's: "
                          "it needs rl.old_logprobs recompute")  # fmt: skip
    if cfg.task.name == "math":
        validate_math(cfg)
    if cfg.run.distributed == "fsdp" and not cfg.model.hf:
        raise ConfigError("run.distributed: fsdp shards Hugging Face models (model.hf); the tiny "
                          "GPT uses ddp")  # fmt: skip
    validate_lora(cfg)
    if cfg.model.init and not os.path.isdir(resolve_checkpoint(cfg.model.init)):
        raise ConfigError(f"model.init: no checkpoint at {cfg.model.init}")
    for k in cfg.eval.ks:  # each an int, not a bool
        coerce("eval.ks", k, 0)
    bad_ks = [k for k in cfg.eval.ks if not 1 <= k <= cfg.eval.n_samples]
    if bad_ks:
        raise ConfigError(f"eval.ks {bad_ks} must lie in 1..eval.n_samples={cfg.eval.n_samples}")
    if cfg.eval.n_problems > cfg.task.n_heldout:
        raise ConfigError(f"eval.n_problems={cfg.eval.n_problems} exceeds "
                          f"task.n_heldout={cfg.task.n_heldout}")  # fmt: skip
    if cfg.task.max_size < cfg.task.min_size:
        raise ConfigError(f"task.max_size={cfg.task.max_size} is below "
                          f"task.min_size={cfg.task.min_size}")  # fmt: skip


def validate_schedule(cfg):
    """Each phase of rl.schedule (or rl.advantage and rl.k): a known estimator, 1 <= k < N."""
    rl, N = cfg.rl, cfg.rl.responses_per_prompt
    for i, phase in enumerate(phases(cfg)):
        where = f"rl.schedule[{i}]" if rl.schedule else "rl"
        if not isinstance(phase, dict) or set(phase) != set(PHASE_KEYS):
            raise ConfigError(f"{where} must be a mapping with exactly the keys "
                              f"{', '.join(PHASE_KEYS)}, got {phase!r}")  # fmt: skip
        for key, default in PHASE_KEYS.items():  # a bool is no int, a list no estimator
            coerce(f"{where}.{key}", phase[key], default)
        if phase["advantage"] not in advantage.ESTIMATORS:
            raise ConfigError(f"{where}.advantage '{phase['advantage']}' is not an estimator; "
                              f"known: {', '.join(advantage.ESTIMATORS)}")  # fmt: skip
        if not 1 <= phase["k"] < N:
            raise ConfigError(f"{where}.k={phase['k']} must satisfy 1 <= k < "
                              f"rl.responses_per_prompt={N} (k = N gives no signal)")  # fmt: skip
        if phase["advantage"] == "passk_full" and N % phase["k"]:  # leftovers: sampled, dropped
            raise ConfigError(f"{where}: passk_full needs rl.responses_per_prompt={N} to be a "
                              f"multiple of k={phase['k']} (the N mod k leftovers would cost "
                              f"samples and carry no advantage)")  # fmt: skip
    steps = [p["until_step"] for p in phases(cfg)]
    if steps != sorted(steps):
        raise ConfigError(f"rl.schedule until_step values must increase, got {steps}")


def validate_math(cfg):
    t = cfg.task
    for key, path in (("task.train_file", t.train_file), ("task.test_file", t.test_file)):
        if (path or key == "task.train_file") and not os.path.isfile(path):
            raise ConfigError(f"{key}: no math data file at '{path}'")
    if cfg.sft.steps > 0:
        raise ConfigError(
            "task.name=math has no demonstrations for a warm start: set sft.steps: 0 "
            "(and start from a pretrained model.hf)"
        )


def validate_lora(cfg):
    """LoRA: Hugging Face models only, DDP (not FSDP2), and a KL reference that is the policy RL
    starts from."""
    m = cfg.model
    if not all(isinstance(target, str) and target for target in m.lora_targets):
        raise ConfigError(f"model.lora_targets must be module names, got {m.lora_targets!r}")
    if not m.lora_rank and (m.lora_targets or m.lora_dropout):
        raise ConfigError(
            "model.lora_targets / model.lora_dropout need model.lora_rank > 0 (LoRA is off)"
        )
    if not m.lora_rank and m.base_dtype == "auto":
        return
    if not m.hf:
        raise ConfigError(
            "model.lora_rank / model.base_dtype are for Hugging Face models (model.hf); "
            "the tiny GPT trains whole"
        )
    if m.lora_rank and cfg.run.distributed == "fsdp":
        raise ConfigError(
            "run.distributed: fsdp with LoRA is not supported: the adapters are small, every rank "
            "holds the model (ddp, which auto picks)"
        )
