"""From a config to the things a run uses: the device, the task and the policy (with its tokenizer).

    cfg, _ = build.parse_config(["--config", "configs/maze.yaml"])
    task, (policy, tokenizer) = build.build_task(cfg), build.build_policy(cfg, device)

config.py holds the config alone; what needs the task registry, the model classes or Hugging Face
to check is checked here (`check_buildable`), still before anything is built or written, so every
bad setting is a one-line ConfigError before a run touches its directory. train.py, eval.py,
experiments.py and the benches build through this file.
"""

import math
import os

import torch
import yaml

import hf_policy
import reward
import tasks
from checkpoint import resolve_checkpoint
from config import Config, ConfigError, ModelConfig, config_from_dict, parse_args, reward_options
from model import GPT, GPTConfig
from tokenizer import CharTokenizer


def parse_config(argv, usage: str = "") -> tuple[Config, str]:
    """config.parse_args, then the checks that need the registries and the model code."""
    cfg, path = parse_args(argv, usage)
    check_buildable(cfg)
    return cfg, path


def check_buildable(cfg: Config):
    """The task exists (tasks.TASKS), math data and template are there, the Hugging Face options and
    LoRA hold."""
    if cfg.task.name not in tasks.TASKS:
        raise ConfigError(
            f"task.name '{cfg.task.name}' is unknown; known: {', '.join(tasks.TASKS)}"
        )
    if cfg.task.name == "math" and cfg.task.template not in tasks.MATH_TEMPLATES:
        raise ConfigError(
            f"task.template '{cfg.task.template}' is unknown; "
            f"known: {', '.join(tasks.MATH_TEMPLATES)}"
        )
    m = cfg.model
    if m.hf:
        try:  # the same checks load_hf makes, here before anything is built
            hf_policy.check_options(m.hf, m.dtype, m.decode)
            hf_policy.check_lora(lora_options(m), m.base_dtype)
        except ValueError as err:
            raise ConfigError(str(err)) from None
    # LoRA's KL reference is the base with its adapters off: with trained adapters to start from, it
    # is not the start
    adapter_init = bool(m.lora_rank and m.init) and hf_policy.holds_adapters(
        resolve_checkpoint(m.init)
    )
    if m.lora_rank and cfg.rl.kl_coef > 0 and (adapter_init or cfg.sft.steps > 0 and not m.init):
        raise ConfigError(
            "rl.kl_coef with LoRA: the KL reference is the base model with its adapters off, not "
            "the "
            "adapters a warm start or model.init trained; set sft.steps: 0 (or rl.kl_coef: 0)"
        )


def lora_options(m: ModelConfig):
    """The model.lora_* fields for hf_policy, or None when LoRA is off."""
    return (
        hf_policy.LoraOptions(m.lora_rank, m.lora_alpha, list(m.lora_targets), m.lora_dropout)
        if m.lora_rank
        else None
    )


def pick_device(name: str = "auto") -> torch.device:
    """run.device: cuda, cuda:N, mps or cpu; auto picks the first this machine has. One it lacks is
    a ConfigError."""
    if name == "auto":
        name = next(d for d in ("cuda", "mps", "cpu") if device_available(d))
    if not device_available(name):
        here = [d for d in ("cuda", "mps", "cpu") if device_available(d)]
        raise ConfigError(
            f"run.device {name}: this machine has no such device; it has {', '.join(here)} "
            f"(run.device auto picks the first)"
        )
    return torch.device(name)


def device_available(name: str) -> bool:
    if name.startswith("cuda"):
        index = int(name[5:]) if name[5:].isdigit() else 0
        return torch.cuda.is_available() and index < torch.cuda.device_count()
    if name == "mps":
        return bool(getattr(torch.backends, "mps", None)) and torch.backends.mps.is_available()
    return name == "cpu"


