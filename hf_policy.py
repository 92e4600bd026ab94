"""Hugging Face causal LMs as passk policies: the adapter, its loader, its decode state, LoRA.

`load_hf(source, device, ...)` (`model.hf` in the config) returns an `HFPolicy` and an
`HFTokenizer` (hf_tokenizer.py) with the interfaces of model.GPT and tokenizer.CharTokenizer, so
rollout.py, train.py and eval.py run any `transformers` causal LM (Qwen2.5, Llama) unchanged.

HFPolicy: transformers' own cache objects (DynamicCache, or a preallocated StaticCache with an
optional torch.compile'd one-token step, gpt-fast style), position_ids for left padding, float32
master weights with bf16 autocast compute, and the log-prob forward from the base model's last
hidden states and the LM head's weight (logprob.head_logprobs), so no [tokens, vocab] logits tensor
is ever built. Left out: models whose head has a bias, a logit scale or soft-capping, sliding-window
layers in the static cache, tensor parallelism.

LoRA (`lora=LoraOptions(...)`, the model.lora_* fields): peft's LoRA adapters (Hu et al. 2021,
arXiv 2106.09685) injected into the transformer's linear layers; the base weights frozen (on CUDA
stored in bf16: `base_dtype`), the adapters and their AdamW state float32. The log-prob path still
runs the inner transformer (the adapters live inside it) and reads the frozen LM head's weight, so
it never builds [tokens, vocab] logits nor a [vocab, d] head gradient. The sampler runs the same
adapted model (adapters are never merged into a bf16 base to sample: rounding would drift the base);
the KL reference is the same model with its adapters switched off (`without_adapters`); checkpoints
hold the adapters only, in peft's format. Left out: adapters on the LM head or the embeddings (the
log-prob path reads the head's weight directly), QLoRA (quantised bases), DoRA and other variants.

HFTokenizer (hf_tokenizer.py): the chat template (system + user message -> the assistant turn to
complete) when asked, a plain prompt for base models, every end-of-turn id as EOS (`<|im_end|>`,
`<|eot_id|>`, eos_token, the model's generation config), and vocab_size = len(tokenizer), so the ids
of a padded embedding table (Qwen's has more rows than its tokenizer has tokens) are never sampled.
Left out: tool calls, multi-turn prompts, and few-shot examples inside the chat (a task writes them
into its prompt text).
"""

import inspect
import math
import os
import sys
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from hf_tokenizer import HFTokenizer
from logprob import head_logprobs

HF_DECODE_MODES = ("dynamic", "static", "compiled")
DTYPES = ("auto", "float32", "bfloat16")
STATIC_CACHE_ROUNDING = 256  # static cache slots come in multiples of this (fewer recompiles)
# modules LoRA may not adapt: the log-prob path reads the head's weight itself, and Qwen's small
# models tie the two
LORA_REFUSED_TARGETS = ("lm_head", "embed_tokens")
ADAPTER_CONFIG = "adapter_config.json"  # what marks a folder of peft adapters (a LoRA checkpoint)


def looks_like_path(source: str) -> bool:
    """A Hub id is 'name' or 'org/name'; anything else (/abs, ./rel, a/b/c, ~) is meant as a
    folder."""
    return (
        source.startswith((".", "/", "~"))
        or source.count("/") > 1
        or os.sep != "/"
        and os.sep in source
    )


def check_options(source: str, dtype: str, decode: str):
    """model.hf, model.dtype and model.decode, checked before anything loads: a ValueError that
    names the key."""
    if looks_like_path(source) and not os.path.isdir(os.path.expanduser(source)):
        raise ValueError(f"model.hf: no model folder at {source}")
    if dtype not in DTYPES:
        raise ValueError(f"model.dtype '{dtype}' must be one of {', '.join(DTYPES)}")
    if decode not in HF_DECODE_MODES:
        raise ValueError(f"model.decode '{decode}' must be one of {', '.join(HF_DECODE_MODES)}")


@dataclass
class LoraOptions:
    """model.lora_*: adapters of rank `rank` on the `targets` modules (empty: every linear layer but
    the head)."""

    rank: int
    alpha: float = 32.0
    targets: list = field(default_factory=list)
    dropout: float = 0.0


