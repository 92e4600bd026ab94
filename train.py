"""Train a policy with RL from verifiable rewards: warm start, then PPO/GRPO with Pass@k advantages.

    python train.py --config configs/maze.yaml               # the maze demo (CPU, minutes)
    python train.py --config configs/maze.yaml --rl.k 8      # any field can be overridden
    python train.py --config configs/maze.yaml --resume      # continue from runs/<name>/latest
    python train.py --help                                   # every field with its meaning
    torchrun --nproc_per_node=8 train.py --config ...        # data parallel: DDP, or FSDP2 for model.hf

Stage 1, warm start: supervised training on the task's demonstrations (BFS paths for
mazes), cached under a key of its own config in runs/_warmstart/, so that later runs
(other advantages, other seeds) reuse it; skipped when `model.init` names a checkpoint.

Stage 2, RL. One step, as docs/design.md draws it:
  1. sample B prompts, N responses each (rollout.py: KV cache, seed per prompt)
  2. score them (reward.py) -> rewards [B, N]
  3. recompute old log-probs and per-token entropy with the training path, no grad
  4. advantages from the active phase's estimator (advantage.py) -> [B, N]
  5. epochs x mini-batches of PPO-clip updates (clip-higher), token-mean loss,
     optional k3 KL to a frozen reference, gradient clipping, AdamW; prompts whose
     advantages are all 0 skip the forward/backward (same gradient: rl.skip_zero_advantage)
What it keeps from DAPO (the paper's recipe): clip-higher and token-level loss. What it
leaves out by default: the KL term, the entropy bonus, dynamic sampling.

A run writes runs/<name>/: config.yaml, metrics.jsonl, ckpt_<step>/ (atomic), latest,
curves.png and passk.png. Ctrl-C saves a checkpoint before exiting.

Under torchrun (distributed.py) the batch stays global: rank r samples a contiguous share of the
B prompts, all N responses of a prompt on one rank, with the prompt's global seed; rewards and
per-prompt entropies are gathered so every rank computes the estimator on the whole batch; loss
denominators are global token (or row) counts; so the update equals a single process's at any
number of ranks. Every rank runs the same warm start (rank 0 writes its cache; the wrapper then
gives every rank rank 0's weights). Rank 0 alone logs, plots and prints; Ctrl-C does not save (the
ranks may stop at different collectives): resume from the last periodic checkpoint.
"""
import ast
import dataclasses
import difflib
import hashlib
import inspect
import json
import math
import os
import random
import sys
import time
import typing
from dataclasses import dataclass, field

import torch
import yaml

import advantage
import distributed
import eval as evaluation
import model as models
import reward
import tasks
from rollout import combine_seeds, concat_rollouts, generate, left_pad
from tokenizer import CharTokenizer


# ----------------------------------------------------------------------------- configuration

@dataclass
class RunConfig:
    name: str = "maze"
    """run directory name: outputs go to <out_dir>/<name>/"""
    out_dir: str = "runs"
    """where run directories (and the warm-start cache, _warmstart/) live"""
    seed: int = 0
    """run seed: problems, sampling and mini-batch order all derive from it"""
    device: str = "auto"
    """cuda, mps or cpu; auto picks the first available"""
    threads: int = 0
    """torch CPU threads (0 = torch's default)"""
    checkpoint_every: int = 50
    """RL steps between checkpoints (the last step always saves)"""
    keep_checkpoints: int = 2
    """checkpoints kept per run (older ones are deleted)"""
    resume: bool = False
    """continue from runs/<name>/latest (also: --resume)"""
    progress: bool = True
    """show a tqdm progress bar"""
    distributed: str = "auto"
    """under torchrun: ddp (whole model per rank), fsdp (FSDP2 shards; model.hf only), auto (fsdp for model.hf)"""


@dataclass
class ModelConfig:
    n_layer: int = 4
    """tiny GPT: transformer blocks"""
    n_head: int = 4
    """tiny GPT: attention heads"""
    n_embd: int = 128
    """tiny GPT: width"""
    block_size: int = 512
    """tiny GPT: longest prompt + response"""
    tie_embeddings: bool = True
    """tiny GPT: LM head shares the token embedding"""
    init: str = ""
    """checkpoint directory to start RL from; skips the warm start"""
    hf: str = ""
    """Hugging Face causal LM (Hub name or local folder) instead of the tiny GPT, e.g. Qwen/Qwen2.5-0.5B-Instruct"""
    chat: bool = False
    """hf: format prompts with the tokenizer's chat template (instruct models); false = plain text (base models)"""
    system_prompt: str = ""
    """hf, chat: system message before the prompt ("" = none, or the template's own default)"""
    dtype: str = "auto"
    """hf: compute dtype: auto (bf16 autocast on CUDA, float32 elsewhere), bfloat16 or float32; weights stay float32"""
    gradient_checkpointing: bool = False
    """hf: recompute activations in the backward pass (less memory, about a third more compute)"""
    compile: bool = False
    """hf: torch.compile the transformer of the log-prob forward (training)"""
    decode: str = "dynamic"
    """hf sampler cache: dynamic (DynamicCache), static (preallocated StaticCache), compiled (static + compiled step)"""


@dataclass
class TaskConfig:
    name: str = "maze"
    """maze, countdown, arithmetic or math (problems from task.train_file)"""
    min_size: int = 5
    """maze: smallest grid side (odd sizes are used)"""
    max_size: int = 9
    """maze: largest grid side"""
    loop_frac: float = 0.1
    """maze: share of inner walls opened after carving (0 = one path only)"""
    n_numbers: int = 4
    """countdown: numbers per problem; arithmetic: terms per expression"""
    max_number: int = 20
    """countdown / arithmetic: largest number"""
    seed: int = 0
    """data seed: the held-out set and the problem streams (the same for every run.seed)"""
    n_heldout: int = 256
    """held-out problems (never seen in training)"""
    max_new_tokens: int = 64
    """longest response"""
    train_file: str = ""
    """math: training problems, a .jsonl or .parquet file"""
    test_file: str = ""
    """math: held-out problems ("" = hold out task.n_heldout problems of train_file)"""
    prompt_field: str = "prompt"
    """math: the field that holds the problem text"""
    answer_field: str = "answer"
    """math: the field that holds the gold answer"""
    template: str = "math"
    """math: prompt template: math (MATH-style), gsm8k (word problems) or plain (the text as it is)"""


