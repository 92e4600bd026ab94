"""The policy: a tiny GPT with a preallocated KV cache.

GPT: token embedding, rotary position embedding (RoPE), RMSNorm, causal
`scaled_dot_product_attention`, a GELU MLP, and a tied or untied LM head. Batches of
prompts of different lengths are left-padded: each row carries its own positions
(RoPE counts from the row's first real token) and its padding is masked out of
attention, so a row's outputs do not depend on what else is in the batch.

Every policy (this GPT, and hf_policy.HFPolicy for Hugging Face models) offers the same interface:
    prefill(prompt_ids [B, P], prompt_mask [B, P], n_repeat, max_new_tokens)
        -> (logits [B*n, V], cache)
    decode(tokens [R], cache) -> logits [R, V]     one token per row, cache updated in place
    forward(input_ids [R, T], attention_mask [R, T], response_mask [R, L], ...)
        -> (logp [R, L], entropy)
    save_weights(directory), load_weights(directory)    a checkpoint's weights (checkpoint.py)
The forward is the log-prob mode used for training: only response positions (the last
L columns) go through the LM head, via logprob.py, inside the module's own forward so
that wrappers (DDP, FSDP2) see an ordinary forward.

Left out: dropout (RL on a model this small does not need it, and it would make the PPO ratio
differ from 1 before the first update), weight tying options beyond the LM head, biases.
"""

import json
import math
import os
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_model, save_model

from logprob import head_logprobs


@dataclass
class GPTConfig:
    # embedding rows; ids the tokenizer cannot decode are masked, never sampled
    vocab_size: int = 128
    block_size: int = 1024  # longest sequence (prompt + response)
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    tie_embeddings: bool = True  # LM head shares the token embedding
    rope_base: float = 10000.0


# ----------------------------------------------------------------------------- building blocks


def rope_tables(head_dim: int, max_len: int, base: float):
    """-> cos [max_len, hd], sin [max_len, hd]: each angle's cosine for both halves of a head, and
    its sine with the first half negated, as apply_rope multiplies them."""
    inv_freq = 1.0 / base ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    # [max_len, head_dim/2]
    angles = torch.outer(torch.arange(max_len, dtype=torch.float64), inv_freq)
    cos, sin = angles.cos().float(), angles.sin().float()
    return torch.cat([cos, cos], dim=-1), torch.cat([-sin, sin], dim=-1)


def apply_rope(x, cos, sin):
    """x [..., B, H, T, hd]; cos/sin [B, 1, T, hd] (rope_tables): rotate the two halves (x1, x2)
    of each head to (x1 cos - x2 sin, x1 sin + x2 cos). Written as x cos + (x2, x1) sin: three
    elementwise operations, not seven, with bit-identical results (a - b equals a + (-b) in
    floats)."""
    x1, x2 = x.chunk(2, dim=-1)
    return x * cos + torch.cat([x2, x1], dim=-1) * sin


def causal_padding_mask(attention_mask):
    """[B, T] (1 = real token) -> [B, 1, T, T] bool: causal, padding keys hidden.

    A padding query may see itself, so no row of the softmax is empty (its output is never used).
    """
    T = attention_mask.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=attention_mask.device).tril()
    keys = attention_mask.bool()[:, None, None, :] | torch.eye(
        T, dtype=torch.bool, device=attention_mask.device
    )
    return causal & keys


