"""Benchmark: the memory of an RL step at a real model's shape, measured and split into its parts,
and the peak those measurements predict at the shipped configs' batch sizes.

    python bench/memory.py                             # CPU: the 0.5B shape, full and LoRA
    python bench/memory.py --shapes 1.5b --modes lora  # 1.5B (full fine-tuning: ~25 GB, a GPU's)
    python bench/memory.py --device cuda --shapes 0.5b,1.5b  # GPU: torch.cuda.max_memory_allocated
    python bench/memory.py --device cuda --shapes 0.5b,1.5b --jobs 4  # the four side by side

A model of the shape (Qwen2.5's config.json written out below; random weights, nothing is
downloaded) runs real RL steps, ppo.rl_step, at small batches: B prompts of random token ids, N
responses each, every response running to max_new_tokens (a random model almost never draws EOS: the
worst case), rewards a fixed pseudo-random 0/1 of the response (so every row updates), gradient
checkpointing on and bf16 compute as the configs ask (CPU autocast on the CPU). "full" trains every
weight (float32 master weights and AdamW state); "lora" trains rank-32 adapters on every linear
layer over a frozen bf16 base. Each (shape, mode) runs in its own process: a small warm-up step
(library set-up, and AdamW's state, which every later step holds), then two measured steps, of B and
B + 1 prompts. `--jobs` runs several of these processes at once: each measures only its own memory,
so the numbers do not change (on the CPU the machine must hold their sum).

The parts are accounted from the tensors themselves, not from arithmetic:
  weights           every parameter (frozen and trained);
  gradients         every .grad after a mini-batch's backward;
  optimizer state   every tensor AdamW holds;
  rollout KV cache  the cache's key and value tensors when the rollout ends;
  activations       what the autograd graph keeps for the backward of one micro-batch: the
                    tensors its saved-tensor hooks see and the inputs gradient checkpointing keeps
                    to recompute each layer (parameters are not counted; casts of parameters, such
                    as the head's bf16 copy, are counted apart as "weight copies").
Each phase of a step (rollout, old log-probs, update, optimizer step) has its own peak: the weights,
gradients and optimizer state alive when it begins, plus the highest running sum of the allocations
and frees torch's profiler reports within it (every tensor's, with its size: exact, and the same on
the CPU and on CUDA). Beside it the process's own peak is printed: peak resident memory on the CPU
(glibc told to return every block of 1 MiB or more on free, as in bench/logprob.py), which adds the
libraries and allocator slack, or torch.cuda.max_memory_allocated. Above the weights, gradients and
optimizer state (and the KV cache, in the rollout), a phase holds what grows with its batch
(activations, the sampler's [rows, vocab] logits, a layer recomputed in the backward) and what does
not (the fused log-prob's chunk buffers, bounded by logprob.CHUNK_BYTES; casts of the weights; on
the CPU a float32 copy of a bf16 head for the matmul): the two measured steps give each phase's
line, a fixed part and a part per row (rollout) or per token (log-probs, update).

The prediction for a config: weights, gradients, optimizer state and the KV cache per row and slot
as measured, each phase's line at the config's rows per rollout call and rows per micro-batch, at
--config-prompt-tokens + task.max_new_tokens (every response at its limit); the update's line rises
at least as fast as its activations, all alive when its backward begins. It is a prediction, printed
as one, and the lines are its least sure part: they are fitted at micro-batches of a few hundred to
two thousand tokens, where the log-prob buffers set the log-prob phases' peaks; at a config's tens
of thousands a layer's intermediates may set them instead. A shape not measured (7B) is extrapolated
from a measured one: parameters counted on the meta device; the KV cache per slot scaled by layers x
KV heads x head size; activations per token by layers x width; the other per-token transients (one
layer at a time) by the MLP width; fixed parts other than the log-prob buffers by the head's size:
an extrapolation, labelled so. Measured on the CPU, the transients are the CPU's: on CUDA the
log-prob chunks are 1 GiB rather than 320 MiB and the bf16 head is not copied to float32. Left out:
several ranks (FSDP2's shards, and the bf16 weights it gathers for the rollout), the allocator's
fragmentation over a long CUDA run, the KL reference's second copy of a full fine-tune.
"""

import argparse
import bisect
import contextlib
import itertools
import json
import os
import subprocess
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
import threads  # noqa: E402, F401  (before torch: OpenMP threads that step aside, threads.py)