def check_lora(lora: LoraOptions, base_dtype: str):
    """model.lora_* and model.base_dtype, checked before anything loads: a ValueError that names the
    key."""
    if base_dtype not in DTYPES:
        raise ValueError(f"model.base_dtype '{base_dtype}' must be one of {', '.join(DTYPES)}")
    if lora is None:
        if base_dtype == "bfloat16":
            raise ValueError(
                "model.base_dtype bfloat16 needs model.lora_rank > 0: without LoRA the weights are "
                "the optimizer's float32 master copy"
            )
        return
    if isinstance(lora.rank, bool) or not isinstance(lora.rank, int) or lora.rank < 1:
        raise ValueError(
            f"model.lora_rank must be a positive int (0 turns LoRA off), got {lora.rank!r}"
        )
    if not lora.alpha > 0:
        raise ValueError(
            "model.lora_alpha must be > 0 (the adapters' scale is alpha / rank), got "
            f"{lora.alpha!r}"
        )
    if not 0 <= lora.dropout < 1:
        raise ValueError(f"model.lora_dropout must lie in [0, 1), got {lora.dropout!r}")
    if not all(isinstance(t, str) and t for t in lora.targets):
        raise ValueError(
            "model.lora_targets must be a list of module names such as q_proj, got "
            f"{lora.targets!r}"
        )
    refused = [t for t in lora.targets if t.split(".")[-1] in LORA_REFUSED_TARGETS]
    if refused:
        raise refused_target(refused[0])


def refused_target(name: str) -> ValueError:
    return ValueError(
        f"model.lora_targets: {name} cannot take an adapter: the log-prob path reads the LM head's "
        f"weight directly, and small Qwen models tie it to embed_tokens"
    )


def base_storage_dtype(base_dtype: str, lora: bool, device) -> torch.dtype:
    """The dtype the transformer's weights are stored in: float32 unless LoRA freezes them (then
    bf16 on CUDA)."""
    if (
        not lora
        or base_dtype == "float32"
        or base_dtype == "auto"
        and torch.device(device).type != "cuda"
    ):
        return torch.float32
    return torch.bfloat16


def holds_adapters(directory: str) -> bool:
    """A folder of peft adapters (a LoRA run's checkpoint) rather than a whole model."""
    return os.path.isfile(os.path.join(directory, ADAPTER_CONFIG))


def whole_model_source(source: str) -> str:
    """`source` with ~ expanded when it is a local folder; a folder of LoRA adapters is refused
    (transformers would quietly fetch the base named inside and merge nothing)."""
    if not os.path.isdir(os.path.expanduser(source)):
        return source
    source = os.path.expanduser(source)
    if holds_adapters(source):
        raise ValueError(
            f"{source} holds LoRA adapters, not a whole model: load it with its run's config "
            f"(eval.py --ckpt), or set model.hf to the base model and model.lora_rank"
        )
    return source