class KVCache:
    """Preallocated keys and values (gpt-fast style), written in place at the current slot.

    Rows are left-padded prompts: slot s of row b holds a real key when key_valid[b, s].
    All rows advance together, one slot per decode step; positions are per row.
    """

    def __init__(self, n_layer, batch, n_head, capacity, head_dim, dtype, device):
        # empty, not zeros: a slot is written before it is read (and zeros cost page faults)
        self.keys = torch.empty(
            n_layer, batch, n_head, capacity, head_dim, dtype=dtype, device=device
        )
        self.values = torch.empty_like(self.keys)
        self.key_valid = torch.zeros(batch, capacity, dtype=torch.bool, device=device)
        self.next_position = torch.zeros(batch, dtype=torch.long, device=device)
        self.length = 0  # slots filled
        self.buffers, self.spare = (self.keys, self.values), None  # keys/values are their views

    def next_slot_mask(self):
        """Marks the next slot real in every row -> a decode step's attention mask [R, 1, 1, S]."""
        self.key_valid[:, self.length] = True
        return self.key_valid[:, None, None, : self.length + 1]

    def attend(self, layer, q, k, v, mask):
        """Attention of q [R, H, T, hd] over all filled slots and this step's -> [R, H, T, hd]."""
        keys, values = self.write(layer, k, v)
        return F.scaled_dot_product_attention(q, keys, values, attn_mask=mask)

    def write(self, layer, k, v):
        """Write this step's keys and values [R, H, T, hd] at the current slots -> the layer's
        keys and values through them [R, H, S, hd]."""
        end = self.length + k.shape[2]
        self.keys[layer, :, :, self.length : end] = k
        self.values[layer, :, :, self.length : end] = v
        return self.keys[layer, :, :, :end], self.values[layer, :, :, :end]

    def repeat_interleave(self, n: int) -> "KVCache":
        """Each row copied n times (prefill a prompt once, then decode its n responses)."""
        copy = KVCache.__new__(KVCache)
        copy.keys = self.keys.repeat_interleave(n, dim=1)
        copy.values = self.values.repeat_interleave(n, dim=1)
        copy.key_valid = self.key_valid.repeat_interleave(n, dim=0)
        copy.next_position = self.next_position.repeat_interleave(n, dim=0)
        copy.length = self.length
        copy.buffers, copy.spare = (copy.keys, copy.values), None
        return copy

    def keep_rows(self, rows):
        """Keep only these rows [r] (in this order): the sampler drops finished responses.

        Only the filled slots are copied, into a second pair of buffers kept for the next call:
        a fresh tensor of the whole capacity costs more in page faults than the copy. At
        configs/maze.yaml's step 0 this made the drops 4x faster (CPU time) than index_select
        into new tensors, with the same numbers.
        """
        if self.spare is None:
            self.spare = tuple(torch.empty_like(buffer) for buffer in self.buffers)
        r, filled = len(rows), slice(0, self.length)
        for cache, spare in zip((self.keys, self.values), self.spare):
            torch.index_select(cache[:, :, :, filled], 1, rows, out=spare[:, :r, :, filled])
        self.buffers, self.spare = self.spare, self.buffers
        self.keys, self.values = (buffer[:, :r] for buffer in self.buffers)
        self.key_valid, self.next_position = self.key_valid[rows], self.next_position[rows]


class SharedPromptCache(KVCache):
    """The sampler's cache with each prompt's keys and values stored once, not once per response
    (rl.shared_prompt_cache): a decode step reads a prompt's keys once for its n rows, and
    dropping finished rows copies only the responses' own slots. At configs/maze.yaml's step 0
    (16 responses a prompt) the rollout took 1.11 s instead of 1.46 s (2 threads).
    The KVCache part holds the responses' slots; `prompt` is the prefill's cache of the B distinct
    prompts; `place` says where each live row sits: its prompt [r] and its index among the prompt's
    n [r] (kept here, updated as rows drop, rather than derived in every layer's attention).
    """

    def __init__(self, prompt: KVCache, n: int, max_new_tokens: int):
        n_layer, B, n_head, _, head_dim = prompt.keys.shape
        dtype, device = prompt.keys.dtype, prompt.keys.device
        super().__init__(n_layer, B * n, n_head, max_new_tokens, head_dim, dtype, device)
        self.next_position = prompt.next_position.repeat_interleave(n)  # [B*n]
        self.prompt, self.n = prompt, n
        rows = torch.arange(B * n, device=device)
        self.place = rows // n, rows % n  # ([B*n], [B*n])

    def keep_rows(self, rows):
        super().keep_rows(rows)
        self.place = tuple(index[rows] for index in self.place)

    def next_slot_mask(self):
        """None: no mask needed (the prompts' padding is in prompt.key_valid, a row's own slots
        are all real)."""
        return None

    def attend(self, layer, q, k, v, mask=None):
        """One decode step (T = 1): q, k, v [r, H, 1, hd] -> [r, H, 1, hd]."""
        keys, values = self.write(layer, k, v)  # [r, H, t, hd] the rows' own slots
        prompt_keys, prompt_values = self.prompt.keys[layer], self.prompt.values[layer]
        prompt_valid = self.prompt.key_valid  # [B, P]
        return shared_prompt_attention(
            q, prompt_keys, prompt_values, prompt_valid, keys, values, self.place, self.n
        )