# config.json of Qwen/Qwen2.5-{0.5B,1.5B,7B}-Instruct, the fields that set the memory
SHAPES = {
    "0.5b": dict(
        hidden_size=896,
        intermediate_size=4864,
        num_hidden_layers=24,
        num_attention_heads=14,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "1.5b": dict(
        hidden_size=1536,
        intermediate_size=8960,
        num_hidden_layers=28,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        tie_word_embeddings=True,
    ),
    "7b": dict(
        hidden_size=3584,
        intermediate_size=18944,
        num_hidden_layers=28,
        num_attention_heads=28,
        num_key_value_heads=4,
        vocab_size=152064,
        tie_word_embeddings=False,
    ),
    # not Qwen's: a seconds-long shape for the tests and `bench/gpu.py --tiny`
    "tiny": dict(
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=512,
        tie_word_embeddings=True,
    ),
}
QWEN_TOKENS = (
    151665  # len(tokenizer) of Qwen2.5: the ids a sampler may draw (the embedding has padded rows)
)
LORA_RANK = 32  # as configs/math_qwen7b_lora.yaml
CONFIGS = {  # shipped config: the shape it trains, and whether with LoRA
    "configs/math_qwen05b.yaml": ("0.5b", "full"),
    "configs/math_qwen7b.yaml": ("7b", "full"),
    "configs/math_qwen7b_lora.yaml": ("7b", "lora"),
}
PARTS = (
    "weights",
    "gradients",
    "optimizer state",
    "rollout KV cache",
    "activations",
    "weight copies",
)
PHASES = ("rollout", "old log-probs", "update", "optimizer step")
GB = 1e9
ABSENT = object()  # a name an object did not hold itself before it was patched


# ------------------------------------------------------------------ measuring one step (the worker)


class AllocationMeter:
    """A phase's peak from torch's profiler, which reports every allocation and free of the device's
    allocator with its size: the running sum of what the phase allocated, at its highest. Exact, and
    the same on the CPU and on CUDA (pages and the caching allocator's reserve are not counted).
    Spans inside a phase marked with `mark()` report their own transient: their highest running sum
    above the sum when they end (what they leave alive is not theirs)."""

    MARK = "passk-bench-transient"
    relative = True  # the peak is above what was alive when the phase began

    def __init__(self, device):
        import torch
        from torch._C._autograd import DeviceType

        self.torch, self.cuda = torch, device.type == "cuda"
        self.device_type = DeviceType.CUDA if self.cuda else DeviceType.CPU

    @contextlib.contextmanager
    def phase(self):
        """with meter.phase() as record: ... -> record["peak"], record["transient"] (bytes)."""
        from torch.profiler import ProfilerActivity, profile

        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if self.cuda else [])
        record = {}
        with profile(activities=activities, profile_memory=True) as profiler:
            yield record
        events = profiler.profiler.kineto_results.events()
        changes = sorted(
            (e.start_ns(), e.nbytes())
            for e in events
            if e.name() == "[memory]" and e.device_type() == self.device_type
        )
        times = [t for t, _ in changes]
        totals = list(itertools.accumulate(n for _, n in changes)) or [0]
        record["peak"] = max(0, max(totals))
        record["transient"] = 0
        for e in events:
            if e.name() == self.MARK:
                first, last = (
                    bisect.bisect_left(times, e.start_ns()),
                    bisect.bisect_right(times, e.end_ns()),
                )
                if last > first:
                    record["transient"] = max(
                        record["transient"], max(totals[first:last]) - totals[last - 1]
                    )
        return record

    def mark(self):
        return self.torch.profiler.record_function(self.MARK)


class ResidentMeter:
    """The CPU process's own peak in a phase, as the issue's "peak RSS": resident memory above the
    process's start at its highest (Linux VmHWM, restarted per phase through /proc/self/clear_refs).
    It counts pages, the libraries' and the allocator's too, and the profiler's records: so it runs
    without AllocationMeter."""

    relative = False  # the peak is above the process's start, not above the phase's

    def __init__(self, device):
        self.base = self.resident()

    @staticmethod
    def resident() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    @contextlib.contextmanager
    def phase(self):
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # VmHWM restarts from the present resident size
        record = {"transient": 0}
        yield record
        with open("/proc/self/status") as f:
            record["peak"] = (
                next(int(line.split()[1]) for line in f if line.startswith("VmHWM")) * 1024
                - self.base
            )

    def mark(self):
        return contextlib.nullcontext()


def rows_and_tokens(input_ids) -> dict:
    """The rows and tokens of a micro-batch's input_ids [rows, P+L]."""
    return {"rows": input_ids.shape[0], "tokens": input_ids.numel()}


def storage_key(tensor):
    storage = tensor.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