def from_pretrained(source: str, dtype: torch.dtype):
    """(transformers tokenizer, causal LM in `dtype`) from a folder or the Hub; one-line error."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=dtype)
    except OSError as err:  # not on the Hub (or offline): transformers explains in a paragraph
        raise ValueError(
            f"model.hf: cannot load '{source}': not a local folder, and the Hugging Face Hub "
            f"did not provide it ({str(err).splitlines()[0][:160]})"
        ) from None
    return hf_tokenizer, model


def load_hf(
    source: str,
    device,
    *,
    chat=False,
    system_prompt="",
    dtype="auto",
    gradient_checkpointing=False,
    compile=False,
    decode="dynamic",
    lora: LoraOptions = None,
    base_dtype="auto",
):
    """(HFPolicy, HFTokenizer) from a Hub name or a local folder (a passk checkpoint of an HF run is
    one).

    Without LoRA the weights load in float32 whatever the checkpoint's dtype: they are the
    optimizer's master copy. With LoRA they load frozen in `base_dtype` and get fresh float32
    adapters (a LoRA checkpoint's adapters load afterwards, HFPolicy.load_weights).
    """
    check_options(source, dtype, decode)
    check_lora(lora, base_dtype)
    source = whole_model_source(source)
    hf_tokenizer, model = from_pretrained(source, base_storage_dtype(base_dtype, lora, device))
    model = model.to(device)
    if lora is not None:
        model = add_lora(model, lora)
    policy = HFPolicy(
        model,
        hf_tokenizer,
        dtype=dtype,
        gradient_checkpointing=gradient_checkpointing,
        compile=compile,
        decode=decode,
    )
    eos = getattr(model.generation_config, "eos_token_id", None)
    tokenizer = HFTokenizer(
        hf_tokenizer,
        chat=chat,
        system_prompt=system_prompt,
        name=source,
        extra_eos_ids=eos if isinstance(eos, list) else [eos] if eos is not None else [],
        max_vocab=policy.lm_head.weight.shape[0],
    )
    return policy, tokenizer


@dataclass
class HFDecodeState:
    """What decode needs besides transformers' cache: every row's mask and next RoPE position."""

    kv: object  # transformers DynamicCache or StaticCache
    # [R, slots] long: 1 on real tokens, prompt and generated; 0 on padding
    attention_mask: torch.Tensor
    # [R] position of the next token (left padding makes it differ per row)
    next_position: torch.Tensor
    length: int  # columns of attention_mask filled so far


class HFPolicy(nn.Module):
    """A `transformers` causal LM with the GPT's interface: prefill, decode, log-prob forward,
    checkpoints.

    Weights stay float32 (the master copy the optimizer updates: AdamW at lr 1e-6 on bf16 weights
    would round most updates away); compute runs under bf16 autocast when `dtype` says so. With
    LoRA (`model` a peft model, load_hf's `lora`) only the float32 adapters train; the frozen base
    may be bf16, and then compute is bf16 too. Left padding is handled with per-row position_ids
    and the 2-D attention mask, as `generate` does. The log-prob forward takes the inner
    transformer's last hidden states and the LM head's weight through logprob.head_logprobs, so no
    [tokens, vocab] logits tensor is ever built.
    decode: 'dynamic' (DynamicCache, grows by concatenation), 'static' (StaticCache: one
    preallocated tensor per layer written in place, gpt-fast style) or 'compiled' (static, plus a
    torch.compile'd one-token step; on CUDA with CUDA graphs).
    """

    def __init__(
        self,
        model,
        hf_tokenizer=None,
        *,
        dtype="auto",
        gradient_checkpointing=False,
        compile=False,
        decode="dynamic",
    ):
        super().__init__()
        check_options("", dtype, decode)
        # the optimizer's parameters: float32 weights, or a peft model (frozen base, fp32 adapters)
        self.model = model
        # peft wraps the causal LM; the adapters sit inside the transformer
        self.lora = is_peft_model(model)
        check_lm_head(self.causal_lm, self.config)
        if self.lora:
            check_adapted_modules(self.causal_lm)
        self.hf_tokenizer = hf_tokenizer
        device = self.lm_head.weight.device
        self.compute_dtype = pick_compute_dtype(dtype, device, self.causal_lm)
        self.gradient_checkpointing, self.compile, self.decode_mode = (
            gradient_checkpointing,
            compile,
            decode,
        )
        if gradient_checkpointing:
            enable_gradient_checkpointing(self.causal_lm)
        forward_parameters = inspect.signature(self.transformer.forward).parameters
        # renamed in 5.x
        self._cache_arg = "cache" if "cache" in forward_parameters else "past_key_values"
        # compiled callables are kept as plain functions, not submodules, so state_dict keys stay
        # the model's
        self._backbone = (
            torch.compile(self.transformer.forward) if compile else self.transformer.forward
        )
        self._decode_step = self._one_token
        if decode == "compiled":
            # CUDA graphs replay the whole step
            mode = "reduce-overhead" if device.type == "cuda" else None
            self._decode_step = torch.compile(self._one_token, mode=mode, fullgraph=True)

    # properties, not attributes: a module stored twice would appear twice in state_dict
    @property
    def causal_lm(self):
        """The transformers causal LM (under LoRA, peft's wrapper holds it; the adapters sit inside
        it)."""
        return self.model.get_base_model() if self.lora else self.model

    @property
    def transformer(self):
        """The inner transformer (embeddings, layers, final norm) whose last hidden states the
        log-probs start from.

        Not the peft wrapper's `base_model`: that is the LoRA wrapper around the whole causal LM,
        and returns logits.
        """
        return self.causal_lm.base_model

    @property
    def config(self):
        return self.causal_lm.config

    @property
    def lm_head(self):
        return self.causal_lm.get_output_embeddings()

    def without_adapters(self):
        """The KL reference of a LoRA policy: this model with its adapters off (no second copy of
        the weights)."""
        if not self.lora:
            raise ValueError(
                "without_adapters: this policy has no LoRA adapters (model.lora_rank is 0)"
            )
        return AdaptersOff(self)

    @property
    def context_length(self) -> int:
        """Positions the model was trained for (its config's max_position_embeddings)."""
        return int(getattr(self.config, "max_position_embeddings", None) or 1 << 20)

    def _autocast(self):
        device_type = self.lm_head.weight.device.type
        return torch.autocast(
            device_type, dtype=torch.bfloat16, enabled=self.compute_dtype == torch.bfloat16
        )

    def _hidden(self, backbone, input_ids, attention_mask, position_ids, cache=None):
        """Last hidden states [R, T, d] (after the final norm)."""
        with self._autocast():
            return backbone(
                input_ids=input_ids,
                attention_mask=attention_mask,
                position_ids=position_ids,
                use_cache=cache is not None,
                **{self._cache_arg: cache},
            ).last_hidden_state

    def forward(
        self,
        input_ids,
        attention_mask,
        response_mask,
        *,
        temperature=1.0,
        valid_vocab=None,
        return_entropy=False,
        fused=True,
        group_size=1,
    ):
        """Log-prob mode, as GPT.forward: logp [R, L] of the response columns, entropy [R, L] or
        None.

        group_size > 1 (rows grouped by prompt) runs each prompt once and its responses on a copy of
        its cache, keeping the gradient graph; with gradient checkpointing or compile every row runs
        whole.
        """
        from transformers import DynamicCache

        L = response_mask.shape[1]
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # [R, T]
        if group_size == 1 or self.gradient_checkpointing or self.compile:
            hidden = self._hidden(self._backbone, input_ids, attention_mask, positions)  # [R, T, d]
            predictors = hidden[:, -L - 1 : -1]  # position t predicts token t + 1
        else:
            cache = DynamicCache(config=self.config)
            prompt_hidden = self._hidden(
                self.transformer,
                input_ids[::group_size, :-L],
                attention_mask[::group_size, :-L],
                positions[::group_size, :-L],
                cache,
            )
            cache.batch_repeat_interleave(group_size)
            # response_hidden, predictors: [R, L, d]
            response_hidden = self._hidden(
                self.transformer, input_ids[:, -L:], attention_mask, positions[:, -L:], cache
            )
            prompt_last = prompt_hidden[:, -1:].repeat_interleave(group_size, dim=0)  # [R, 1, d]
            predictors = torch.cat([prompt_last, response_hidden[:, :-1]], dim=1)
        weight = self.lm_head.weight  # [V, d] float32 master
        # bf16 operands, float32 accumulation (logprob.py); gradients reach the float32 weight
        predictors, weight = predictors.to(self.compute_dtype), weight.to(self.compute_dtype)
        return head_logprobs(
            predictors,
            input_ids[:, -L:],
            response_mask,
            weight,
            temperature,
            valid_vocab,
            return_entropy,
            fused,
        )

    @torch.no_grad()
    def prefill(self, prompt_ids, prompt_mask, n_repeat: int, max_new_tokens: int):
        """The B prompts once (DynamicCache), then each row's cache copied to its n_repeat
        responses."""
        from transformers import DynamicCache

        B, P = prompt_ids.shape
        positions = (prompt_mask.long().cumsum(1) - 1).clamp(min=0)
        prompt_cache = DynamicCache(config=self.config)
        # [B, P, d]
        hidden = self._hidden(self.transformer, prompt_ids, prompt_mask, positions, prompt_cache)
        with self._autocast():
            logits = self.lm_head(hidden[:, -1]).repeat_interleave(n_repeat, dim=0)  # [B*n, V]
        R = B * n_repeat
        attention_mask = torch.zeros(
            R, P + max_new_tokens, dtype=torch.long, device=prompt_ids.device
        )
        attention_mask[:, :P] = prompt_mask.repeat_interleave(n_repeat, dim=0)
        if self.decode_mode == "dynamic":
            prompt_cache.batch_repeat_interleave(n_repeat)
            kv = prompt_cache
        # capacity rounded up, so that prompts of other lengths reuse the compiled step's shapes
        else:
            capacity = STATIC_CACHE_ROUNDING * math.ceil(
                (P + max_new_tokens) / STATIC_CACHE_ROUNDING
            )
            attention_mask = F.pad(attention_mask, (0, capacity - attention_mask.shape[1]))
            kv = self._static_cache(prompt_cache, n_repeat, capacity)
        next_position = (positions[:, -1] + 1).repeat_interleave(n_repeat)  # [R]
        return logits, HFDecodeState(kv, attention_mask, next_position, P)

    def _static_cache(self, prompt_cache, n_repeat, capacity):
        """A StaticCache for B*n rows and `capacity` slots, its first P slots the prompts' keys and
        values."""
        from transformers import StaticCache

        kv = StaticCache(config=self.config, max_cache_len=capacity)
        if any(kv.is_sliding):
            raise ValueError(
                "model.decode static/compiled supports full-attention models only; use dynamic"
            )
        for static, dynamic in zip(kv.layers, prompt_cache.layers):
            keys = dynamic.keys.repeat_interleave(n_repeat, dim=0)  # [B*n, H_kv, P, hd]
            values = dynamic.values.repeat_interleave(n_repeat, dim=0)
            # each tensor keeps its own dtype: under bf16 autocast RoPE leaves keys float32, values
            # bf16
            static.lazy_initialization(keys, values)
            P = keys.shape[2]
            static.keys[:, :, :P].copy_(keys)
            static.values[:, :, :P].copy_(values)
            static.cumulative_length.fill_(P)  # in place: its address is static (CUDA graphs)
        return kv

    def _one_token(self, tokens, position_ids, attention_mask, kv):
        """tokens, position_ids [R, 1]; attention_mask [R, S] -> logits [R, V]: the step compile
        sees."""
        # [R, 1, d]
        hidden = self._hidden(self.transformer, tokens, attention_mask, position_ids, kv)
        with self._autocast():
            return self.lm_head(hidden[:, -1])

    @torch.no_grad()
    def decode(self, tokens, state: HFDecodeState):
        """tokens [R] -> next-token logits [R, V]; the cache grows (or fills) by one slot."""
        state.attention_mask[:, state.length] = 1
        state.length += 1
        # a static cache sees the whole mask (its shape never changes: one compiled graph); unfilled
        # slots are 0
        mask = (
            state.attention_mask
            if self.decode_mode != "dynamic"
            else state.attention_mask[:, : state.length]
        )
        logits = self._decode_step(tokens[:, None], state.next_position[:, None], mask, state.kv)
        state.next_position += 1
        return logits

    # checkpoint weights: save_pretrained, so a checkpoint is a Hugging Face model folder (LoRA: a
    # peft adapter folder)
    def save_weights(self, directory):
        self.model.save_pretrained(directory)  # peft's save_pretrained writes the adapters only
        if self.hf_tokenizer is not None:
            self.hf_tokenizer.save_pretrained(directory)

    def load_weights(self, directory):
        """Weights from a save_pretrained folder (one or several safetensors shards) into this
        model; under LoRA, the adapters of a peft adapter folder."""
        from safetensors.torch import load_file

        if self.lora or holds_adapters(directory):
            return self._load_adapters(directory)
        files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
        if not files:
            raise ValueError(f"no .safetensors weights in {directory}")
        state = {}
        for name in files:
            state.update(
                load_file(os.path.join(directory, name), device=str(self.lm_head.weight.device))
            )
        own = self.model.state_dict()
        _, unexpected = self.model.load_state_dict(state, strict=False)
        loaded = {own[k].data_ptr() for k in state if k in own}
        # tied weights are loaded
        missing = [k for k in own if k not in state and own[k].data_ptr() not in loaded]
        if missing or unexpected:
            raise ValueError(
                f"{directory} does not match the model: missing {missing[:3]}, "
                f"unexpected {unexpected[:3]}"
            )

    def _load_adapters(self, directory):
        from peft import load_peft_weights, set_peft_model_state_dict

        if not self.lora:
            raise ValueError(
                f"{directory} holds LoRA adapters only: this policy has none (set model.lora_rank)"
            )
        if not holds_adapters(directory):
            raise ValueError(
                f"{directory} holds no LoRA adapters ({ADAPTER_CONFIG}): it is not a LoRA "
                "checkpoint"
            )
        state = load_peft_weights(directory, device=str(self.lm_head.weight.device))
        try:
            result = set_peft_model_state_dict(self.model, state)
        except RuntimeError as err:
            # "Error(s) in loading state_dict ...", then a line per mismatch
            first_mismatch = (str(err).splitlines() + [""])[1].strip()[:160]
            raise ValueError(
                f"{directory}: adapters of another shape than model.lora_rank and "
                "model.lora_targets "
                f"make ({first_mismatch})"
            ) from None
        # the base weights are not in the folder
        missing = [k for k in result.missing_keys if ".lora_" in k]
        if missing or result.unexpected_keys:
            raise ValueError(
                f"{directory} does not match the model's adapters: missing {missing[:3]}, "
                f"unexpected {result.unexpected_keys[:3]}"
            )


class AdaptersOff:
    """A LoRA policy seen with its adapters switched off: the base model, the KL reference
    (HFPolicy.without_adapters).

    Called as the policy is (the log-prob forward); it holds no weights of its own.
    """

    def __init__(self, policy: HFPolicy):
        self.policy = policy

    def __call__(self, *args, **kwargs):
        with self.policy.model.disable_adapter():
            return self.policy(*args, **kwargs)


def check_lm_head(causal_lm, config):
    """Refuse an LM head the log-prob path cannot compute as hidden @ weight.T."""
    head = causal_lm.get_output_embeddings()
    if (
        getattr(head, "bias", None) is not None
        or getattr(config, "final_logit_softcapping", None)
        or getattr(config, "logit_scale", 1.0) not in (None, 1.0)
    ):
        raise ValueError(
            f"{type(causal_lm).__name__}: an LM head with a bias, a logit scale or soft-capping "
            f"is not supported (the log-prob path computes hidden @ weight.T)"
        )


def pick_compute_dtype(dtype: str, device, causal_lm) -> torch.dtype:
    """bfloat16 when asked, or under auto on CUDA or over a frozen bf16 LoRA base; else float32."""
    base_bf16 = causal_lm.get_input_embeddings().weight.dtype == torch.bfloat16
    if base_bf16 and dtype == "float32":
        raise ValueError(
            "model.dtype float32 cannot run a bfloat16 base (model.base_dtype): use bfloat16 "
            "or auto"
        )
    use_bf16 = dtype == "bfloat16" or (dtype == "auto" and (device.type == "cuda" or base_bf16))
    return torch.bfloat16 if use_bf16 else torch.float32


def enable_gradient_checkpointing(causal_lm):
    """Recompute activations in backward (renamed activation_checkpointing_enable in later 5.x)."""
    if hasattr(causal_lm, "activation_checkpointing_enable"):
        causal_lm.activation_checkpointing_enable(
            activation_checkpointing_kwargs={"use_reentrant": False}
        )
    else:
        causal_lm.gradient_checkpointing_enable(
            gradient_checkpointing_kwargs={"use_reentrant": False}
        )


def is_peft_model(model) -> bool:
    peft = sys.modules.get("peft")  # not imported: nothing can be a peft model
    return peft is not None and isinstance(model, peft.PeftModel)


def add_lora(model, lora: LoraOptions):
    """peft's LoRA adapters injected into `model` in place; returns peft's wrapper. Base frozen,
    adapters float32."""
    from peft import LoraConfig, get_peft_model

    lora_config = LoraConfig(
        r=lora.rank,
        lora_alpha=lora.alpha,
        lora_dropout=lora.dropout,
        task_type="CAUSAL_LM",
        target_modules=list(lora.targets) or "all-linear",  # all-linear leaves out the LM head
    )
    try:  # autocast_adapter_dtype (the default) makes adapters of a bf16 base float32
        return get_peft_model(model, lora_config)
    except ValueError as err:  # a target no module has: peft explains in a paragraph
        raise ValueError(
            f"model.lora_targets {list(lora.targets)}: {str(err).splitlines()[0][:200]}"
        ) from None


def check_adapted_modules(causal_lm):
    """The LM head and the input embeddings must stay plain modules (a regex target could still
    reach them)."""
    from peft.tuners.tuners_utils import BaseTunerLayer

    for name, module in (
        ("lm_head", causal_lm.get_output_embeddings()),
        ("embed_tokens", causal_lm.get_input_embeddings()),
    ):
        if isinstance(module, BaseTunerLayer):
            raise refused_target(name)