def shared_prompt_attention(q, prompt_keys, prompt_values, prompt_valid, keys, values, place, n):
    """Softmax attention of one query per live row over its prompt's slots and its own, as one
    softmax, with each prompt's keys read once for its n rows (a batched matmul per prompt).

    q [r, H, 1, hd]; prompt_keys, prompt_values [B, H, P, hd]; prompt_valid [B, P] bool;
    keys, values [r, H, t, hd] the rows' own slots; place = (prompt [r], slot [r]): each row's
    prompt and its index among that prompt's n.
    Rows already dropped keep whatever the buffers held (empty, not zeros: a row of a matmul
    depends only on its own row, and theirs are never read).
    -> [r, H, 1, hd]. Equal to scaled_dot_product_attention over the concatenated keys up to float
    rounding (tests/test_model.py).
    """
    B, H, P, hd = prompt_keys.shape
    scale = hd**-0.5
    prompt, slot = place  # [r] each
    # the rows are written straight into the [B, H, n, .] layout the batched matmuls take, and read
    # back by (prompt, slot): at configs/maze.yaml's step 0 this saved 5 copies a layer and decode
    # step (transposes, reshapes, masked_fill's clone) against the same numbers bit for bit
    grouped = q.new_empty(B, H, n, hd)
    grouped[prompt, :, slot] = q[:, :, 0]
    prompt_scores = grouped @ prompt_keys.transpose(-1, -2) * scale  # [B, H, n, P]
    prompt_scores.masked_fill_(~prompt_valid[:, None, None, :], float("-inf"))
    own_scores = (q @ keys.transpose(-1, -2))[:, :, 0] * scale  # [r, H, t]
    scores = torch.cat([prompt_scores[prompt, :, slot], own_scores], dim=-1)  # [r, H, P + t]
    probs = scores.softmax(-1)
    prompt_probs = q.new_empty(B, H, n, P)
    prompt_probs[prompt, :, slot] = probs[:, :, :P]
    prompt_out = (prompt_probs @ prompt_values)[prompt, :, slot]  # [r, H, hd]
    own_out = probs[:, :, None, P:] @ values  # [r, H, 1, hd]
    return prompt_out[:, :, None] + own_out


class Attention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.qkv = nn.Linear(config.n_embd, 3 * config.n_embd, bias=False)
        self.proj = nn.Linear(config.n_embd, config.n_embd, bias=False)

    def forward(self, x, cos, sin, mask, cache=None, layer=0, prefix=None):
        B, T, d = x.shape
        qkv = self.qkv(x).view(B, T, 3, self.n_head, d // self.n_head).permute(2, 0, 3, 1, 4)
        # [B, H, T, hd] each; q and k rotated in one call (half the operations, the same numbers)
        (q, k), v = apply_rope(qkv[:2], cos, sin), qkv[2]
        if cache is not None:  # the sampler: earlier positions' keys and values are cached
            y = cache.attend(layer, q, k, v, mask)  # [B, H, T, hd]
        else:
            if prefix is not None:  # training with a shared prompt: its keys and values first
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
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd, bias=False),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd, bias=False),
        )

    def forward(self, x, cos, sin, mask, cache=None, layer=0, prefix=None):
        x = x + self.attn(self.attn_norm(x), cos, sin, mask, cache, layer, prefix)
        return x + self.mlp(self.mlp_norm(x))