def tensor_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (a tied weight counts once)."""
    return sum(nbytes for _, nbytes in {storage_key(t) for t in tensors})


class StepAccounts:
    """Wraps what ppo.rl_step calls: each phase's peak, and the tensors alive in it accounted.

    phases[name], of the phase's call with the highest peak: "peak"; "persistent", the weights,
    gradients and optimizer state alive in it; "buffers", the fused log-prob's own transient (its
    chunk buffers, bounded by logprob.CHUNK_BYTES); "rows" and "tokens" of its micro-batch.
    """

    def __init__(self, policy, optimizer, meter):
        import torch

        self.torch, self.policy, self.optimizer, self.meter = torch, policy, optimizer, meter
        self.phases, self.parts = {}, dict.fromkeys(PARTS, 0)
        self.kv, self.micro, self.buffers = {}, {}, 0
        self.parameter_storages = {storage_key(p)[0] for p in policy.parameters()}
        self.parameter_ids = {id(p) for p in policy.parameters()}

    def persistent(self) -> int:
        """Weights, gradients and optimizer state alive now."""
        state = [
            t for s in self.optimizer.state.values() for t in s.values() if self.torch.is_tensor(t)
        ]
        grads = [p.grad for p in self.policy.parameters() if p.grad is not None]
        return tensor_bytes(self.policy.parameters()) + tensor_bytes(grads) + tensor_bytes(state)

    def phase(self, name, function, size, after=lambda: None):
        """function, measured as (a call of) phase `name`; size(args, result) -> (rows, tokens) of a
        micro-batch."""

        def measured(*args, **kwargs):
            before = self.persistent()
            with self.meter.phase() as record:
                result = function(*args, **kwargs)
            persistent = max(before, self.persistent())
            after()
            peak = before + record["peak"] if self.meter.relative else record["peak"]
            if peak > self.phases.get(name, {}).get("peak", -1):
                rows, tokens = size(args, result)
                self.phases[name] = {
                    "peak": peak,
                    "persistent": persistent,
                    "buffers": record["transient"],
                    "rows": rows,
                    "tokens": tokens,
                }
            return result

        return measured

    def transient(self, function):
        """function, its own transient (the fused log-prob's chunk buffers) measured inside the
        phase."""

        def measured(*args, **kwargs):
            with self.meter.mark():
                return function(*args, **kwargs)

        return measured

    def install(self, ppo, hf_policy, logprob):
        """Patch the module-level names rl_step, HFPolicy and the fused backward look up when
        called; returns a function that puts them back."""
        # the last two on the instances: a later step must not wrap them twice
        patched = [
            (ppo, "generate"),
            (ppo, "no_grad_logprobs"),
            (ppo, "logprobs"),
            (ppo, "ppo_update"),
            (hf_policy, "head_logprobs"),
            (logprob, "_backward"),
            (self.policy, "prefill"),
            (self.optimizer, "step"),
        ]
        originals = [(owner, name, vars(owner).get(name, ABSENT)) for owner, name in patched]
        real_prefill, real_logprobs, real_step = (
            self.policy.prefill,
            ppo.logprobs,
            self.optimizer.step,
        )
        states = []

        def prefill(*args, **kwargs):
            logits, state = real_prefill(*args, **kwargs)
            states.append(state)
            return logits, state

        def kv_bytes():  # the rollout's cache, all of it filled by now
            layers = states.pop().kv.layers
            states.clear()
            self.kv = {"rows": layers[0].keys.shape[0], "slots": layers[0].keys.shape[2]}
            size = tensor_bytes([t for layer in layers for t in (layer.keys, layer.values)])
            self.parts["rollout KV cache"] = max(self.parts["rollout KV cache"], size)

        def logprobs(*args, **kwargs):  # the update's forward: account what the graph keeps
            if not self.torch.is_grad_enabled():
                return real_logprobs(*args, **kwargs)
            with self.saved_tensors() as saved:
                result = real_logprobs(*args, **kwargs)
            activations, copies = saved()
            if activations > self.parts["activations"]:
                self.parts["activations"], self.parts["weight copies"] = activations, copies
                _, batch, rows = args[:3]  # ppo.logprobs(policy, batch, rows, ...)
                self.micro = rows_and_tokens(batch.input_ids[rows])
            return result

        def step(*args, **kwargs):
            grads = [p.grad for p in self.policy.parameters() if p.grad is not None]
            self.parts["gradients"] = max(self.parts["gradients"], tensor_bytes(grads))
            return real_step(*args, **kwargs)

        self.policy.prefill = prefill
        ppo.generate = self.phase(
            "rollout", ppo.generate, lambda a, r: (r.tokens.shape[0], None), kv_bytes
        )
        ppo.no_grad_logprobs = self.phase(
            "old log-probs",
            ppo.no_grad_logprobs,  # micro_batch 0: one call
            lambda a, r: tuple(rows_and_tokens(a[1].input_ids).values()),  # (policy, batch, ...)
        )
        ppo.logprobs = logprobs
        ppo.ppo_update = self.phase(
            "update", ppo.ppo_update, lambda a, r: (self.micro["rows"], self.micro["tokens"])
        )
        self.optimizer.step = self.phase("optimizer step", step, lambda a, r: (None, None))
        hf_policy.head_logprobs = self.transient(hf_policy.head_logprobs)
        logprob._backward = self.transient(logprob._backward)

        def restore():  # an instance's patch is deleted, so its class's method shows through again
            for owner, name, value in originals:
                delattr(owner, name) if value is ABSENT else setattr(owner, name, value)

        return restore

    def saved_tensors(self):
        """A context counting the storages the autograd graph saves, and those gradient
        checkpointing keeps."""
        import contextlib

        torch, seen = self.torch, {}

        def is_weight_cast(
            tensor,
        ):  # a copy of a parameter in another dtype (autocast's, or the head's bf16 copy)
            grad_fn = tensor.grad_fn
            source = (
                grad_fn.next_functions[0][0]
                if grad_fn is not None and grad_fn.next_functions
                else None
            )
            return (
                type(grad_fn).__name__ == "ToCopyBackward0"
                and id(getattr(source, "variable", None)) in self.parameter_ids
            )

        def keep(item):
            if torch.is_tensor(item):
                ptr, nbytes = storage_key(item)
                if ptr not in self.parameter_storages and nbytes:  # weights are counted as weights
                    seen[ptr] = (nbytes, is_weight_cast(item))
            elif isinstance(item, (tuple, list)):
                for element in item:
                    keep(element)

        def pack(tensor):
            keep(tensor)
            return tensor

        layers = [
            m
            for m in self.policy.modules()
            if getattr(m, "gradient_checkpointing", False)
            and hasattr(m, "_gradient_checkpointing_func")
        ]

        @contextlib.contextmanager
        def counting():
            originals = [layer._gradient_checkpointing_func for layer in layers]
            for layer, original in zip(layers, originals):

                def checkpointed(function, *args, _original=original):
                    # held for the recompute
                    keep(list(args) + list(getattr(function, "keywords", {}).values()))
                    return _original(function, *args)

                layer._gradient_checkpointing_func = checkpointed
            try:
                with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
                    yield lambda: (
                        sum(n for n, copy in seen.values() if not copy),
                        sum(n for n, copy in seen.values() if copy),
                    )
            finally:
                for layer, original in zip(layers, originals):
                    layer._gradient_checkpointing_func = original

        return counting()


class RandomPrompts:
    """The task and tokenizer rl_step needs: prompts of random ids at Qwen's vocabulary, responses
    as id text."""

    name = "arithmetic"

    def __init__(self, prompt_tokens, vocab_size):
        self.prompt_tokens, self.vocab_size = prompt_tokens, vocab_size
        self.eos_ids, self.pad_id = [151645], 151643  # <|im_end|>, <|endoftext|>

    def train_batch(self, stream, step, batch_size):
        from tasks import Problem

        return [Problem(prompt=f"{stream}/{step}/{i}", gold="") for i in range(batch_size)]

    def encode_prompt(self, text):
        import torch

        generator = torch.Generator().manual_seed(zlib.crc32(text.encode()))
        return torch.randint(
            0, self.vocab_size, (self.prompt_tokens,), generator=generator
        ).tolist()

    def decode(self, ids):
        return " ".join(map(str, ids))


def build_policy(shape, mode, device, gradient_checkpointing=True):
    """An HFPolicy of the shape with random weights, built as hf_policy.load_hf builds one (without
    the files)."""
    import torch
    import transformers
    import hf_policy

    lora = hf_policy.LoraOptions(rank=LORA_RANK) if mode == "lora" else None
    config = transformers.Qwen2Config(
        **SHAPES[shape], max_position_embeddings=32768, rope_theta=1e6
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        config,
        dtype=hf_policy.base_storage_dtype(
            "bfloat16" if lora else "auto", lora is not None, device
        ),
    )
    model = model.to(device)
    if lora:
        model = hf_policy.add_lora(model, lora)
    return hf_policy.HFPolicy(
        model, dtype="bfloat16", gradient_checkpointing=gradient_checkpointing
    )


def measure(args) -> dict:
    """A warm-up step and two measured steps (B and B + 1 prompts) of (args.shape, args.mode) in
    this process."""
    import torch
    import config
    import hf_policy
    import logprob
    import optim
    import ppo

    device = torch.device(args.device)
    meter = ResidentMeter(device) if args.rss else AllocationMeter(device)
    policy = build_policy(args.shape, args.mode, device)
    optimizer = optim.make_optimizer(policy, 1e-6, 0.0)
    tokenizer = RandomPrompts(args.prompt_tokens, min(QWEN_TOKENS, policy.lm_head.weight.shape[0]))
    score_batch = ppo.reward.score_batch
    # a fixed pseudo-random 0/1 of the response text: every prompt gets a signal, so every row
    # updates
    ppo.reward.score_batch = lambda task, texts, golds, **options: [
        float(zlib.crc32(t.encode()) % 2) for t in texts
    ]
    steps = {}
    try:
        plan = [
            ("warm-up", 1, 2, 4),
            ("small", args.prompts, args.n, args.new_tokens),
            ("large", args.prompts + 1, args.n, args.new_tokens),
        ]
        for index, (name, prompts, n, new_tokens) in enumerate(plan[::2] if args.rss else plan):
            cfg = config.Config()
            cfg.task.name, cfg.task.max_new_tokens = "arithmetic", new_tokens
            rl = cfg.rl  # micro_batch 0: each phase's call is one micro-batch
            rl.prompts_per_step, rl.responses_per_prompt, rl.minibatches, rl.micro_batch = (
                prompts,
                n,
                2,
                0,
            )
            rl.skip_zero_advantage, rl.kl_coef, rl.advantage, rl.k = False, 0.0, "grpo", 1
            accounts = StepAccounts(policy, optimizer, meter)
            restore = accounts.install(ppo, hf_policy, logprob)
            try:
                metrics = ppo.rl_step(
                    index, cfg, policy, None, optimizer, tokenizer, tokenizer, device
                )
            finally:
                restore()
            steps[name] = {
                "phases": accounts.phases,
                "parts": accounts.parts,
                "kv": accounts.kv,
                "micro": accounts.micro,
                "prompts": prompts,
                "resp_len": metrics["train/resp_len"],
            }
    finally:
        ppo.reward.score_batch = score_batch
    del steps["warm-up"]
    state = [t for s in optimizer.state.values() for t in s.values() if torch.is_tensor(t)]
    parts = {
        **steps["large"]["parts"],
        "weights": tensor_bytes(policy.parameters()),
        "optimizer state": tensor_bytes(state),
    }
    return {
        "shape": args.shape,
        "mode": args.mode,
        "device": args.device,
        "parts": parts,
        "steps": steps,
        "process_peak": torch.cuda.max_memory_allocated() if device.type == "cuda" else None,
        "parameters": sum(p.numel() for p in policy.parameters()),
        "trainable": sum(p.numel() for p in policy.parameters() if p.requires_grad),
        "batch": {"n": args.n, "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens},
    }


# ----------------------------------------------------------------------- predicting a config's peak


def count_parameters(shape, mode) -> tuple[int, int]:
    """(all, trained) parameters of the shape, counted on the meta device (no memory, no time)."""
    import torch

    with torch.device("meta"):
        policy = build_policy(shape, mode, torch.device("meta"), gradient_checkpointing=False)
    return (
        sum(p.numel() for p in policy.parameters()),
        sum(p.numel() for p in policy.parameters() if p.requires_grad),
    )


def phase_lines(measured: dict) -> dict:
    """Each phase's memory above its weights, gradients, optimizer state (and KV cache) as a line
    through the two measured steps: {"fixed": bytes, "slope": bytes per row (rollout) or per token,
    "buffers"}."""
    small, large = measured["steps"]["small"], measured["steps"]["large"]
    lines = {}
    for name in PHASES:

        def above(step):
            p = step["phases"][name]
            return (
                p["peak"]
                - p["persistent"]
                - (step["parts"]["rollout KV cache"] if name == "rollout" else 0)
            )

        size = lambda step: step["phases"][name]["rows" if name == "rollout" else "tokens"] or 0
        growth = size(large) - size(small)
        slope = (above(large) - above(small)) / growth if growth else 0.0
        lines[name] = {
            "fixed": above(large) - slope * size(large),
            "slope": slope,
            "buffers": large["phases"][name]["buffers"],
        }
    return lines


def predict(measured: dict, cfg, shape: str, prompt_tokens: int) -> dict:
    """Each phase's peak at cfg's batch (and `shape`), from the two steps measured at smaller
    batches."""
    import math
    from hf_policy import STATIC_CACHE_ROUNDING

    parts, rl, lines = measured["parts"], cfg.rl, phase_lines(measured)
    large = measured["steps"]["large"]
    fixed = {name: parts[name] for name in ("weights", "gradients", "optimizer state")}
    activations_per_token = parts["activations"] / large["micro"]["tokens"]
    kv_per_slot = parts["rollout KV cache"] / (large["kv"]["rows"] * large["kv"]["slots"])
    scale = dict.fromkeys(("params", "trained", "kv", "width", "mlp", "head", "vocab"), 1.0)
    extrapolated = shape != measured["shape"]
    if extrapolated:
        params, trained = count_parameters(shape, measured["mode"])
        old, new = SHAPES[measured["shape"]], SHAPES[shape]
        ratio = lambda f: f(new) / f(old)
        scale = {
            "params": params / measured["parameters"],
            "trained": trained / measured["trainable"],
            "kv": ratio(
                lambda s: (
                    s["num_hidden_layers"]
                    * s["num_key_value_heads"]
                    / s["num_attention_heads"]
                    * s["hidden_size"]
                )
            ),
            "width": ratio(lambda s: s["num_hidden_layers"] * s["hidden_size"]),
            "mlp": ratio(lambda s: s["intermediate_size"]),
            "vocab": ratio(lambda s: s["vocab_size"]),
            "head": ratio(lambda s: s["vocab_size"] * s["hidden_size"]),
        }
        # trained weights are float32 (master weights, adapters)
        trained_bytes = 4 * measured["trainable"]
        frozen_scale = (params - trained) / max(1, measured["parameters"] - measured["trainable"])
        fixed["weights"] = (
            fixed["weights"] - trained_bytes
        ) * frozen_scale + trained_bytes * scale["trained"]
        fixed["gradients"] *= scale["trained"]
        fixed["optimizer state"] *= scale["trained"]
    T = prompt_tokens + cfg.task.max_new_tokens
    rows_per_call = (rl.rollout_prompts or rl.prompts_per_step) * rl.responses_per_prompt
    slots = (
        T
        if cfg.model.decode == "dynamic"
        else STATIC_CACHE_ROUNDING * math.ceil(T / STATIC_CACHE_ROUNDING)
    )
    micro_rows = lambda group: max(
        group, (rl.micro_batch or rl.prompts_per_step * group) // group * group
    )
    old_rows, update_rows = (
        micro_rows(rl.responses_per_prompt),
        micro_rows(rl.responses_per_prompt // rl.minibatches),
    )

    def above(phase, size, per_token_activations=0.0):
        """The phase's line at `size`; extrapolated: its parts scaled as the docstring says."""
        line = lines[phase]
        if (
            not extrapolated
        ):  # the update's backward begins with every activation alive: its line rises as fast
            return line["fixed"] + max(line["slope"], per_token_activations) * size
        if (
            phase == "rollout"
        ):  # casts of the weights per decode step; the sampler's [rows, vocab] tensors
            return line["fixed"] * scale["params"] + line["slope"] * scale["vocab"] * size
        if phase == "optimizer step":  # AdamW's temporaries
            return line["fixed"] * scale["trained"]
        transient = max(0.0, line["slope"] - per_token_activations)  # one layer at a time
        # the fixed part beyond the buffers: the head's copies (or, below 0, gradients not yet
        # allocated at the
        # peak, which would scale otherwise: left at 0, an overestimate)
        return (
            line["buffers"]
            + max(0.0, line["fixed"] - line["buffers"]) * scale["head"]
            + size * (per_token_activations * scale["width"] + transient * scale["mlp"])
        )

    kv = kv_per_slot * scale["kv"] * rows_per_call * slots
    base = fixed["weights"] + fixed["optimizer state"]
    predicted = {
        "rollout": base + kv + above("rollout", rows_per_call),
        "old log-probs": base + above("old log-probs", old_rows * T),
        "update": base
        + fixed["gradients"]
        + above("update", update_rows * T, activations_per_token),
        "optimizer step": base + fixed["gradients"] + above("optimizer step", 0),
    }
    return {
        "phases": predicted,
        "peak": max(predicted.values()),
        "fixed": fixed,
        "kv": kv,
        "activations": activations_per_token * scale["width"] * update_rows * T,
        "rows_per_call": rows_per_call,
        "slots": slots,
        "update_rows": update_rows,
        "old_rows": old_rows,
        "extrapolated": extrapolated,
    }


# ----------------------------------------------------------------------------- the report


def report(result: dict) -> str:
    """A measurement as markdown: its parts, each phase's peaks and the line through them, the
    process's peak."""
    b, parts, steps = result["batch"], result["parts"], result["steps"]
    large, resident = steps["large"], result.get("resident")
    kv, micro = large["kv"], large["micro"]
    lines = [
        f"{result['shape']} {result['mode']} on {result['device']}: "
        f"{result['parameters'] / 1e6:,.0f} M parameters, {result['trainable'] / 1e6:,.1f} M "
        f"trained. RL steps of {steps['small']['prompts']} and {large['prompts']} prompts x "
        f"{b['n']} responses, {b['prompt_tokens']} prompt + {b['new_tokens']} new tokens (mean "
        f"response {large['resp_len']:.0f}), gradient checkpointing, bf16 compute.",
        "",
        f"| part (tensors accounted, {large['prompts']}-prompt step) | GB | per unit |",
        "|---|---|---|",
    ]
    kv_per_slot = parts["rollout KV cache"] / (kv["rows"] * kv["slots"])
    units = {
        "rollout KV cache": f"{kv_per_slot / 1024:.1f} KiB per row and slot ({kv['rows']} rows "
        f"x {kv['slots']} slots)",
        "activations": f"{parts['activations'] / micro['tokens'] / 1024:.1f} KiB per token (one "
        f"micro-batch, {micro['rows']} rows x {micro['tokens'] // micro['rows']} tokens)",
    }
    lines += [f"| {name} | {parts[name] / GB:.3f} | {units.get(name, '')} |" for name in PARTS]
    rss_column = " peak RSS above start (GB) |" if resident else ""
    lines += [
        "",
        "| phase | tensors at peak (GB) | weights + grads + AdamW (GB) | above them: fixed (GB) "
        f"| of which log-prob buffers (GB) | per row or token (KiB) |{rss_column}",
        "|---|---|---|---|---|---|" + ("---|" if resident else ""),
    ]
    for name, line in phase_lines(result).items():
        peaks = " / ".join(
            f"{steps[s]['phases'][name]['peak'] / GB:.3f}" for s in ("small", "large")
        )
        unit = "row" if name == "rollout" else "token"
        lines.append(
            f"| {name} | {peaks} | {large['phases'][name]['persistent'] / GB:.3f} "
            f"| {line['fixed'] / GB:.3f} | {line['buffers'] / GB:.3f} "
            f"| {line['slope'] / 1024:.1f} per {unit} |"
            + (f" {resident[name] / GB:.3f} |" if resident else "")
        )
    peak = max(p["peak"] for p in large["phases"].values())
    if resident:  # a second process: the profiler's own records would count as resident memory
        process = (
            f"the process: **{max(resident.values()) / GB:.2f} GB** peak resident memory above its "
            f"start (the {large['prompts']}-prompt step again, without the profiler)"
        )
    elif result["process_peak"] is not None:
        process = (
            f"the process: torch.cuda.max_memory_allocated {result['process_peak'] / GB:.2f} GB"
        )
    else:
        process = "the process's own peak: not measured (--no-resident)"
    lines.append(
        f"\nmeasured peak of the {large['prompts']}-prompt step: **{peak / GB:.2f} GB** of "
        f"tensors; {process}"
    )
    return "\n".join(lines)


def prediction_report(path, result, prompt_tokens) -> str:
    """The peak a measurement predicts for a shipped config, labelled a prediction (or an
    extrapolation)."""
    import config

    cfg, _ = config.parse_args(["--config", os.path.join(ROOT, path)])
    shape = CONFIGS[path][0]
    p = predict(result, cfg, shape, prompt_tokens)
    label = (
        f"an EXTRAPOLATION from the {result['shape']} measurement"
        if p["extrapolated"]
        else "a prediction"
    )
    rl = cfg.rl
    lines = [
        f"{path} ({shape}, {result['mode']}; {label} on {result['device']}, not a measurement): "
        f"B={rl.prompts_per_step}, N={rl.responses_per_prompt}; {p['rows_per_call']} rows per "
        f"rollout call x {p['slots']} slots ({prompt_tokens} prompt tokens assumed + "
        f"{cfg.task.max_new_tokens} new, every response at its limit); micro-batches of "
        f"{p['update_rows']} rows (update), {p['old_rows']} (old log-probs).",
        "",
        "| part | GB |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value / GB:.1f} |" for name, value in p["fixed"].items()]
    lines += [
        f"| rollout KV cache | {p['kv'] / GB:.1f} |",
        f"| activations (one micro-batch) | {p['activations'] / GB:.1f} |",
        "",
        "| phase | predicted peak (GB) |",
        "|---|---|",
    ]
    lines += [f"| {name} | {value / GB:.1f} |" for name, value in p["phases"].items()]
    lines.append(f"\npredicted peak: **{p['peak'] / GB:.0f} GB** ({label})")
    return "\n".join(lines)


def run_worker(shape, mode, args, rss=False) -> dict:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        "--shape",
        shape,
        "--mode",
        mode,
        "--device",
        args.device,
        "--prompts",
        str(args.prompts),
        "--n",
        str(args.n),
        "--prompt-tokens",
        str(args.prompt_tokens),
        "--new-tokens",
        str(args.new_tokens),
        "--threads",
        str(args.threads),
    ] + (["--rss"] if rss else [])
    # glibc: every allocation of 1 MiB or more is mmap'd and given back on free, so RSS follows live
    # memory
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_=str(2**20), MALLOC_TRIM_THRESHOLD_=str(2**20))
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"[{shape} {mode}] failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_one(shape, mode, args) -> dict:
    """One (shape, mode) measured in its own process; on the CPU a second process, without the
    profiler, adds the process's peak resident memory."""
    result = run_worker(shape, mode, args)
    if args.device == "cpu" and not args.no_resident:
        resident = run_worker(shape, mode, args, rss=True)["steps"]["large"]["phases"]
        result["resident"] = {name: phase["peak"] for name, phase in resident.items()}
    return result


