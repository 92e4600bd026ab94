"""The policy: a tiny GPT with a preallocated KV cache, an adapter for Hugging Face models, and checkpoints.

GPT: token embedding, rotary position embedding (RoPE), RMSNorm, causal
`scaled_dot_product_attention`, a GELU MLP, and a tied or untied LM head. Batches of
prompts of different lengths are left-padded: each row carries its own positions
(RoPE counts from the row's first real token) and its padding is masked out of
attention, so a row's outputs do not depend on what else is in the batch.

Every policy (this GPT, and the Hugging Face adapter) offers the same interface:
    prefill(prompt_ids [B, P], prompt_mask [B, P], n_repeat, max_new_tokens) -> (logits [B*n, V], cache)
    decode(tokens [R], cache) -> logits [R, V]               one token per row, cache updated in place
    forward(input_ids [R, T], attention_mask [R, T], response_mask [R, L], ...) -> (logp [R, L], entropy)
The forward is the log-prob mode used for training: only response positions (the last
L columns) go through the LM head, via logprob.py, inside the module's own forward so
that wrappers (DDP, FSDP2) see an ordinary forward.

HFPolicy (`load_hf`, `model.hf` in the config) gives any `transformers` causal LM that interface:
transformers' own cache objects (DynamicCache, or a preallocated StaticCache with an optional
torch.compile'd one-token step, gpt-fast style), position_ids for left padding, float32 master
weights with bf16 autocast compute, and the log-prob forward from the base model's last hidden
states and the LM head's weight. Left out: models whose head has a bias, a logit scale or soft-capping,
sliding-window layers in the static cache, tensor parallelism.

Checkpoints (docs/design.md): runs/<name>/ckpt_<step>/ holds the weights
(model.safetensors; for HF models a save_pretrained folder with the tokenizer),
trainer.pt (optimizer, step, RNG) and config.yaml; each is written under a temporary
name and renamed when complete; runs/<name>/latest names the newest.
"""
import inspect
import json
import math
import os
import shutil
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml
from safetensors.torch import load_model, save_model

import logprob


@dataclass
class GPTConfig:
    vocab_size: int = 128        # embedding rows; ids the tokenizer cannot decode are masked, never sampled
    block_size: int = 1024       # longest sequence (prompt + response)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    tie_embeddings: bool = True  # LM head shares the token embedding
    rope_base: float = 10000.0


def pick_device(name: str = "auto") -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


# ----------------------------------------------------------------------------- building blocks

def rope_tables(head_dim: int, max_len: int, base: float):
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)  # [max_len, head_dim/2]
    return angles.cos().float(), angles.sin().float()


def apply_rope(x, cos, sin):
    """x [B, H, T, hd]; cos/sin [B, 1, T, hd/2]: rotate the two halves of each head."""
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1).type_as(x)


def causal_padding_mask(attention_mask):
    """[B, T] (1 = real token) -> [B, 1, T, T] bool: causal, padding keys hidden.

    A padding query may see itself, so no row of the softmax is empty (its output is never used).
    """
    T = attention_mask.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()
    keys = attention_mask.bool()[:, None, None, :] | torch.eye(T, dtype=torch.bool, device=attention_mask.device)
    return causal & keys


class KVCache:
    """Preallocated keys and values (gpt-fast style), written in place at the current slot.

    Rows are left-padded prompts: slot s of row b holds a real key when key_valid[b, s].
    All rows advance together, one slot per decode step; positions are per row.
    """

    def __init__(self, n_layer, batch, n_head, capacity, head_dim, dtype, device):
        self.keys = torch.zeros(n_layer, batch, n_head, capacity, head_dim, dtype=dtype, device=device)
        self.values = torch.zeros_like(self.keys)
        self.key_valid = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.next_position = torch.zeros(batch, dtype=torch.long, device=device)
        self.length = 0  # slots filled

    def repeat_interleave(self, n: int) -> "KVCache":
        """Each row copied n times (prefill a prompt once, then decode its n responses)."""
        copy = KVCache.__new__(KVCache)
        copy.keys = self.keys.repeat_interleave(n, dim=1)
        copy.values = self.values.repeat_interleave(n, dim=1)
        copy.key_valid = self.key_valid.repeat_interleave(n, dim=0)
        copy.next_position = self.next_position.repeat_interleave(n, dim=0)
        copy.length = self.length
        return copy