@dataclass
class SFTConfig:
    steps: int = 600
    """warm-start optimizer steps (0 = no warm start)"""
    batch_size: int = 64
    """demonstrations per step"""
    lr: float = 1e-3
    """peak learning rate (linear warmup, cosine decay to 10 %)"""
    warmup: int = 50
    """warmup steps"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    buckets: int = 4
    """each batch runs in this many chunks of similar prompt length (less padding)"""


@dataclass
class RLConfig:
    steps: int = 100
    """RL steps"""
    prompts_per_step: int = 32
    """B: prompts sampled per step (the global batch, whatever the number of ranks)"""
    responses_per_prompt: int = 16
    """N: responses per prompt"""
    advantage: str = "passk_analytic"
    """estimator in advantage.ESTIMATORS (grpo, passk_full, passk_bootstrap, passk_analytic, ...)"""
    k: int = 4
    """k of the Pass@k estimators (1 <= k < N)"""
    n_groups: int = 0
    """passk_bootstrap: groups drawn per prompt (0 = N)"""
    schedule: list = field(default_factory=list)
    """phases [{until_step, advantage, k}, ...]; empty = one phase from advantage and k"""
    lr: float = 1e-4
    """AdamW learning rate"""
    warmup: int = 5
    """linear lr warmup, in RL steps"""
    lr_schedule: str = "constant"
    """after the warmup: constant, or cosine (decay to 10 % of rl.lr at rl.steps)"""
    weight_decay: float = 0.0
    """AdamW weight decay"""
    adam_beta2: float = 0.95
    """AdamW beta2 (the warm start uses 0.95)"""
    epochs: int = 1
    """passes over each step's samples"""
    minibatches: int = 4
    """optimizer updates per epoch; each takes an equal random share of every prompt's responses"""
    micro_batch: int = 0
    """rows per forward/backward (gradient accumulation); 0 = a whole mini-batch at once"""
    rollout_prompts: int = 0
    """prompts per sampling call (their N responses each): bounds the KV cache; 0 = all of a rank's prompts"""
    eps_low: float = 0.2
    """PPO clip below 1 (ratio >= 1 - eps_low)"""
    eps_high: float = 0.28
    """PPO clip above 1 (clip-higher, DAPO)"""
    loss_agg: str = "token_mean"
    """token_mean (over all response tokens of a mini-batch), seq_mean, or constant (sum / rows / max_new_tokens)"""
    kl_coef: float = 0.0
    """k3 KL penalty to a frozen copy of the initial policy (0 = no reference model)"""
    grad_clip: float = 1.0
    """max gradient norm"""
    temperature: float = 1.0
    """sampling temperature (log-probs and entropy use the same)"""
    top_p: float = 1.0
    """nucleus sampling during training"""
    top_k: int = 0
    """top-k sampling during training (0 = off)"""
    mask_truncated: bool = False
    """drop responses without EOS from the loss (default: score them as they are)"""
    skip_zero_advantage: bool = True
    """leave prompts whose advantages are all 0 out of the update's forward/backward (same gradient, less compute)"""
    logprob: str = "fused"
    """fused (chunked, never holds [tokens, vocab]) or naive (full log_softmax)"""


@dataclass
class EvalConfig:
    before: bool = True
    """evaluate the starting policy before RL (the 'warm start' row of the summary)"""
    every: int = 25
    """RL steps between held-out evaluations (0 = only before and after RL)"""
    n_samples: int = 16
    """samples per held-out problem for pass@k"""
    n_problems: int = 256
    """held-out problems evaluated (<= task.n_heldout)"""
    temperature: float = 1.0
    """sampling temperature for pass@k"""
    top_p: float = 1.0
    """nucleus sampling for pass@k"""
    ks: list = field(default_factory=lambda: [1, 2, 4, 8, 16])
    """k values reported (each <= n_samples)"""


@dataclass
class RewardConfig:
    backend: str = "sympy"
    """math verifier: sympy (ours) or math_verify (Hugging Face's, if installed)"""
    workers: int = 2
    """math verifier worker processes"""
    timeout_s: float = 5.0
    """per-answer time limit of the math verifier"""


