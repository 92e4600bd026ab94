"""The config: one dataclass per section, a docstring under every field; reading and --help.

    cfg, config_path = config.parse_args(["--config", "configs/maze.yaml", "--rl.k", "8"])

A config file is YAML with one mapping per section (`run`, `model`, `task`, `sft`, `rl`, `eval`,
`reward`); a top-level `base: other.yaml` applies another file first. Every field can be overridden
on the command line (`--section.key value`, the value read as YAML); `--help` lists every field with
its docstring. A bad config (an unknown section or key, a value of the wrong type or out of range,
an inconsistent combination) is a `ConfigError` whose one-line message names the key and the
problem, raised before anything is built; the checks themselves are in config_checks.py.

train.py, eval.py and experiments.py all read their config here; nothing here imports them, nor
anything that builds a task or a model: build.py turns a config into those, and checks what needs
the task registry or the model code (`build.parse_config` = parse_args + those checks).
"""

import ast
import dataclasses
import difflib
import json
import os
import sys
from dataclasses import dataclass, field

import yaml

from config_checks import ConfigError, check_ranges, coerce, validate

# -------------------------------------------------------------- the config, a dataclass per section


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
    tracker: str = "none"
    """also log every metrics row to: none, tensorboard or wandb (optional packages; metrics.jsonl
    is always kept)"""
    distributed: str = "auto"
    """under torchrun: ddp (whole model per rank), fsdp (FSDP2 shards, model.hf), auto (fsdp for
    model.hf; LoRA: ddp)"""


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
    """Hugging Face causal LM (Hub name or local folder) instead of the tiny GPT, e.g.
    Qwen/Qwen2.5-0.5B-Instruct"""
    chat: bool = False
    """hf: format prompts with the tokenizer's chat template (instruct models); false = plain text
    (base models)"""
    system_prompt: str = ""
    """hf, chat: system message before the prompt ("" = none, or the template's own default)"""
    dtype: str = "auto"
    """hf: compute dtype: auto (bf16 autocast on CUDA, float32 elsewhere), bfloat16 or float32;
    weights stay float32"""
    base_dtype: str = "auto"
    """hf, LoRA: storage of the frozen base weights: auto (bfloat16 on CUDA, float32 elsewhere),
    bfloat16 or float32"""
    gradient_checkpointing: bool = False
    """hf: recompute activations in the backward pass (less memory, about a third more compute)"""
    compile: bool = False
    """hf: torch.compile the transformer of the log-prob forward (training)"""
    decode: str = "dynamic"
    """hf sampler cache: dynamic (DynamicCache), static (preallocated StaticCache), compiled (static
    + compiled step)"""
    lora_rank: int = 0
    """hf: LoRA adapters of this rank (peft) on a frozen base; 0 = off, the whole model trains"""
    lora_alpha: float = 32.0
    """hf, LoRA: the adapters' scale is lora_alpha / lora_rank"""
    lora_targets: list = field(default_factory=list)
    """hf, LoRA: module names that get adapters, e.g. [q_proj, v_proj]; empty = every linear layer
    but the LM head"""
    lora_dropout: float = 0.0
    """hf, LoRA: dropout on the adapters' input; > 0 makes the PPO ratio differ from 1 on a step's
    first update"""


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
    """math: prompt template: math (MATH-style), gsm8k (word problems) or plain (the text as it
    is)"""


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
    """estimator in advantage.ESTIMATORS: grpo, dr_grpo, rloo, passk_full, passk_bootstrap,
    passk_analytic, passk_combined, passk_exceeding, entropy_adaptive, pkpo, maxrl, best_of_n,
    rs_grpo (README: The advantages)"""
    k: int = 4
    """k of the Pass@k estimators (1 <= k < N); grpo, dr_grpo, rloo, maxrl, best_of_n (its group
    is all N) and rs_grpo ignore it"""
    n_groups: int = 0
    """passk_bootstrap: groups drawn per prompt (0 = N)"""
    rs_beta: float = 2.0
    """rs_grpo: risk sensitivity of (1/beta) log E[exp(beta r)]: 0 is the mean reward, larger moves
    towards the max"""
    best_of_n_std: bool = False
    """best_of_n: divide by the group's Bessel std, as verl's grpo_passk does by default (false: the
    paper's form)"""
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
    """rows per forward/backward (gradient accumulation), whole prompts' groups: never fewer than
    one prompt's rows (N in the no-grad passes, N/minibatches in the update); 0 = all at once"""
    drop_finished: bool = True
    """sampling: rows that reached EOS leave the decode batch (about 1.4x faster rollouts on a CPU;
    the tokens are the same, the sampler's own log-probs move by ~1e-6); false = the old path"""
    length_buckets: int = 1
    """tiny GPT: the training log-prob forward runs in this many buckets of prompts, each cut to its
    longest response (faster; log-probs move by ~1e-6); 1 = one padded batch, the old numbers"""
    shared_prompt_cache: bool = False
    """tiny GPT sampler: each prompt's keys and values are kept once for its N responses, not
    copied to each (faster decoding; log-probs move by ~1e-6, so a token can differ); false = the
    old numbers"""
    rollout_prompts: int = 0
    """prompts per sampling call (their N responses each): bounds the KV cache; 0 = all of a rank's
    prompts"""
    eps_low: float = 0.2
    """PPO clip below 1 (ratio >= 1 - eps_low)"""
    eps_high: float = 0.28
    """PPO clip above 1 (clip-higher, DAPO)"""
    loss_agg: str = "token_mean"
    """token_mean (over all response tokens of a mini-batch), seq_mean, or constant (sum / rows /
    max_new_tokens)"""
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
    """leave prompts whose advantages are all 0 out of the update's forward/backward (same gradient,
    less compute)"""
    logprob: str = "fused"
    """fused (chunked, never holds [tokens, vocab]) or naive (full log_softmax)"""
    old_logprobs: str = "recompute"
    """the PPO ratio's denominator: recompute (a no-grad forward of the training path over the
    rows the update runs) or sampler (the sampler's own log-probs: the same policy, so the same
    numbers up to float rounding, ~1e-6 in float32; saves the forward; not with rl.tis_cap).
    entropy_adaptive runs the forward over every row for its entropies and takes them from it"""
    tis_cap: float = 0.0
    """truncated importance sampling: weigh each token's loss by min(pi_old / pi_sampler, cap) (0 =
    off; e.g. 2)"""
    dual_clip: float = 0.0
    """dual-clip c for negative advantages: a token's loss is at most -c A (0 = off; c > 1 +
    eps_high, e.g. 3)"""
    resample_rounds: int = 0
    """dynamic sampling (DAPO): up to this many extra rounds of B prompts refill the batch with
    prompts that carry signal (0 = off; one process only)"""
    max_skipped_updates: int = 8
    """stop the run when this many updates in a row had a non-finite loss or gradient (0 = never
    stop)"""
    entropy_mean: str = "token"
    """entropy_adaptive's ranking: token (every response token weighs the same) or response (mean of
    responses)"""


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