class Attention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos, sin, mask, cache=None, layer=0, prefix=None):
        B, T, d = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)  # [B, H, T, hd] each
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if cache is not None:  # write this step's keys at the current slots, attend over all filled slots
            end = cache.length + T
            cache.keys[layer, :, :, cache.length:end] = k
            cache.values[layer, :, :, cache.length:end] = v
            k, v = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]
        if prefix is not None:  # training with a shared prompt: keys and values of the prompt come first
            prefix.record(layer, k, v)
            k, v = prefix.extend(layer, k, v)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)  # [B, H, T, hd]
        return self.proj(y.transpose(1, 2).reshape(B, T, d))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.attn_norm = nn.RMSNorm(config.n_embd)
        self.attn = Attention(config)
        self.mlp_norm = nn.RMSNorm(config.n_embd)
        self.mlp = nn.Sequential(nn.Linear(config.n_embd, 4 * config.n_embd, bias=False), nn.GELU(),
                                 nn.Linear(4 * config.n_embd, config.n_embd, bias=False))

    def forward(self, x, cos, sin, mask, cache=None, layer=0, prefix=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, layer, prefix)
        return x + self.mlp(self.mlp_norm(x))


class SharedPrefix:
    """Keys and values of B prompts, kept with their gradient graph, reused by each prompt's n responses.

    Training on n responses per prompt would otherwise run every prompt n times. The prompt
    pass records each layer's keys and values; the response pass puts them (copied to the
    n rows of each prompt) in front of its own. Gradients flow back into the prompt pass.
    """

    def __init__(self, n_repeat: int):
        self.n_repeat, self.keys, self.values, self.recording = n_repeat, [], [], True

    def record(self, layer, k, v):
        if self.recording:
            self.keys.append(k.repeat_interleave(self.n_repeat, dim=0))  # [B*n, H, P, hd]
            self.values.append(v.repeat_interleave(self.n_repeat, dim=0))

    def extend(self, layer, k, v):
        if self.recording:
            return k, v
        return torch.cat([self.keys[layer], k], dim=2), torch.cat([self.values[layer], v], dim=2)


# ----------------------------------------------------------------------------- the model