def measure_all(pairs, args) -> list[dict]:
    """Every (shape, mode) in `pairs`, args.jobs processes at a time, in the order given."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        return list(pool.map(lambda pair: measure_one(*pair, args), pairs))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument(
        "--shapes", default="0.5b", help="comma-separated subset of " + ",".join(SHAPES)
    )
    parser.add_argument("--modes", default="full,lora", help="full, lora or both (comma-separated)")
    parser.add_argument(
        "--prompts", type=int, default=2, help="B of the smaller measured step (the other: B + 1)"
    )
    parser.add_argument("--n", type=int, default=4, help="N of the measured step")
    parser.add_argument(
        "--prompt-tokens", type=int, default=16, help="prompt length of the measured steps"
    )
    parser.add_argument(
        "--new-tokens",
        type=int,
        default=144,
        help="response length of the measured steps (their "
        "update micro-batches then fill the CPU's log-prob chunks: 4 x 144 >= 553 rows)",
    )
    parser.add_argument(
        "--config-prompt-tokens",
        type=int,
        default=256,
        help="prompt length assumed for the configs' predictions",
    )
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    parser.add_argument(
        "--no-resident",
        action="store_true",
        help="CPU: skip the second process that measures peak resident memory",
    )
    parser.add_argument(
        "--jobs", type=int, default=1, help="(shape, mode) processes measured at once"
    )
    parser.add_argument(
        "--load", nargs="+", help="report (and predict from) earlier --json files instead"
    )
    parser.add_argument("--json", help="also write every result to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--rss", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.jobs < 1:
        parser.error(f"--jobs {args.jobs} must be at least 1")
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    if args.worker:
        print(json.dumps(measure(args)))
        return None
    if args.load:
        results = []
        for path in args.load:
            with open(path) as f:
                results += json.load(f)
    else:
        pairs = [
            (shape, mode) for shape in args.shapes.split(",") for mode in args.modes.split(",")
        ]
        results = measure_all(pairs, args)
    for result in results:
        print(report(result) + "\n", flush=True)
    peaks = {
        (r["shape"], r["mode"]): max(p["peak"] for p in r["steps"]["large"]["phases"].values())
        for r in results
    }
    compared = [shape for shape in SHAPES if (shape, "full") in peaks and (shape, "lora") in peaks]
    if compared:  # the baseline: full fine-tuning at the same shape and batch, in the same run
        print("| shape | full fine-tuning: tensors at peak (GB) | LoRA (GB) | LoRA / full |")
        print("|---|---|---|---|")
        for shape in compared:
            full, lora = peaks[shape, "full"], peaks[shape, "lora"]
            print(f"| {shape} | {full / GB:.2f} | {lora / GB:.2f} | {lora / full:.2f}x |")
        print()
    for path, (
        shape,
        mode,
    ) in CONFIGS.items():  # from the config's own shape, else the largest one measured
        candidates = sorted(
            (r for r in results if r["mode"] == mode), key=lambda r: r["parameters"]
        )
        if candidates:
            result = next((r for r in candidates if r["shape"] == shape), candidates[-1])
            print(prediction_report(path, result, args.config_prompt_tokens) + "\n")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return results


if __name__ == "__main__":
    main()