@dataclass
class Config:
    run: RunConfig = field(default_factory=RunConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    sft: SFTConfig = field(default_factory=SFTConfig)
    rl: RLConfig = field(default_factory=RLConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    reward: RewardConfig = field(default_factory=RewardConfig)


class ConfigError(ValueError):
    """A bad config: the message names the key and the problem, in one line."""


PHASE_KEYS = ("until_step", "advantage", "k")


def field_docs() -> dict:
    """'section.key' -> the docstring under that field in this file (the --help text)."""
    with open(__file__) as f:
        tree = ast.parse(f.read())
    docs = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name.endswith("Config") and node.name != "Config":
            section = node.name[:-len("Config")].lower()
            for item, after in zip(node.body, node.body[1:]):
                documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                if isinstance(item, ast.AnnAssign) and documented:
                    docs[f"{section}.{item.target.id}"] = after.value.value
    return docs


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


def apply_settings(cfg: Config, settings: dict, origin: str):
    """Apply {section: {key: value}} to cfg; an unknown section or key is an error that names it."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for section, values in (settings or {}).items():
        if section not in sections:
            raise ConfigError(f"unknown config section '{section}' in {origin}{_suggest(section, sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section '{section}' in {origin} must be a mapping of keys to values")
        target = sections[section]
        known = {f.name for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown config key '{section}.{key}' in {origin}{_suggest(key, known)}")
            setattr(target, key, coerce(f"{section}.{key}", value, getattr(target, key)))


def _suggest(name, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def parse_args(argv) -> tuple[Config, str]:
    """--config FILE, --resume, --help, and --section.key VALUE overrides (VALUE parsed as YAML)."""
    cfg, config_path, overrides, i = Config(), "", {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print_help()
            sys.exit(0)
        if arg == "--resume":
            overrides.setdefault("run", {})["resume"] = True
            i += 1
            continue
        if not arg.startswith("--"):
            raise ConfigError(f"unexpected argument '{arg}' (overrides look like --rl.k 8)")
        key, _, value = arg[2:].partition("=")
        if not value:
            if i + 1 >= len(argv):
                raise ConfigError(f"--{key} needs a value")
            value, i = argv[i + 1], i + 1
        i += 1
        if key == "config":
            config_path = value
            continue
        if "." not in key:
            raise ConfigError(f"unknown option '--{key}' (overrides look like --section.key value)")
        section, _, name = key.partition(".")
        overrides.setdefault(section, {})[name] = yaml.safe_load(value)
    if config_path:
        load_config_file(cfg, config_path)
    apply_settings(cfg, overrides, "the command line")
    validate(cfg)
    return cfg, config_path


def load_config_file(cfg: Config, path: str, seen=()):
    """Apply a YAML config; a top-level `base: other.yaml` (relative to this file) is applied first."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if os.path.abspath(path) in seen:
        raise ConfigError(f"config {path} includes itself through 'base'")
    with open(path) as f:
        settings = yaml.safe_load(f) or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    base = settings.pop("base", None)
    if base:
        load_config_file(cfg, os.path.join(os.path.dirname(path), base), seen + (os.path.abspath(path),))
    apply_settings(cfg, settings, path)


def print_help():
    print(__doc__)
    defaults, docs = config_to_dict(Config()), field_docs()
    for section, values in defaults.items():
        print(f"{section}:")
        for key, value in values.items():
            print(f"  --{section}.{key} {json.dumps(value)}\n      {docs.get(f'{section}.{key}', '')}")


def config_to_dict(cfg: Config) -> dict:
    return dataclasses.asdict(cfg)


def config_from_dict(settings: dict, origin: str) -> Config:
    cfg = Config()
    apply_settings(cfg, settings, origin)
    return cfg


def phases(cfg: Config) -> list[dict]:
    """The advantage schedule: [{until_step, advantage, k}], the last phase running to the end."""
    if not cfg.rl.schedule:
        return [{"until_step": cfg.rl.steps, "advantage": cfg.rl.advantage, "k": cfg.rl.k}]
    return cfg.rl.schedule


def active_phase(cfg: Config, step: int) -> dict:
    """The first phase whose until_step lies beyond `step` (steps count from 0)."""
    schedule = phases(cfg)
    return next((p for p in schedule if step < p["until_step"]), schedule[-1])


def validate(cfg: Config):
    rl, N = cfg.rl, cfg.rl.responses_per_prompt
    if N < 2:
        raise ConfigError(f"rl.responses_per_prompt={N}: group advantages need at least 2 responses per prompt")
    for i, phase in enumerate(phases(cfg)):
        where = f"rl.schedule[{i}]" if rl.schedule else "rl"
        if not isinstance(phase, dict) or set(phase) != set(PHASE_KEYS):
            raise ConfigError(f"{where} must be a mapping with exactly the keys {', '.join(PHASE_KEYS)}, got {phase!r}")
        if phase["advantage"] not in advantage.ESTIMATORS:
            raise ConfigError(f"{where}.advantage '{phase['advantage']}' is not an estimator; "
                              f"known: {', '.join(advantage.ESTIMATORS)}")
        if not isinstance(phase["k"], int) or not 1 <= phase["k"] < N:
            raise ConfigError(f"{where}.k={phase['k']} must satisfy 1 <= k < rl.responses_per_prompt={N} "
                              f"(k = N gives no signal)")
        if not isinstance(phase["until_step"], int):
            raise ConfigError(f"{where}.until_step must be an integer, got {phase['until_step']!r}")
    steps = [p["until_step"] for p in phases(cfg)]
    if steps != sorted(steps):
        raise ConfigError(f"rl.schedule until_step values must increase, got {steps}")
    if N % rl.minibatches:
        raise ConfigError(f"rl.minibatches={rl.minibatches} must divide rl.responses_per_prompt={N} "
                          f"(each mini-batch takes an equal share of every prompt's responses)")
    if rl.lr_schedule not in ("constant", "cosine"):
        raise ConfigError(f"rl.lr_schedule '{rl.lr_schedule}' must be constant or cosine")
    if rl.loss_agg not in ("token_mean", "seq_mean", "constant"):
        raise ConfigError(f"rl.loss_agg '{rl.loss_agg}' must be token_mean, seq_mean or constant")
    if rl.logprob not in ("fused", "naive"):
        raise ConfigError(f"rl.logprob '{rl.logprob}' must be fused or naive")
    if cfg.task.name not in TASK_NAMES:
        raise ConfigError(f"task.name '{cfg.task.name}' is unknown; known: {', '.join(TASK_NAMES)}")
    if cfg.task.name == "math":
        validate_math(cfg)
    if cfg.model.hf:
        validate_hf(cfg.model)
    if cfg.run.distributed not in distributed.MODES:
        raise ConfigError(f"run.distributed '{cfg.run.distributed}' must be one of {', '.join(distributed.MODES)}")
    if cfg.run.distributed == "fsdp" and not cfg.model.hf:
        raise ConfigError("run.distributed: fsdp shards Hugging Face models (model.hf); the tiny GPT uses ddp")
    if cfg.model.init and not os.path.isdir(resolve_checkpoint(cfg.model.init)):
        raise ConfigError(f"model.init: no checkpoint at {cfg.model.init}")
    bad_ks = [k for k in cfg.eval.ks if not isinstance(k, int) or not 1 <= k <= cfg.eval.n_samples]
    if bad_ks:
        raise ConfigError(f"eval.ks {bad_ks} must lie in 1..eval.n_samples={cfg.eval.n_samples}")
    if cfg.eval.n_problems > cfg.task.n_heldout:
        raise ConfigError(f"eval.n_problems={cfg.eval.n_problems} exceeds task.n_heldout={cfg.task.n_heldout}")


def validate_math(cfg: Config):
    t = cfg.task
    for key, path in (("task.train_file", t.train_file), ("task.test_file", t.test_file)):
        if (path or key == "task.train_file") and not os.path.isfile(path):
            raise ConfigError(f"{key}: no math data file at '{path}'")
    if t.template not in tasks.MATH_TEMPLATES:
        raise ConfigError(f"task.template '{t.template}' is unknown; known: {', '.join(tasks.MATH_TEMPLATES)}")
    if cfg.sft.steps > 0:
        raise ConfigError("task.name=math has no demonstrations for a warm start: set sft.steps: 0 "
                          "(and start from a pretrained model.hf)")


def validate_hf(m: ModelConfig):
    if models.looks_like_path(m.hf) and not os.path.isdir(os.path.expanduser(m.hf)):
        raise ConfigError(f"model.hf: no model folder at {m.hf}")
    if m.dtype not in ("auto", "float32", "bfloat16"):
        raise ConfigError(f"model.dtype '{m.dtype}' must be auto, float32 or bfloat16")
    if m.decode not in models.HF_DECODE_MODES:
        raise ConfigError(f"model.decode '{m.decode}' must be one of {', '.join(models.HF_DECODE_MODES)}")


# ----------------------------------------------------------------------------- building the pieces

TASK_MAKERS = {
    "maze": lambda t: tasks.maze_maker(t.min_size, t.max_size, t.loop_frac),
    "countdown": lambda t: tasks.countdown_maker(t.n_numbers, t.max_number),
    "arithmetic": lambda t: tasks.arithmetic_maker(t.n_numbers, t.max_number),
}
TASK_NAMES = (*TASK_MAKERS, "math")  # math reads files (tasks.MathTask) rather than generating problems


def build_task(cfg: Config):
    t = cfg.task
    if t.name == "math":
        try:
            return tasks.MathTask(t.train_file, t.test_file, seed=t.seed, n_heldout=t.n_heldout,
                                  template=t.template, prompt_field=t.prompt_field, answer_field=t.answer_field)
        except ValueError as err:  # a bad data file: the message names the file, line and field
            raise ConfigError(str(err)) from None
    try:
        return tasks.SyntheticTask(t.name, TASK_MAKERS[t.name](t), t.seed, t.n_heldout)
    except ValueError as err:  # e.g. more held-out problems asked for than the task has
        raise ConfigError(str(err)) from None


def build_policy(cfg: Config, device, checkpoint=None):
    """(policy, tokenizer): the tiny GPT or, with model.hf, a Hugging Face model; fresh or from a checkpoint."""
    m = cfg.model
    if m.hf:  # an HF checkpoint is a save_pretrained folder: it loads like the original model
        try:
            return models.load_hf(checkpoint or m.hf, device, chat=m.chat, system_prompt=m.system_prompt,
                                  dtype=m.dtype, gradient_checkpointing=m.gradient_checkpointing,
                                  compile=m.compile, decode=m.decode)
        except ValueError as err:  # a missing model or a tokenizer without a chat template: one line
            raise ConfigError(str(err)) from None
    tokenizer = CharTokenizer()
    if checkpoint:
        return models.GPT.from_weights(checkpoint, device), tokenizer
    gpt_config = models.GPTConfig(vocab_size=64 * math.ceil(tokenizer.vocab_size / 64), block_size=m.block_size,
                                  n_layer=m.n_layer, n_head=m.n_head, n_embd=m.n_embd, tie_embeddings=m.tie_embeddings)
    return models.GPT(gpt_config).to(device), tokenizer


def resolve_checkpoint(path: str) -> str:
    """A checkpoint directory, or a run directory whose `latest` names one."""
    if os.path.isfile(os.path.join(path, "latest")):
        return models.latest_checkpoint(path) or path
    return path


def load_for_eval(path: str):
    """(cfg, policy, tokenizer, task) from a checkpoint directory, for eval.py."""
    path = resolve_checkpoint(path)
    config_file = os.path.join(path, "config.yaml")
    if not os.path.isfile(config_file):
        raise ConfigError(f"no checkpoint at {path} (config.yaml missing)")
    with open(config_file) as f:
        cfg = config_from_dict(yaml.safe_load(f), config_file)
    policy, tokenizer = build_policy(cfg, models.pick_device(cfg.run.device), checkpoint=path)
    return cfg, policy, tokenizer, build_task(cfg)


def reward_options(cfg: Config) -> dict:
    return {"backend": cfg.reward.backend, "workers": cfg.reward.workers, "timeout_s": cfg.reward.timeout_s} \
        if cfg.task.name == "math" else {}


def rng_state() -> dict:
    return {"python": random.getstate(), "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None}


def set_rng_state(state: dict):
    random.setstate(state["python"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def make_optimizer(policy, lr, weight_decay, beta2=0.95):
    return torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=weight_decay, betas=(0.9, beta2))


class MetricsLog:
    """metrics.jsonl: one JSON object per line, each with its step; path None (ranks > 0) writes nothing."""

    def __init__(self, path, resume_step=None):
        self.path = path
        if path is None:
            return
        if resume_step is not None and os.path.exists(path):  # drop what was logged after the checkpoint
            with open(path) as f:
                kept = [line for line in f if line.strip() and json.loads(line)["step"] <= resume_step]
            with open(path, "w") as f:
                f.writelines(kept)
        elif resume_step is None:
            open(path, "w").close()

    def write(self, step, metrics):
        if self.path is None:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")


# ----------------------------------------------------------------------------- sequences and log-probs

def sequences_batch(prompts: list[list[int]], responses, response_mask, pad_id):
    """Prompts (token lists, one per row) + response tokens [R, L] -> input_ids, attention_mask [R, P+L]."""
    prompt_ids, prompt_mask = left_pad(prompts, pad_id, responses.device)
    input_ids = torch.cat([prompt_ids, responses], dim=1)
    attention_mask = torch.cat([prompt_mask, response_mask.long()], dim=1)
    return input_ids, attention_mask


def micro_slices(n_rows: int, group_size: int, micro_batch: int) -> list[slice]:
    """Row ranges of at most `micro_batch` rows (0 = all), cut between prompts' groups of responses."""
    step = max(group_size, (micro_batch or n_rows) // group_size * group_size)
    return [slice(i, i + step) for i in range(0, n_rows, step)]


def policy_logprobs(policy, input_ids, attention_mask, response_mask, cfg: Config, valid_vocab, group_size,
                    return_entropy=False):
    """Per-token log-probs [R, L] (and entropy) of the responses, no grad, in micro-batches of whole groups."""
    parts = [policy(input_ids[s], attention_mask[s], response_mask[s], temperature=cfg.rl.temperature,
                    valid_vocab=valid_vocab, return_entropy=return_entropy, fused=cfg.rl.logprob == "fused",
                    group_size=group_size)
             for s in micro_slices(input_ids.shape[0], group_size, cfg.rl.micro_batch)]
    logp = torch.cat([p[0] for p in parts])
    return logp, (torch.cat([p[1] for p in parts]) if return_entropy else None)


# ----------------------------------------------------------------------------- stage 1: warm start

def warm_start(cfg: Config, policy, tokenizer, task, device, log=print):
    """Supervised training on demonstrations, cached in runs/_warmstart/<key>/ (key: model, task, sft config)."""
    key_source = json.dumps({"model": dataclasses.asdict(cfg.model), "task": dataclasses.asdict(cfg.task),
                             "sft": dataclasses.asdict(cfg.sft), "seed": cfg.run.seed}, sort_keys=True)
    cache_dir = os.path.join(cfg.run.out_dir, "_warmstart", hashlib.sha1(key_source.encode()).hexdigest()[:12])
    checkpoint = models.latest_checkpoint(cache_dir)
    optimizer = make_optimizer(policy, cfg.sft.lr, cfg.sft.weight_decay)
    start = 0
    if checkpoint:
        policy.load_weights(checkpoint)
        state = torch.load(os.path.join(checkpoint, "trainer.pt"), weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        start = state["step"]
        log(f"warm start: {'reusing' if start >= cfg.sft.steps else 'resuming'} {checkpoint} (step {start})")

    def save(step):  # under torchrun every rank trains the same warm start; rank 0 writes it
        if not distributed.is_main():
            return None
        return models.save_checkpoint(cache_dir, step, policy, {"step": step, "optimizer": optimizer.state_dict()},
                                      config_to_dict(cfg))

    if start >= cfg.sft.steps:
        return checkpoint
    policy.train()
    step, loss_avg, t0 = start, None, time.time()
    try:
        for step in range(start, cfg.sft.steps):
            for group in optimizer.param_groups:
                group["lr"] = sft_lr(cfg.sft, step)
            loss = sft_step(policy, optimizer, task.train_batch("sft", step, cfg.sft.batch_size), tokenizer, cfg,
                            device)
            loss_avg = loss if loss_avg is None else 0.95 * loss_avg + 0.05 * loss
            if (step + 1) % 100 == 0 or step + 1 == cfg.sft.steps:
                log(f"warm start step {step + 1}/{cfg.sft.steps}: loss {loss_avg:.4f} ({time.time() - t0:.0f}s)")
        step = cfg.sft.steps
    except KeyboardInterrupt:
        log(f"interrupted: saving the warm start at step {step}")
        save(step)
        raise
    return save(step)


def sft_step(policy, optimizer, problems, tokenizer, cfg: Config, device) -> float:
    """One supervised step: token-mean negative log-likelihood of the demonstrations.

    Rows are sorted by prompt length and run in `sft.buckets` chunks (gradients accumulate), so
    little compute goes to padding when prompt lengths vary (maze sizes do).
    """
    problems = sorted(problems, key=lambda p: len(p.prompt))
    prompts = [tokenizer.encode_prompt(p.prompt) for p in problems]
    demos = [tokenizer.encode(p.demo) + [tokenizer.eos_ids[0]] for p in problems]
    total_tokens = sum(len(d) for d in demos)
    optimizer.zero_grad(set_to_none=True)
    loss_sum = 0.0
    chunk = math.ceil(len(problems) / cfg.sft.buckets)
    for start in range(0, len(problems), chunk):
        responses, response_mask = right_pad(demos[start:start + chunk], tokenizer.pad_id, device)
        input_ids, attention_mask = sequences_batch(prompts[start:start + chunk], responses, response_mask,
                                                    tokenizer.pad_id)
        logp, _ = policy(input_ids, attention_mask, response_mask, valid_vocab=tokenizer.vocab_size,
                         fused=cfg.rl.logprob == "fused")
        loss = -(logp * response_mask).sum() / total_tokens
        loss.backward()
        loss_sum += loss.item()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum


def scheduled_lr(peak: float, step: int, warmup: int, steps: int, cosine: bool) -> float:
    """Linear warmup to `peak`, then `peak` (constant) or a cosine decay to 10 % of it at `steps`."""
    if step < warmup:
        return peak * (step + 1) / warmup
    if not cosine:
        return peak
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def sft_lr(sft: SFTConfig, step: int) -> float:
    return scheduled_lr(sft.lr, step, sft.warmup, sft.steps, cosine=True)


def rl_lr(rl: RLConfig, step: int) -> float:
    return scheduled_lr(rl.lr, step, rl.warmup, rl.steps, cosine=rl.lr_schedule == "cosine")


def right_pad(sequences: list[list[int]], pad_id: int, device):
    """Token lists -> (ids [R, L], mask [R, L] float) with padding on the right."""
    L = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), L)
    for row, seq in enumerate(sequences):
        ids[row, :len(seq)] = torch.tensor(seq)
        mask[row, :len(seq)] = 1.0
    return ids.to(device), mask.to(device)


# ----------------------------------------------------------------------------- stage 2: one RL step

def estimator_extras(estimator, prompt_entropy, generator, n_groups) -> dict:
    """The optional arguments an estimator declares: prompt_entropy, generator, n_groups."""
    available = {"prompt_entropy": prompt_entropy, "generator": generator, "n_groups": n_groups or None}
    parameters = inspect.signature(estimator).parameters
    return {name: value for name, value in available.items() if name in parameters}


def ppo_token_loss(logp, old_logp, advantages, eps_low, eps_high):
    """PPO-clip with clip-higher, per token: -min(r A, clip(r, 1-eps_low, 1+eps_high) A); also clipped [R, L]."""
    ratio = torch.exp(logp - old_logp)
    unclipped = ratio * advantages
    clipped = ratio.clamp(1 - eps_low, 1 + eps_high) * advantages
    return -torch.minimum(unclipped, clipped), (clipped < unclipped).float()


def kl_k3(logp, ref_logp):
    """Schulman's k3 estimator of KL(policy || reference), per token: exp(ref - logp) - (ref - logp) - 1."""
    log_ratio = ref_logp - logp
    return torch.exp(log_ratio) - log_ratio - 1


def rl_step(step, cfg: Config, policy, reference, optimizer, task, tokenizer, device) -> dict:
    rl, B, N = cfg.rl, cfg.rl.prompts_per_step, cfg.rl.responses_per_prompt
    b = B // distributed.world_size()  # this rank's prompts: b = B in one process
    first = distributed.rank() * b     # the global index of its first prompt
    phase = active_phase(cfg, step)
    t0 = time.time()

    # 1. sample b prompts x N responses; the randomness of prompt i comes from (run seed, step, i), i global
    problems = task.train_batch(f"rl{cfg.run.seed}", step, B)[first:first + b]  # each run seed its own stream
    prompts = [tokenizer.encode_prompt(p.prompt) for p in problems]
    policy.eval()
    seeds = [combine_seeds(cfg.run.seed, step, first + i) for i in range(b)]
    chunk = rl.rollout_prompts or b  # prompts per generate call: bounds the KV cache (B*N rows at once otherwise)
    with distributed.full_weights(policy) as sampler:
        rollout = concat_rollouts([
            generate(sampler, prompts[i:i + chunk], n=N, max_new_tokens=cfg.task.max_new_tokens,
                     eos_ids=tokenizer.eos_ids, pad_id=tokenizer.pad_id, valid_vocab=tokenizer.vocab_size,
                     temperature=rl.temperature, top_p=rl.top_p, top_k=rl.top_k, seeds=seeds[i:i + chunk])
            for i in range(0, b, chunk)], tokenizer.pad_id)
    t_rollout = time.time() - t0

    # 2. score
    texts = [tokenizer.decode(row) for row in rollout.tokens.tolist()]
    golds = [p.gold for p in problems for _ in range(N)]
    timeouts_before = reward.verifier_stats().get("timeouts", 0)
    rewards = torch.tensor(reward.score_batch(task.name, texts, golds, **reward_options(cfg)),
                           dtype=torch.float32, device=device).view(b, N)

    # 3. old log-probs and entropy with the training path (never the sampler's: docs/design.md, Contracts)
    row_prompts = [p for p in prompts for _ in range(N)]
    input_ids, attention_mask = sequences_batch(row_prompts, rollout.tokens, rollout.response_mask, tokenizer.pad_id)
    response_mask = rollout.response_mask  # [B*N, L]
    with torch.no_grad():
        old_logp, entropy = policy_logprobs(policy, input_ids, attention_mask, response_mask, cfg,
                                            tokenizer.vocab_size, N, return_entropy=True)
        ref_logp = policy_logprobs(reference, input_ids, attention_mask, response_mask, cfg, tokenizer.vocab_size,
                                   N)[0] if reference is not None else None
    tokens_per_prompt = response_mask.view(b, N, -1).sum((1, 2))
    prompt_entropy = (entropy * response_mask).view(b, N, -1).sum((1, 2)) / tokens_per_prompt  # [b]

    # 4. advantages [B, N] from the active phase's estimator, on the whole batch on every rank
    #    (entropy_adaptive ranks all B prompts; the bootstrap's generator is the same everywhere)
    all_rewards = distributed.all_gather_rows(rewards)  # [B, N]
    all_prompt_entropy = distributed.all_gather_rows(prompt_entropy)  # [B]
    estimator = advantage.ESTIMATORS[phase["advantage"]]
    generator = torch.Generator(device=device).manual_seed(combine_seeds(cfg.run.seed, step, 0xAD))
    advantages = estimator(all_rewards, k=phase["k"],
                           **estimator_extras(estimator, all_prompt_entropy, generator, rl.n_groups))  # [B, N]
    row_advantages = advantages[first:first + b].reshape(b * N, 1).float()  # this rank's, broadcast over tokens
    loss_mask = response_mask * (~rollout.truncated).float()[:, None] if rl.mask_truncated else response_mask
    # a prompt whose N advantages are all 0 (every response right, or every one wrong) adds nothing to the PPO
    # gradient: with no KL term, its rows are left out of the update's forward and backward (the loss keeps its
    # denominators, so the gradient is the same). Under torchrun every rank runs all its rows (same collectives).
    skip_zero = rl.skip_zero_advantage and reference is None and distributed.world_size() == 1
    zero_prompts = (advantages == 0).all(1)  # [B]
    has_signal = ~zero_prompts[first:first + b].cpu()  # [b]
    active = has_signal if skip_zero else torch.ones(b, dtype=torch.bool)  # [b] prompts whose rows run
    signal_mask = loss_mask * has_signal.to(device).repeat_interleave(N)[:, None]  # [b*N, L]: clip_frac, approx_kl

    # 5. PPO updates: each mini-batch takes an equal random share of every prompt's responses
    policy.train()
    order = torch.Generator().manual_seed(combine_seeds(cfg.run.seed, step, 0x5EED))
    stats = {"clip_frac": [], "approx_kl": [], "grad_norm": [], "loss": [], "kl": []}
    skipped = 0
    for epoch in range(rl.epochs):
        shares = torch.stack([torch.randperm(N, generator=order) for _ in range(B)])[first:first + b]  # [b, N]
        for m in range(rl.minibatches):
            picked = shares[:, m * N // rl.minibatches:(m + 1) * N // rl.minibatches]  # [b, N/M]
            rows = (torch.arange(b)[:, None] * N + picked).flatten().to(device)
            run_rows = (torch.arange(b)[active, None] * N + picked[active]).flatten().to(device)
            optimizer.zero_grad(set_to_none=True)
            loss, grad_norm, minibatch_stats = ppo_update(cfg, policy, rows, run_rows, input_ids, attention_mask,
                                                          response_mask, loss_mask, signal_mask, old_logp,
                                                          ref_logp, row_advantages, tokenizer.vocab_size)
            if math.isfinite(loss) and math.isfinite(grad_norm):
                optimizer.step()
            else:
                skipped += 1  # a non-finite loss or gradient skips the update; the run goes on
            for name, value in minibatch_stats.items():
                stats[name].append(value)
            stats["loss"].append(loss)
            stats["grad_norm"].append(grad_norm)

    # sums over every rank's responses: tokens, entropy, truncated rows, sampler gap, verifier timeouts
    tokens, entropy_sum, truncated, logp_gap, timeouts = distributed.all_reduce_sum(torch.stack([
        response_mask.sum(), (entropy * response_mask).sum(), rollout.truncated.float().sum(),
        ((rollout.sampler_logprobs - old_logp).abs() * response_mask).sum(),
        torch.tensor(float(reward.verifier_stats().get("timeouts", 0) - timeouts_before), device=device)]))
    mean = lambda values: sum(values) / len(values) if values else float("nan")
    return {
        "train/reward": all_rewards.mean().item(),
        "train/solved_any": (all_rewards.max(1).values > 0).float().mean().item(),
        **diversity_metrics(texts, rewards),
        "train/entropy": (entropy_sum / tokens).item(),
        "train/loss": mean(stats["loss"]),
        "train/clip_frac": mean(stats["clip_frac"]),
        "train/approx_kl": mean(stats["approx_kl"]),
        "train/kl_ref": mean(stats["kl"]),
        "train/grad_norm": mean(stats["grad_norm"]),
        "train/skipped_updates": skipped,
        "train/zero_adv_frac": zero_prompts.float().mean().item(),
        "train/updated_rows_frac": active.float().mean().item(),
        "train/adv_abs": advantages.abs().mean().item(),
        "train/resp_len": (tokens / (B * N)).item(),
        "train/truncated_frac": (truncated / (B * N)).item(),
        "train/sampler_logp_gap": logp_gap.item() / tokens.item(),
        "train/lr": optimizer.param_groups[0]["lr"],
        "train/advantage": phase["advantage"],
        "train/k": phase["k"],
        "train/verifier_timeouts": int(timeouts.item()),
        "time/rollout_s": t_rollout,
        "time/step_s": time.time() - t0,
    }


def diversity_metrics(texts: list[str], rewards) -> dict:
    """Exploration, as the paper measures it: distinct answers among wrong responses, and prompts whose N agree."""
    B, N = rewards.shape
    groups = [texts[b * N:(b + 1) * N] for b in range(B)]
    wrong = [[t for t, r in zip(group, rewards[b].tolist()) if r < 0.5] for b, group in enumerate(groups)]
    n_distinct, n_wrong, n_agree, B = distributed.sum_floats(  # over ranks: each holds its own prompts' texts
        [sum(len(set(w)) for w in wrong), sum(len(w) for w in wrong), sum(len(set(g)) == 1 for g in groups), B])
    return {"train/wrong_distinct_frac": n_distinct / n_wrong if n_wrong else float("nan"),
            "train/all_agree_frac": n_agree / B}


def ppo_update(cfg, policy, rows, run_rows, input_ids, attention_mask, response_mask, loss_mask, signal_mask,
               old_logp, ref_logp, row_advantages, valid_vocab):
    """One optimizer update on a mini-batch of rows, accumulated over micro-batches; returns (loss, grad norm, stats).

    rows: the mini-batch (it sets the loss's denominators); run_rows: those of its rows that run forward and
    backward (all of them, or the ones whose advantage is not 0). clip_frac and approx_kl are over the tokens of
    signal_mask (rows whose prompt has a nonzero advantage), so they do not depend on the skip.
    """
    rl, world = cfg.rl, distributed.world_size()
    mask = loss_mask[rows]
    n_rows = len(rows) * world  # the mini-batch's rows on all ranks (each holds as many)
    if rl.loss_agg == "token_mean":
        denominator = distributed.all_reduce_sum(mask.sum()).clamp(min=1)  # the mini-batch's tokens on all ranks
    elif rl.loss_agg == "constant":
        denominator = torch.tensor(float(n_rows * cfg.task.max_new_tokens))
    group_size = rl.responses_per_prompt // rl.minibatches  # rows come grouped by prompt
    total_loss, clip_sum, kl_sum, approx_kl_sum = 0.0, 0.0, 0.0, 0.0
    micros = micro_slices(len(run_rows), group_size, rl.micro_batch)
    if not micros:  # nothing to run: the gradient is 0, and Adam's step still applies its momentum, as before
        for param in policy.parameters():
            param.grad = torch.zeros_like(param) if param.requires_grad else None
    for i, micro in enumerate(micros):
        part = run_rows[micro]
        part_mask = loss_mask[part]
        with distributed.gradient_sync(policy, last_micro_batch=i == len(micros) - 1):
            logp, _ = policy(input_ids[part], attention_mask[part], response_mask[part], temperature=rl.temperature,
                             valid_vocab=valid_vocab, fused=rl.logprob == "fused", group_size=group_size)
            token_loss, clipped = ppo_token_loss(logp, old_logp[part], row_advantages[part], rl.eps_low, rl.eps_high)
            if ref_logp is not None:
                kl = kl_k3(logp, ref_logp[part])
                token_loss = token_loss + rl.kl_coef * kl
                kl_sum += (kl.detach() * part_mask).sum().item()
            if rl.loss_agg == "seq_mean":  # mean over each row's tokens, then over rows
                loss = ((token_loss * part_mask).sum(1) / part_mask.sum(1).clamp(min=1)).sum() / n_rows
            else:
                loss = (token_loss * part_mask).sum() / denominator
            # DDP and FSDP2 average gradients over ranks: times world, that is the sum, the single-process gradient
            (loss * world).backward()
        total_loss += loss.item()
        part_signal = signal_mask[part]
        clip_sum += (clipped * part_signal).sum().item()
        log_ratio = (logp.detach() - old_logp[part]) * part_signal
        approx_kl_sum += ((torch.exp(log_ratio) - 1 - log_ratio) * part_signal).sum().item()
    grad_norm = distributed.grad_norm_value(torch.nn.utils.clip_grad_norm_(policy.parameters(), rl.grad_clip))
    total_loss, clip_sum, kl_sum, approx_kl_sum, n_signal, n_tokens = distributed.sum_floats(  # over all ranks
        [total_loss, clip_sum, kl_sum, approx_kl_sum, signal_mask[rows].sum().item(), mask.sum().item()])
    n_signal, n_tokens = max(n_signal, 1.0), max(n_tokens, 1.0)
    return total_loss, grad_norm, {"clip_frac": clip_sum / n_signal, "approx_kl": approx_kl_sum / n_signal,
                                   "kl": kl_sum / n_tokens}


# ----------------------------------------------------------------------------- the run

def run_eval(cfg, policy, tokenizer, task) -> dict:
    with distributed.full_weights(policy) as sampler:  # under torchrun each rank samples a share of the problems
        return evaluation.evaluate(sampler, tokenizer, task.heldout[:cfg.eval.n_problems], task.name,
                                   n=cfg.eval.n_samples, max_new_tokens=cfg.task.max_new_tokens,
                                   temperature=cfg.eval.temperature, top_p=cfg.eval.top_p, ks=cfg.eval.ks,
                                   seed=cfg.run.seed, reward_options=reward_options(cfg))


def summary_table(before: dict, after: dict, ks) -> str:
    columns = [f"pass@{k}" for k in ks] + ["greedy"]
    lines = ["| | " + " | ".join(columns) + " |", "|---" * (len(columns) + 1) + "|"]
    for label, metrics in (("before RL", before), ("after RL", after)):
        if not metrics:  # eval.before: false
            continue
        lines.append(f"| {label} | " + " | ".join(f"{100 * metrics.get('eval/' + c, float('nan')):.1f}"
                                                   for c in columns) + " |")
    return "\n".join(lines)


def train(cfg: Config, log=print) -> dict:
    """Warm start, then RL; returns the final evaluation metrics."""
    if cfg.run.threads:
        torch.set_num_threads(cfg.run.threads)
    device = distributed.setup(models.pick_device(cfg.run.device))  # joins torchrun's process group, if any
    world, main_rank = distributed.world_size(), distributed.is_main()
    if cfg.rl.prompts_per_step % world:
        raise ConfigError(f"rl.prompts_per_step={cfg.rl.prompts_per_step} must be a multiple of the number of ranks "
                          f"({world}): each rank samples an equal share of the prompts")
    if not main_rank:
        log = lambda *args, **kwargs: None  # rank 0 alone prints, logs, plots
    torch.manual_seed(cfg.run.seed)
    random.seed(cfg.run.seed)
    run_dir = os.path.join(cfg.run.out_dir, cfg.run.name)
    if not cfg.run.resume and models.holds_run(run_dir):  # never overwrite an earlier run's checkpoints
        raise ConfigError(f"{run_dir} already holds a run: add --resume to continue it, or give this run "
                          f"its own --run.name")
    os.makedirs(run_dir, exist_ok=True)
    if main_rank:
        with open(os.path.join(run_dir, "config.yaml"), "w") as f:
            yaml.safe_dump(config_to_dict(cfg), f, sort_keys=False)
    task = build_task(cfg)

    resume_from = models.latest_checkpoint(run_dir) if cfg.run.resume else None
    if cfg.run.resume and resume_from is None:
        log(f"--resume: no checkpoint in {run_dir}, starting fresh")
    # the policy RL starts from: model.init, or the warm start (trained once, then loaded from its cache)
    start = resolve_checkpoint(cfg.model.init) if cfg.model.init else None
    policy, tokenizer = build_policy(cfg, device, checkpoint=start)
    if not start and cfg.sft.steps > 0 and (not resume_from or cfg.rl.kl_coef > 0):  # resumed: only for the reference
        warm_start(cfg, policy, tokenizer, task, device, log)
    reference = None
    if cfg.rl.kl_coef > 0:  # a frozen copy of the starting policy, only when the KL term is on
        reference = build_policy(cfg, device, checkpoint=start)[0]
        reference.load_state_dict(policy.state_dict())
        reference.requires_grad_(False).eval()
    if resume_from:
        policy.load_weights(resume_from)
    policy = distributed.wrap(policy, distributed.resolve_mode(cfg.run.distributed, bool(cfg.model.hf)), device)
    if reference is not None and distributed.is_sharded(policy):
        reference = distributed.shard(reference)  # forward only, but as large as the policy
    # after wrap: FSDP2 swaps in sharded parameters
    optimizer = make_optimizer(policy, cfg.rl.lr, cfg.rl.weight_decay, cfg.rl.adam_beta2)
    start_step, before, after = 0, None, None
    if resume_from:
        state = distributed.load_trainer_state(resume_from, policy, optimizer)
        set_rng_state(state["rng"])
        start_step, before = state["step"], state.get("eval_before")
        after = state.get("eval_after") if start_step >= cfg.rl.steps else None  # more steps asked: train on
        log(f"resumed from {resume_from} at step {start_step}")
    metrics_log = MetricsLog(os.path.join(run_dir, "metrics.jsonl") if main_rank else None,
                             resume_step=start_step if resume_from else None)

    def save(step):
        state = {"step": step, "rng": rng_state(), "eval_before": before, "eval_after": after}
        return distributed.save_checkpoint(run_dir, step, policy, optimizer, state, config_to_dict(cfg),
                                           keep=cfg.run.keep_checkpoints)

    if before is None and cfg.eval.before:
        before = run_eval(cfg, policy, tokenizer, task)
        metrics_log.write(0, before)
        log("before RL: " + format_metrics(before))
    step = start_step
    progress = _progress(range(start_step, cfg.rl.steps), cfg.run.progress and main_rank)
    try:
        for step in progress:
            for group in optimizer.param_groups:  # rl.warmup, then rl.lr_schedule
                group["lr"] = rl_lr(cfg.rl, step)
            metrics = rl_step(step, cfg, policy, reference, optimizer, task, tokenizer, device)
            done = step + 1
            if cfg.eval.every and done % cfg.eval.every == 0 and done < cfg.rl.steps:
                metrics.update(run_eval(cfg, policy, tokenizer, task))
            metrics_log.write(done, metrics)
            if hasattr(progress, "set_postfix"):
                progress.set_postfix(reward=f"{metrics['train/reward']:.3f}", phase=metrics["train/advantage"])
            if done % cfg.run.checkpoint_every == 0 and done < cfg.rl.steps:
                save(done)
        step = cfg.rl.steps
    except KeyboardInterrupt:
        if world > 1:  # the ranks may have stopped at different collectives: saving could hang
            log(f"\ninterrupted at step {step}: --resume continues from the last checkpoint")
            raise
        log(f"\ninterrupted: saving a checkpoint at step {step}")
        save(step)
        raise
    if after is None:  # (a finished run that is resumed only redraws its report)
        after = run_eval(cfg, policy, tokenizer, task)
        metrics_log.write(cfg.rl.steps, after)
        save(cfg.rl.steps)
    if not main_rank:
        return after
    evaluation.plot_run(run_dir)
    table = summary_table(before or {}, after, cfg.eval.ks)
    with open(os.path.join(run_dir, "summary.md"), "w") as f:
        f.write(table + "\n")
    log(f"\nheld-out {cfg.task.name}: {cfg.eval.n_problems} problems, pass@k from n = {cfg.eval.n_samples} samples "
        f"at temperature {cfg.eval.temperature}\n" + table + f"\n(plots and metrics in {run_dir}/)")
    return after


def format_metrics(metrics: dict) -> str:
    return ", ".join(f"{k.split('/')[-1]} {v:.3f}" for k, v in metrics.items() if isinstance(v, float))


def _progress(steps, enabled):
    if not enabled:
        return steps
    from tqdm import tqdm
    return tqdm(steps, desc="RL", dynamic_ncols=True)


def main(argv=None):
    try:
        cfg, _ = parse_args(sys.argv[1:] if argv is None else argv)
    except ConfigError as err:
        sys.exit(f"error: {err}")
    try:
        train(cfg)
        distributed.barrier()  # every rank is done (rank 0 plots last): none closes its connections early
    except ConfigError as err:  # found while building: a bad data file, a model that cannot load
        sys.exit(f"error: {err}")
    except KeyboardInterrupt:
        sys.exit(130)
    finally:
        distributed.teardown()


if __name__ == "__main__":
    main()