class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.tok_emb = nn.Embedding(config.vocab_size, config.n_embd)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.norm = nn.RMSNorm(config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_embeddings:
            self.lm_head.weight = self.tok_emb.weight
        cos, sin = rope_tables(config.n_embd // config.n_head, config.block_size, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)  # [block_size, hd/2]
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, param in self.named_parameters():  # residual branches start small (GPT-2)
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def hidden_states(self, input_ids, positions, mask, cache=None, prefix=None):
        """input_ids, positions [B, T]; mask [B, 1, T, S] bool -> final-norm hidden states [B, T, d]."""
        if int(positions.max()) >= self.config.block_size:
            raise ValueError(f"sequence longer than model.block_size={self.config.block_size}")
        cos = self.rope_cos[positions].unsqueeze(1)  # [B, 1, T, hd/2]
        sin = self.rope_sin[positions].unsqueeze(1)
        x = self.tok_emb(input_ids)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, mask, cache, layer, prefix)
        return self.norm(x)

    def logits(self, input_ids, attention_mask):
        """Full logits [B, T, V] of a left-padded batch: the simple reference the tests compare against."""
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        return self.lm_head(self.hidden_states(input_ids, positions, causal_padding_mask(attention_mask)))

    def forward(self, input_ids, attention_mask, response_mask, *, temperature=1.0, valid_vocab=None,
                return_entropy=False, fused=True, group_size=1):
        """Log-prob mode: per-token log-probs (and entropy) of the responses, the last L columns.

        input_ids, attention_mask [R, T]: left-padded prompt followed by the response;
        response_mask [R, L]: 1 on response tokens to score. Returns logp [R, L] (0 off the
        mask) and entropy [R, L] or None. Only masked response positions reach the LM head.
        group_size > 1 says that rows come in groups of that many responses to the same prompt:
        each prompt then runs once (SharedPrefix), not once per response.
        """
        L = response_mask.shape[1]
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        if group_size == 1:
            hidden = self.hidden_states(input_ids, positions, causal_padding_mask(attention_mask))  # [R, T, d]
            predictors = hidden[:, -L - 1:-1]  # position t predicts token t + 1
        else:
            prefix = SharedPrefix(group_size)
            prompt_mask = attention_mask[::group_size, :-L]  # [B, P]
            prompt_hidden = self.hidden_states(input_ids[::group_size, :-L], positions[::group_size, :-L],
                                               causal_padding_mask(prompt_mask), prefix=prefix)  # [B, P, d]
            prefix.recording = False
            # response queries see the prompt's real tokens, then their own tokens causally
            response_keys = causal_padding_mask(attention_mask[:, -L:])  # [R, 1, L, L]
            prompt_keys = attention_mask[:, None, None, :-L].bool().expand(-1, 1, L, -1)  # [R, 1, L, P]
            response_hidden = self.hidden_states(input_ids[:, -L:], positions[:, -L:],
                                                 torch.cat([prompt_keys, response_keys], dim=-1), prefix=prefix)
            predictors = torch.cat([prompt_hidden[:, -1:].repeat_interleave(group_size, dim=0),
                                    response_hidden[:, :-1]], dim=1)  # [R, L, d]
        return head_logprobs(predictors, input_ids[:, -L:], response_mask, self.lm_head.weight,
                             temperature, valid_vocab, return_entropy, fused)

    @torch.no_grad()
    def prefill(self, prompt_ids, prompt_mask, n_repeat: int, max_new_tokens: int):
        """Run the B distinct prompts once, then copy each row's cache to its n_repeat responses."""
        B, P = prompt_ids.shape
        hd = self.config.n_embd // self.config.n_head
        param = self.tok_emb.weight
        cache = KVCache(self.config.n_layer, B, self.config.n_head, P + max_new_tokens, hd, param.dtype, param.device)
        positions = (prompt_mask.long().cumsum(1) - 1).clamp(min=0)
        hidden = self.hidden_states(prompt_ids, positions, causal_padding_mask(prompt_mask), cache)
        cache.key_valid[:, :P] = prompt_mask.bool()
        cache.next_position = positions[:, -1] + 1
        cache.length = P
        cache = cache.repeat_interleave(n_repeat)
        return self.lm_head(hidden[:, -1]).repeat_interleave(n_repeat, dim=0), cache  # [B*n, V]

    @torch.no_grad()
    def decode(self, tokens, cache: KVCache):
        """tokens [R] -> next-token logits [R, V]; writes one slot of the cache."""
        slot = cache.length
        cache.key_valid[:, slot] = True
        mask = cache.key_valid[:, None, None, :slot + 1]  # [R, 1, 1, S]
        hidden = self.hidden_states(tokens[:, None], cache.next_position[:, None], mask, cache)
        cache.length += 1
        cache.next_position += 1
        return self.lm_head(hidden[:, 0])

    # checkpoint weights: the Hugging Face adapter offers the same two methods (save_pretrained)
    def save_weights(self, directory):
        save_model(self, os.path.join(directory, "model.safetensors"))
        with open(os.path.join(directory, "gpt_config.json"), "w") as f:
            json.dump(asdict(self.config), f, indent=1)

    def load_weights(self, directory):
        load_model(self, os.path.join(directory, "model.safetensors"), device=str(self.tok_emb.weight.device))

    @classmethod
    def from_weights(cls, directory, device="cpu"):
        with open(os.path.join(directory, "gpt_config.json")) as f:
            model = cls(GPTConfig(**json.load(f))).to(device)
        model.load_weights(directory)
        return model


def head_logprobs(hidden, targets, response_mask, weight, temperature, valid_vocab, return_entropy, fused):
    """hidden [R, L, d] predicting targets [R, L]; only positions where response_mask is 1 reach the head."""
    select = response_mask.bool()
    compute = logprob.fused_logprobs if fused else logprob.naive_logprobs
    result = compute(hidden[select], weight, targets[select], temperature=temperature,
                     valid_vocab=valid_vocab, return_entropy=return_entropy)
    logp_selected, entropy_selected = result if return_entropy else (result, None)
    scatter = lambda values: hidden.new_zeros(select.shape, dtype=torch.float32).masked_scatter(select, values.float())
    return scatter(logp_selected), (scatter(entropy_selected) if return_entropy else None)


# ----------------------------------------------------------------------------- checkpoints

def save_checkpoint(run_dir, step: int, model, trainer_state: dict, config: dict, keep: int = 2,
                    temp=None) -> str:
    """Write runs/<name>/ckpt_<step>/ atomically (temp dir, then rename) and point `latest` at it.

    temp: a directory that already holds the weights (FSDP2: every rank's shards and the export,
    distributed.py), finished here; model is then None.
    """
    final = os.path.join(run_dir, f"ckpt_{step}")
    if temp is None:
        temp = final + f".tmp-{os.getpid()}"
        shutil.rmtree(temp, ignore_errors=True)
        os.makedirs(temp)
    if model is not None:
        model.save_weights(temp)
    torch.save(trainer_state, os.path.join(temp, "trainer.pt"))
    with open(os.path.join(temp, "config.yaml"), "w") as f:
        yaml.safe_dump(config, f, sort_keys=False)
    if os.path.exists(final):  # re-saving a step (e.g. after a resume): swap out the old copy
        shutil.rmtree(final)
    os.replace(temp, final)
    _write_atomic(os.path.join(run_dir, "latest"), os.path.basename(final) + "\n")
    for old in list_checkpoints(run_dir)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _write_atomic(path, text):
    temp = f"{path}.tmp-{os.getpid()}"
    with open(temp, "w") as f:
        f.write(text)
    os.replace(temp, path)


def list_checkpoints(run_dir) -> list[str]:
    """Complete checkpoint directories, oldest first (temporary ones are ignored)."""
    if not os.path.isdir(run_dir):
        return []
    steps = [int(n[5:]) for n in os.listdir(run_dir) if n.startswith("ckpt_") and n[5:].isdigit()]
    return [os.path.join(run_dir, f"ckpt_{s}") for s in sorted(steps)]


def holds_run(run_dir) -> bool:
    """A run directory holds a run when it has a `latest` pointer or a ckpt_* directory."""
    return os.path.exists(os.path.join(run_dir, "latest")) or bool(list_checkpoints(run_dir))


def latest_checkpoint(run_dir):
    """The checkpoint `latest` names, or None when the run has none."""
    pointer = os.path.join(run_dir, "latest")
    if not os.path.exists(pointer):
        return None
    with open(pointer) as f:
        path = os.path.join(run_dir, f.read().strip())
    return path if os.path.isdir(path) else None


# ----------------------------------------------------------------------------- Hugging Face models

HF_DECODE_MODES = ("dynamic", "static", "compiled")
STATIC_CACHE_ROUNDING = 256  # static cache slots come in multiples of this (fewer recompiles)


def looks_like_path(source: str) -> bool:
    """A Hub id is 'name' or 'org/name'; anything else (/abs, ./rel, a/b/c, ~) is meant as a folder."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or os.sep != "/" and os.sep in source


def load_hf(source: str, device, *, chat=False, system_prompt="", dtype="auto", gradient_checkpointing=False,
            compile=False, decode="dynamic"):
    """(HFPolicy, HFTokenizer) from a Hub name or a local folder (a passk checkpoint of an HF run is one).

    Weights load in float32 whatever the checkpoint's dtype: they are the optimizer's master copy.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from tokenizer import HFTokenizer

    if os.path.isdir(os.path.expanduser(source)):
        source = os.path.expanduser(source)
    elif looks_like_path(source):
        raise ValueError(f"model.hf: no model folder at {source}")
    try:
        hf_tokenizer = AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype=torch.float32)
    except OSError as err:  # not on the Hub (or offline): transformers explains in a paragraph
        raise ValueError(f"model.hf: cannot load '{source}': not a local folder, and the Hugging Face Hub "
                         f"did not provide it ({str(err).splitlines()[0][:160]})") from None
    policy = HFPolicy(model.to(device), hf_tokenizer, dtype=dtype, gradient_checkpointing=gradient_checkpointing,
                      compile=compile, decode=decode)
    eos = getattr(model.generation_config, "eos_token_id", None)
    tokenizer = HFTokenizer(hf_tokenizer, chat=chat, system_prompt=system_prompt, name=source,
                            extra_eos_ids=eos if isinstance(eos, list) else [eos] if eos is not None else [],
                            max_vocab=policy.lm_head.weight.shape[0])
    return policy, tokenizer