class SharedPrefix:
    """Keys and values of B prompts, kept with their gradient graph, reused by each prompt's n
    responses.

    Training on n responses per prompt would otherwise run every prompt n times. The prompt
    pass records each layer's keys and values; the response pass puts them (copied to the
    n rows of each prompt) in front of its own. Gradients flow back into the prompt pass.
    """

    def __init__(self, n_repeat: int):
        self.n_repeat, self.keys, self.values, self.recording = n_repeat, [], [], True

    def record(self, layer, k, v):
        if self.recording:
            self.keys.append(k)  # [B, H, P, hd]
            self.values.append(v)

    def extend(self, layer, k, v):
        """The response pass's keys and values [B*n, H, T, hd] -> [B*n, H, P + T, hd]."""
        if self.recording:
            return k, v
        return self.put_first(self.keys[layer], k), self.put_first(self.values[layer], v)

    def put_first(self, prompt, own):
        """Each prompt's [B, H, P, hd] in front of its n rows' own [B*n, H, T, hd]. The prompt
        is broadcast straight into the result (one copy, where repeat_interleave then cat made
        two); the numbers and gradients are the same bit for bit (tests/test_model.py)."""
        B, H, P, hd = prompt.shape
        rows = own.view(B, self.n_repeat, H, -1, hd)  # [B, n, H, T, hd]
        joined = torch.cat([prompt[:, None].expand(B, self.n_repeat, H, P, hd), rows], dim=3)
        return joined.view(B * self.n_repeat, H, -1, hd)  # [B*n, H, P + T, hd]


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
        # rows of the log-prob forward run in this many buckets of similar response length
        # (forward_by_length);
        # 1 runs them all at once, padded to the longest (the numbers before issue 24). Set by the
        # builder.
        self.length_buckets = 1
        # the sampler stores each prompt's keys once for its responses (SharedPromptCache); False
        # copies them to every response, the numbers before issue 24. Set by the builder.
        self.shared_prompt_cache = False
        cos, sin = rope_tables(config.n_embd // config.n_head, config.block_size, config.rope_base)
        self.register_buffer("rope_cos", cos, persistent=False)  # [block_size, hd]
        self.register_buffer("rope_sin", sin, persistent=False)
        self.apply(self._init_weights)
        for name, param in self.named_parameters():  # residual branches start small (GPT-2)
            if name.endswith("proj.weight") or name.endswith("mlp.2.weight"):
                nn.init.normal_(param, std=0.02 / math.sqrt(2 * config.n_layer))

    @property
    def context_length(self) -> int:
        """Positions the model can attend over: the longest prompt + response."""
        return self.config.block_size

    @staticmethod
    def _init_weights(module):
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)

    def hidden_states(self, input_ids, positions, mask, cache=None, prefix=None):
        """input_ids, positions [B, T]; mask [B, 1, T, S] bool -> final-norm hidden states [B, T,
        d].
        """
        if int(positions.max()) >= self.config.block_size:
            raise ValueError(f"sequence longer than model.block_size={self.config.block_size}")
        cos = self.rope_cos[positions].unsqueeze(1)  # [B, 1, T, hd]
        sin = self.rope_sin[positions].unsqueeze(1)
        x = self.tok_emb(input_ids)
        for layer, block in enumerate(self.blocks):
            x = block(x, cos, sin, mask, cache, layer, prefix)
        return self.norm(x)

    def logits(self, input_ids, attention_mask):
        """Full logits [B, T, V] of a left-padded batch: the simple reference the tests compare
        against.
        """
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        return self.lm_head(
            self.hidden_states(input_ids, positions, causal_padding_mask(attention_mask))
        )

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
        """Log-prob mode: per-token log-probs (and entropy) of the responses, the last L columns.

        input_ids, attention_mask [R, T]: left-padded prompt followed by the response;
        response_mask [R, L]: 1 on response tokens to score. Returns logp [R, L] (0 off the
        mask) and entropy [R, L] or None. Only masked response positions reach the LM head.
        group_size > 1 says that rows come in groups of that many responses to the same prompt:
        each prompt then runs once (SharedPrefix), not once per response.
        With self.length_buckets > 1 the rows run in that many buckets of similar response length
        (forward_by_length), each cut to its longest response.
        """
        options = dict(
            temperature=temperature,
            valid_vocab=valid_vocab,
            return_entropy=return_entropy,
            fused=fused,
        )
        rows = response_mask.shape[0]
        if self.length_buckets > 1 and rows > group_size and rows % group_size == 0:
            return self.forward_by_length(
                input_ids, attention_mask, response_mask, group_size, **options
            )
        return self.logprobs_padded(
            input_ids, attention_mask, response_mask, group_size=group_size, **options
        )

    def forward_by_length(self, input_ids, attention_mask, response_mask, group_size, **options):
        """forward over buckets of prompt groups sorted by their longest response, each bucket
        cut to its own longest: the padding after a row's end never reaches a real token (causal
        attention), so the numbers are forward's up to float rounding (matmuls of other shapes).
        At configs/maze.yaml's step 0 a batch padded to 59 response tokens holds 26 on average;
        4 buckets run 0.70 of the padded response positions, 8 buckets 0.66."""
        R, L = response_mask.shape
        longest = response_mask.sum(1).view(-1, group_size).amax(1).long()  # [G] longest response
        groups = longest.argsort(stable=True)  # shortest first
        order, parts = [], []
        for bucket in groups.tensor_split(min(self.length_buckets, len(groups))):
            rows = (
                bucket[:, None] * group_size + torch.arange(group_size, device=bucket.device)
            ).flatten()
            cut = max(1, int(longest[bucket].max()))
            columns = input_ids.shape[1] - L + cut  # the prompt, then the bucket's longest response
            logp, entropy = self.logprobs_padded(
                input_ids[rows, :columns],
                attention_mask[rows, :columns],
                response_mask[rows, :cut],
                group_size=group_size,
                **options,
            )
            pad = lambda values: F.pad(values, (0, L - cut)) if values is not None else None
            order.append(rows)
            parts.append((pad(logp), pad(entropy)))
        back = torch.cat(order).argsort()  # bucket order -> the caller's row order
        logp = torch.cat([p[0] for p in parts])[back]
        return logp, (torch.cat([p[1] for p in parts])[back] if parts[0][1] is not None else None)

    def logprobs_padded(
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
        """forward's log-probs over every response column, padding included (forward's
        arguments).
        """
        L = response_mask.shape[1]
        positions = (attention_mask.long().cumsum(1) - 1).clamp(min=0)
        if group_size == 1:
            # [R, T, d]
            hidden = self.hidden_states(input_ids, positions, causal_padding_mask(attention_mask))
            predictors = hidden[:, -L - 1 : -1]  # position t predicts token t + 1
        else:
            prefix = SharedPrefix(group_size)
            prompt_mask = attention_mask[::group_size, :-L]  # [B, P]
            # [B, P, d]
            prompt_hidden = self.hidden_states(
                input_ids[::group_size, :-L],
                positions[::group_size, :-L],
                causal_padding_mask(prompt_mask),
                prefix=prefix,
            )
            prefix.recording = False
            # response queries see the prompt's real tokens, then their own tokens causally
            response_keys = causal_padding_mask(attention_mask[:, -L:])  # [R, 1, L, L]
            # [R, 1, L, P]
            prompt_keys = attention_mask[:, None, None, :-L].bool().expand(-1, 1, L, -1)
            response_hidden = self.hidden_states(
                input_ids[:, -L:],
                positions[:, -L:],
                torch.cat([prompt_keys, response_keys], dim=-1),
                prefix=prefix,
            )
            # [R, L, d]
            predictors = torch.cat(
                [
                    prompt_hidden[:, -1:].repeat_interleave(group_size, dim=0),
                    response_hidden[:, :-1],
                ],
                dim=1,
            )
        return head_logprobs(
            predictors,
            input_ids[:, -L:],
            response_mask,
            self.lm_head.weight,
            temperature,
            valid_vocab,
            return_entropy,
            fused,
        )

    @torch.no_grad()
    def prefill(self, prompt_ids, prompt_mask, n_repeat: int, max_new_tokens: int):
        """Run the B distinct prompts once, then copy each row's cache to its n_repeat responses."""
        B, P = prompt_ids.shape
        hd = self.config.n_embd // self.config.n_head
        param = self.tok_emb.weight
        capacity = P if self.shared_prompt_cache else P + max_new_tokens
        cache = KVCache(
            self.config.n_layer, B, self.config.n_head, capacity, hd, param.dtype, param.device
        )
        positions = (prompt_mask.long().cumsum(1) - 1).clamp(min=0)
        hidden = self.hidden_states(prompt_ids, positions, causal_padding_mask(prompt_mask), cache)
        cache.key_valid[:, :P] = prompt_mask.bool()
        cache.next_position = positions[:, -1] + 1
        cache.length = P
        if self.shared_prompt_cache:
            cache = SharedPromptCache(cache, n_repeat, max_new_tokens)
        else:
            cache = cache.repeat_interleave(n_repeat)
        return self.lm_head(hidden[:, -1]).repeat_interleave(n_repeat, dim=0), cache  # [B*n, V]

    @torch.no_grad()
    def decode(self, tokens, cache: KVCache):
        """tokens [R] -> next-token logits [R, V]; writes one slot of the cache."""
        mask = cache.next_slot_mask()  # [R, 1, 1, S] or None
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
        load_model(
            self,
            os.path.join(directory, "model.safetensors"),
            device=str(self.tok_emb.weight.device),
        )

    @classmethod
    def from_weights(cls, directory, device="cpu"):
        with open(os.path.join(directory, "gpt_config.json")) as f:
            model = cls(GPTConfig(**json.load(f))).to(device)
        model.load_weights(directory)
        return model