# ------------------------------------------------------------ reading it: files, overrides, --help


def parse_args(argv, usage: str = "") -> tuple[Config, str]:
    """--config FILE, --resume, --help (prints `usage`, then every field), and --section.key VALUE
    overrides (VALUE parsed as YAML)."""
    cfg, config_path, overrides, i = Config(), "", {}, 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("-h", "--help"):
            print_help(usage)
            sys.exit(0)
        if arg == "--resume":
            overrides.setdefault("run", {})["resume"] = True
            i += 1
            continue
        if not arg.startswith("--"):
            hint = f"; did you mean --config {arg}?" if arg.endswith((".yaml", ".yml")) else ""
            raise ConfigError(f"unexpected argument '{arg}' (overrides look like --rl.k 8){hint}")
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
        overrides.setdefault(section, {})[name] = read_value(key, value)
    if config_path:
        load_config_file(cfg, config_path)
    apply_settings(cfg, overrides, "the command line")
    validate(cfg)
    return cfg, config_path


def read_value(key: str, value: str):
    """A --section.key VALUE read as YAML; one that YAML cannot read is an error that names both."""
    try:
        return yaml.safe_load(value)
    except yaml.YAMLError as err:
        problem = " ".join(str(getattr(err, "problem", None) or "unreadable").split())
        raise ConfigError(f"--{key} {value!r} is not valid YAML ({problem}); as text, "
                          f"it needs YAML quotes too: '\"{value}\"'") from None  # fmt: skip