@dataclass
class HFDecodeState:
    """What decode needs besides transformers' cache: every row's mask and next RoPE position."""
    kv: object                     # transformers DynamicCache or StaticCache
    attention_mask: torch.Tensor   # [R, slots] long: 1 on real tokens, prompt and generated; 0 on padding
    next_position: torch.Tensor    # [R] position of the next token (left padding makes it differ per row)
    length: int                    # columns of attention_mask filled so far


class HFPolicy(nn.Module):
    """A `transformers` causal LM with the GPT's interface: prefill, decode, log-prob forward, checkpoints.

    Weights stay float32 (the master copy the optimizer updates: AdamW at lr 1e-6 on bf16 weights
    would round most updates away); compute runs under bf16 autocast when `dtype` says so. Left
    padding is handled with per-row position_ids and the 2-D attention mask, as `generate` does.
    The log-prob forward takes the base model's last hidden states and the LM head's weight
    through head_logprobs (logprob.py), so no [tokens, vocab] logits tensor is ever built.
    decode: 'dynamic' (DynamicCache, grows by concatenation), 'static' (StaticCache: one
    preallocated tensor per layer written in place, gpt-fast style) or 'compiled' (static, plus a
    torch.compile'd one-token step; on CUDA with CUDA graphs).
    """

    def __init__(self, model, hf_tokenizer=None, *, dtype="auto", gradient_checkpointing=False, compile=False,
                 decode="dynamic"):
        super().__init__()
        if decode not in HF_DECODE_MODES:
            raise ValueError(f"model.decode '{decode}' must be one of {', '.join(HF_DECODE_MODES)}")
        if dtype not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"model.dtype '{dtype}' must be auto, float32 or bfloat16")
        head = model.get_output_embeddings()
        if getattr(head, "bias", None) is not None or getattr(model.config, "final_logit_softcapping", None) \
                or getattr(model.config, "logit_scale", 1.0) not in (None, 1.0):
            raise ValueError(f"{type(model).__name__}: an LM head with a bias, a logit scale or soft-capping is "
                             f"not supported (the log-prob path computes hidden @ weight.T)")
        self.model = model  # the optimizer's parameters: float32
        self.hf_tokenizer = hf_tokenizer
        device = next(model.parameters()).device
        use_bf16 = dtype == "bfloat16" or (dtype == "auto" and device.type == "cuda")
        self.compute_dtype = torch.bfloat16 if use_bf16 else torch.float32
        self.gradient_checkpointing, self.compile, self.decode_mode = gradient_checkpointing, compile, decode
        if gradient_checkpointing:  # renamed activation_checkpointing_enable in later 5.x releases
            if hasattr(model, "activation_checkpointing_enable"):
                model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        forward_parameters = inspect.signature(model.base_model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward_parameters else "past_key_values"  # renamed in 5.x
        # compiled callables are kept as plain functions, not submodules, so state_dict keys stay the model's
        self._backbone = torch.compile(model.base_model.forward) if compile else model.base_model.forward
        self._decode_step = self._one_token
        if decode == "compiled":
            mode = "reduce-overhead" if device.type == "cuda" else None  # CUDA graphs replay the whole step
            self._decode_step = torch.compile(self._one_token, mode=mode, fullgraph=True)

    @property
    def lm_head(self):
        return self.model.get_output_embeddings()

    def _autocast(self):
        device_type = self.lm_head.weight.device.type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.compute_dtype == torch.bfloat16)

    def _hidden(self, backbone, input_ids, attention_mask, position_ids, cache=None):
        """Last hidden states [R, T, d] (after the final norm)."""
        with self._autocast():
            return backbone(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids,
                            use_cache=cache is not None, **{self._cache_arg: cache}).last_hidden_state

    def forward(self, input_ids, attention_mask, response_mask, *, temperature=1.0, valid_vocab=None,
                return_entropy=False, fused=True, group_size=1):
        """Log-prob mode, as GPT.forward: logp [R, L] of the response columns, entropy [R, L] or None.

        group_size > 1 (rows grouped by prompt) runs each prompt once and its responses on a copy of
        its cache, keeping the gradient graph; with gradient checkpointing or compile every row runs whole.
        """
        from transformers import DynamicCache

        L = response_mask.shape[1]
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)  # [R, T]
        if group_size == 1 or self.gradient_checkpointing or self.compile:
            hidden = self._hidden(self._backbone, input_ids, attention_mask, positions)  # [R, T, d]
            predictors = hidden[:, -L - 1:-1]  # position t predicts token t + 1
        else:
            cache = DynamicCache(config=self.model.config)
            prompt_hidden = self._hidden(self.model.base_model, input_ids[::group_size, :-L],
                                         attention_mask[::group_size, :-L], positions[::group_size, :-L], cache)
            cache.batch_repeat_interleave(group_size)
            response_hidden = self._hidden(self.model.base_model, input_ids[:, -L:], attention_mask,
                                           positions[:, -L:], cache)  # [R, L, d]
            predictors = torch.cat([prompt_hidden[:, -1:].repeat_interleave(group_size, dim=0),
                                    response_hidden[:, :-1]], dim=1)  # [R, L, d]
        weight = self.lm_head.weight  # [V, d] float32 master
        # bf16 operands with float32 accumulation (logprob.py); gradients flow back to the float32 weight
        predictors, weight = predictors.to(self.compute_dtype), weight.to(self.compute_dtype)
        return head_logprobs(predictors, input_ids[:, -L:], response_mask, weight, temperature, valid_vocab,
                             return_entropy, fused)

    @torch.no_grad()
    def prefill(self, prompt_ids, prompt_mask, n_repeat: int, max_new_tokens: int):
        """The B prompts once (DynamicCache), then each row's cache copied to its n_repeat responses."""
        from transformers import DynamicCache

        B, P = prompt_ids.shape
        positions = (prompt_mask.long().cumsum(1) - 1).clamp(min=0)
        prompt_cache = DynamicCache(config=self.model.config)
        hidden = self._hidden(self.model.base_model, prompt_ids, prompt_mask, positions, prompt_cache)  # [B, P, d]
        with self._autocast():
            logits = self.lm_head(hidden[:, -1]).repeat_interleave(n_repeat, dim=0)  # [B*n, V]
        R = B * n_repeat
        attention_mask = torch.zeros(R, P + max_new_tokens, dtype=torch.long, device=prompt_ids.device)
        attention_mask[:, :P] = prompt_mask.repeat_interleave(n_repeat, dim=0)
        if self.decode_mode == "dynamic":
            prompt_cache.batch_repeat_interleave(n_repeat)
            kv = prompt_cache
        else:  # capacity rounded up, so that prompts of other lengths reuse the compiled step's shapes
            capacity = STATIC_CACHE_ROUNDING * math.ceil((P + max_new_tokens) / STATIC_CACHE_ROUNDING)
            attention_mask = F.pad(attention_mask, (0, capacity - attention_mask.shape[1]))
            kv = self._static_cache(prompt_cache, n_repeat, capacity)
        next_position = (positions[:, -1] + 1).repeat_interleave(n_repeat)  # [R]
        return logits, HFDecodeState(kv, attention_mask, next_position, P)

    def _static_cache(self, prompt_cache, n_repeat, capacity):
        """A StaticCache for B*n rows and `capacity` slots, its first P slots the prompts' keys and values."""
        from transformers import StaticCache

        kv = StaticCache(config=self.model.config, max_cache_len=capacity)
        if any(kv.is_sliding):
            raise ValueError("model.decode static/compiled supports full-attention models only; use dynamic")
        for static, dynamic in zip(kv.layers, prompt_cache.layers):
            keys = dynamic.keys.repeat_interleave(n_repeat, dim=0)  # [B*n, H_kv, P, hd]
            values = dynamic.values.repeat_interleave(n_repeat, dim=0)
            # each tensor keeps its own dtype: under bf16 autocast RoPE leaves keys float32, values bf16
            static.lazy_initialization(keys, values)
            P = keys.shape[2]
            static.keys[:, :, :P].copy_(keys)
            static.values[:, :, :P].copy_(values)
            static.cumulative_length.fill_(P)  # in place: its address is static (CUDA graphs)
        return kv

    def _one_token(self, tokens, position_ids, attention_mask, kv):
        """tokens, position_ids [R, 1]; attention_mask [R, S] -> logits [R, V]: the step compile sees."""
        hidden = self._hidden(self.model.base_model, tokens, attention_mask, position_ids, kv)  # [R, 1, d]
        with self._autocast():
            return self.lm_head(hidden[:, -1])

    @torch.no_grad()
    def decode(self, tokens, state: HFDecodeState):
        """tokens [R] -> next-token logits [R, V]; the cache grows (or fills) by one slot."""
        state.attention_mask[:, state.length] = 1
        state.length += 1
        # a static cache sees the whole mask (its shape never changes: one compiled graph); unfilled slots are 0
        mask = state.attention_mask if self.decode_mode != "dynamic" else state.attention_mask[:, :state.length]
        logits = self._decode_step(tokens[:, None], state.next_position[:, None], mask, state.kv)
        state.next_position += 1
        return logits

    # checkpoint weights: save_pretrained, so a checkpoint is a Hugging Face model folder
    def save_weights(self, directory):
        self.model.save_pretrained(directory)
        if self.hf_tokenizer is not None:
            self.hf_tokenizer.save_pretrained(directory)

    def load_weights(self, directory):
        """Weights from a save_pretrained folder (one or several safetensors shards) into this model."""
        from safetensors.torch import load_file

        files = sorted(f for f in os.listdir(directory) if f.endswith(".safetensors"))
        if not files:
            raise ValueError(f"no .safetensors weights in {directory}")
        state = {}
        for name in files:
            state.update(load_file(os.path.join(directory, name), device=str(self.lm_head.weight.device)))
        own = self.model.state_dict()
        _, unexpected = self.model.load_state_dict(state, strict=False)
        loaded = {own[k].data_ptr() for k in state if k in own}
        missing = [k for k in own if k not in state and own[k].data_ptr() not in loaded]  # tied weights are loaded
        if missing or unexpected:
            raise ValueError(f"{directory} does not match the model: missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]}")