def build_task(cfg: Config):
    """The task of task.name (tasks.TASKS); a bad data file or a task too small is a one-line
    ConfigError."""
    try:
        task = tasks.TASKS[cfg.task.name](cfg.task)
        if (
            cfg.task.name == "math"
        ):  # a gold answer that cannot be verified in time is refused here, once
            reward.check_golds([*task.heldout, *task.train], **reward_options(cfg))
        return task
    except (
        ValueError
    ) as err:  # the message names the file, line and field, or the setting to change
        raise ConfigError(str(err)) from None


def build_policy(cfg: Config, device, checkpoint=None):
    """(policy, tokenizer): the tiny GPT or, with model.hf, a Hugging Face model; fresh or from a
    checkpoint."""
    m = cfg.model
    if m.hf:
        return build_hf_policy(m, device, checkpoint)
    tokenizer = CharTokenizer()
    if checkpoint:
        policy = GPT.from_weights(checkpoint, device)
    else:
        vocab_size = 64 * math.ceil(tokenizer.vocab_size / 64)
        gpt_config = GPTConfig(vocab_size=vocab_size, block_size=m.block_size, n_layer=m.n_layer,
                               n_head=m.n_head, n_embd=m.n_embd,
                               tie_embeddings=m.tie_embeddings)  # fmt: skip
        policy = GPT(gpt_config).to(device)
    policy.length_buckets = cfg.rl.length_buckets  # the training forward's buckets (model.py)
    policy.shared_prompt_cache = cfg.rl.shared_prompt_cache  # the sampler's cache (model.py)
    return policy, tokenizer


def build_hf_policy(m: ModelConfig, device, checkpoint=None):
    """An HF checkpoint is a save_pretrained folder (it loads like the original model); a LoRA
    checkpoint is a
    folder of adapters, and model.hf is their base."""
    adapters = checkpoint if checkpoint and hf_policy.holds_adapters(checkpoint) else None
    try:
        policy, tokenizer = hf_policy.load_hf(
            m.hf if adapters else checkpoint or m.hf,
            device,
            chat=m.chat,
            system_prompt=m.system_prompt,
            dtype=m.dtype,
            gradient_checkpointing=m.gradient_checkpointing,
            compile=m.compile,
            decode=m.decode,
            lora=lora_options(m),
            base_dtype=m.base_dtype,
        )
        if adapters:
            policy.load_weights(adapters)
        return policy, tokenizer
    except ValueError as err:  # a missing model or a tokenizer without a chat template: one line
        raise ConfigError(str(err)) from None


def check_prompt_lengths(cfg: Config, task, tokenizer, context: int):
    """Refuse, naming the file and line (or the held-out problem), a prompt that leaves the model
    too few positions
    for task.max_new_tokens: every held-out problem, and every training problem of a data file."""
    room = context - cfg.task.max_new_tokens
    problems = [*task.heldout, *getattr(task, "train", [])]
    for index, problem in enumerate(problems):
        where = problem.origin or f"held-out {task.name} problem {index}"
        if (
            len(problem.prompt) > 64 * context
        ):  # far too long in characters: no need to tokenize megabytes
            length, unit = len(problem.prompt), "characters"
        else:
            length, unit = len(tokenizer.encode_prompt(problem.prompt)), "tokens"
        if length > room:
            raise ConfigError(
                f"{where}: the prompt is {length} {unit}, more than the {room} the model's "
                f"{context} "
                f"positions leave beside task.max_new_tokens={cfg.task.max_new_tokens}"
            )


def load_for_eval(path: str):
    """(cfg, policy, tokenizer, task) from a checkpoint directory, for eval.py."""
    path = resolve_checkpoint(path)
    config_file = os.path.join(path, "config.yaml")
    if not os.path.isfile(config_file):
        raise ConfigError(f"no checkpoint at {path} (config.yaml missing)")
    with open(config_file) as f:
        cfg = config_from_dict(yaml.safe_load(f), config_file)
    policy, tokenizer = build_policy(cfg, pick_device(cfg.run.device), checkpoint=path)
    return cfg, policy, tokenizer, build_task(cfg)