def load_config_file(cfg: Config, path: str, seen=()):
    """Apply a YAML config; a top-level `base: other.yaml` (relative to it) is applied first."""
    if not os.path.isfile(path):
        raise ConfigError(f"config file not found: {path}")
    if os.path.abspath(path) in seen:
        raise ConfigError(f"config {path} includes itself through 'base'")
    try:
        with open(path) as f:
            settings = yaml.safe_load(f) or {}
    except yaml.YAMLError as err:
        where = (
            f" at line {err.problem_mark.line + 1}" if getattr(err, "problem_mark", None) else ""
        )
        raise ConfigError(
            f"{path} is not valid YAML{where}: {getattr(err, 'problem', None) or err}"
        ) from None
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{path} cannot be read ({err})") from None
    if not isinstance(settings, dict):
        raise ConfigError(f"{path} must hold a mapping of sections")
    base = settings.pop("base", None)
    if base is not None and not isinstance(base, str):
        raise ConfigError(f"base in {path} must be a config file name, got {base!r}")
    if base:
        load_config_file(
            cfg, os.path.join(os.path.dirname(path), base), seen + (os.path.abspath(path),)
        )
    apply_settings(cfg, settings, path)


def apply_settings(cfg: Config, settings: dict, origin: str):
    """Apply {section: {key: value}} to cfg; an unknown section or key is an error that names it."""
    sections = {f.name: getattr(cfg, f.name) for f in dataclasses.fields(cfg)}
    for section, values in (settings or {}).items():
        if section not in sections:
            raise ConfigError(
                f"unknown config section '{section}' in {origin}{_suggest(section, sections)}"
            )
        if not isinstance(values, dict):
            raise ConfigError(
                f"config section '{section}' in {origin} must be a mapping of keys to values"
            )
        target = sections[section]
        known = {f.name for f in dataclasses.fields(target)}
        for key, value in values.items():
            if key not in known:
                raise ConfigError(
                    f"unknown config key '{section}.{key}' in {origin}{_suggest(key, known)}"
                )
            setattr(target, key, coerce(f"{section}.{key}", value, getattr(target, key)))


def _suggest(name, known) -> str:
    close = difflib.get_close_matches(name, list(known), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def print_help(usage: str = ""):
    print(usage or __doc__)
    defaults, docs = dataclasses.asdict(Config()), field_docs()
    for section, values in defaults.items():
        print(f"{section}:")
        for key, value in values.items():
            print(
                f"  --{section}.{key} {json.dumps(value)}\n      {docs.get(f'{section}.{key}', '')}"
            )


def field_docs() -> dict:
    """'section.key' -> the docstring under that field in this file (the --help text)."""
    with open(__file__) as f:
        tree = ast.parse(f.read())
    docs = {}
    for node in tree.body:
        is_config = isinstance(node, ast.ClassDef) and node.name.endswith("Config")
        if is_config and node.name != "Config":
            section = node.name[: -len("Config")].lower()
            for item, after in zip(node.body, node.body[1:]):
                documented = isinstance(after, ast.Expr) and isinstance(after.value, ast.Constant)
                if isinstance(item, ast.AnnAssign) and documented:
                    docs[f"{section}.{item.target.id}"] = " ".join(after.value.value.split())
    return docs


def config_from_dict(settings: dict, origin: str) -> Config:
    """A checkpoint's saved config, its values range-checked (its data files need not exist any
    more)."""
    cfg = Config()
    apply_settings(cfg, settings, origin)
    check_ranges(cfg)
    return cfg


def reward_options(cfg: Config) -> dict:
    if cfg.task.name != "math":
        return {}
    r = cfg.reward
    return {"backend": r.backend, "workers": r.workers, "timeout_s": r.timeout_s}
