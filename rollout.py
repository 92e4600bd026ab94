"""Batched sampling with a KV cache: B prompts x n responses each.

Each distinct prompt is prefilled once and its cache copied to its n response rows;
then the whole batch decodes one token per step. Temperature, top-k and top-p
(nucleus) filtering; ids the tokenizer cannot decode (`valid_vocab` and beyond: a
padded embedding table) are never sampled. Each row stops at its own EOS and the
loop ends when every row has finished or `max_new_tokens` is reached.

Randomness is counter-based: the uniform number that picks row r's token at step t
is a hash of (prompt seed, response index, t), drawn by inverse-CDF sampling. So a
prompt's responses depend only on its seed, never on which prompts share the batch,
how many ranks split it, or which device runs it; `temperature=0` is greedy.

The sampler's own log-probs (tempered, before top-k/top-p) are returned beside the tokens: the PPO
ratio uses log-probs recomputed by the training path, and their gap to the sampler's is a diagnostic
(train/sampler_logp_gap) and, with rl.tis_cap, a weight (truncated importance sampling).

The padding helpers every stage shares live here too: prompts are left-padded (the sampler's
prefill, and the prompt half of every training row), responses and demonstrations right-padded,
and a prompt + response batch is cut into micro-batches between prompts' groups of responses.
"""

from dataclasses import dataclass

import torch

MASK32 = 0xFFFFFFFF
# drop finished rows from the decode batch once they are this share of it: at configs/maze.yaml's
# step 0 (the warm start's policy) the batch is 44 % live on average over its 59 decode steps
DROP_FRACTION = 0.125


@dataclass
class Rollout:
    tokens: torch.Tensor  # [B*n, L] response tokens, pad_id after the end
    # [B*n, L] 1.0 on response tokens, EOS included (the policy must learn to stop)
    response_mask: torch.Tensor
    truncated: torch.Tensor  # [B*n] bool: no EOS within max_new_tokens
    # [B*n, L] each token's log-prob, tempered, before top-k/top-p (the sampler's pi)
    sampler_logprobs: torch.Tensor
    entropy: torch.Tensor = (
        None  # [B*n, L] policy entropy at the sampling temperature, when asked for
    )


def concat_rollouts(parts: list[Rollout], pad_id: int) -> Rollout:
    """Rollouts of consecutive prompt chunks -> one Rollout, shorter ones padded on the right."""
    if len(parts) == 1:
        return parts[0]
    L = max(p.tokens.shape[1] for p in parts)
    pad = lambda t, value: torch.nn.functional.pad(t, (0, L - t.shape[1]), value=value)
    entropy = [pad(p.entropy, 0.0) for p in parts] if parts[0].entropy is not None else None
    return Rollout(
        torch.cat([pad(p.tokens, pad_id) for p in parts]),
        torch.cat([pad(p.response_mask, 0.0) for p in parts]),
        torch.cat([p.truncated for p in parts]),
        torch.cat([pad(p.sampler_logprobs, 0.0) for p in parts]),
        torch.cat(entropy) if entropy is not None else None,
    )


# ----------------------------------------------------------------------------- padding and batches


def left_pad(sequences: list[list[int]], pad_id: int, device):
    """Token lists -> (ids [B, P], mask [B, P]) with padding on the left."""
    P = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), P), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), P, dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, P - len(seq) :] = torch.tensor(seq, dtype=torch.long)
        mask[row, P - len(seq) :] = 1
    return ids.to(device), mask.to(device)


def right_pad(sequences: list[list[int]], pad_id: int, device):
    """Token lists -> (ids [R, L], mask [R, L] float) with padding on the right."""
    L = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), L), pad_id, dtype=torch.long)
    mask = torch.zeros(len(sequences), L)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(seq)
        mask[row, : len(seq)] = 1.0
    return ids.to(device), mask.to(device)


def sequences_batch(prompts: list[list[int]], responses, response_mask, pad_id):
    """Prompts (token lists, one per row) + response tokens [R, L] -> input_ids, attention_mask [R,
    P+L].
    """
    prompt_ids, prompt_mask = left_pad(prompts, pad_id, responses.device)
    input_ids = torch.cat([prompt_ids, responses], dim=1)
    attention_mask = torch.cat([prompt_mask, response_mask.long()], dim=1)
    return input_ids, attention_mask


def micro_slices(n_rows: int, group_size: int, micro_batch: int) -> list[slice]:
    """Row ranges of at most `micro_batch` rows (0 = all), cut between prompts' groups of
    responses: a range holds at least one group, so a micro_batch below group_size gives one each.
    """
    step = max(group_size, (micro_batch or n_rows) // group_size * group_size)
    return [slice(i, i + step) for i in range(0, n_rows, step)]


# ----------------------------------------------------------------------------- counter-based
# randomness


def _mul32(x, constant):
    """(x * constant) mod 2^32 for x in [0, 2^32), split in 16-bit halves so int64 never
    overflows.
    """
    low = x * (constant & 0xFFFF)
    high = ((x * (constant >> 16)) & 0xFFFF) << 16
    return (low + high) & MASK32


def hash32(x):
    """A 32-bit integer mixer (the 'lowbias32' constants of C. Wellons); x int64 tensor in [0,
    2^32).
    """
    x = x ^ (x >> 16)
    x = _mul32(x, 0x7FEB352D)
    x = x ^ (x >> 15)
    x = _mul32(x, 0x846CA68B)
    return x ^ (x >> 16)


def combine_seeds(*parts) -> int:
    """One 32-bit seed from integers, e.g. prompt_seed = combine_seeds(run_seed, step,
    prompt_index).
    """
    h = torch.tensor(0x9E3779B9, dtype=torch.long)
    for part in parts:
        h = hash32(((h ^ (int(part) & MASK32)) + 0x632BE5AB) & MASK32)
    return int(h)


def uniforms(row_seeds, step: int):
    """row_seeds [R] int64 -> [R] float32 uniforms in [0, 1), one per (row, step)."""
    h = hash32(
        (row_seeds ^ hash32(torch.full_like(row_seeds, (step + 0x9E3779B9) & MASK32))) & MASK32
    )
    return (h >> 8).float() / float(1 << 24)


# ----------------------------------------------------------------------------- one sampling step


def tempered_entropy(logits, temperature: float, valid_vocab: int):
    """logits [R, V] -> entropy [R] of softmax(logits / T) over the decodable ids (before
    top-k/top-p).
    """
    logp = (logits[:, :valid_vocab].float() / max(temperature, 1e-6)).log_softmax(-1)
    return -(logp.exp() * logp).nan_to_num().sum(-1)


def sample_token(logits, u, temperature: float, top_k: int, top_p: float, valid_vocab: int):
    """logits [R, V], u [R] uniforms -> (tokens [R], their log-probs [R] under the tempered
    distribution over the decodable ids, before top-k and top-p: the sampler's own pi, which
    truncated importance sampling (rl.tis_cap) compares with the trainer's)."""
    logits = logits.float()
    logits[:, valid_vocab:] = float("-inf")
    if temperature == 0:
        tokens = logits.argmax(-1)
        return tokens, torch.zeros_like(u)
    logits = tempered = logits / temperature  # [R, V]
    if 0 < top_k < logits.shape[1]:
        kth_largest = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth_largest, float("-inf"))
    probs = logits.softmax(-1)  # [R, V]
    order = None
    if top_p < 1.0:  # smallest set of most likely tokens whose mass reaches top_p
        probs, order = probs.sort(-1, descending=True)
        mass_before = probs.cumsum(-1) - probs
        probs = probs.masked_fill(mass_before >= top_p, 0.0)
    cdf = probs.cumsum(-1)  # [R, V]
    # first id whose cumulative mass exceeds u * total: zero-probability ids are never picked
    index = torch.searchsorted(cdf, (u * cdf[:, -1]).unsqueeze(1), right=True).clamp(
        max=probs.shape[1] - 1
    )
    tokens = index[:, 0] if order is None else order.gather(1, index)[:, 0]
    return tokens, tempered.gather(1, tokens[:, None])[:, 0] - tempered.logsumexp(-1)


# ----------------------------------------------------------------------------- the loop


def drop_finished_rows(cache, live, finished):
    """Rows [r] still to decode, after dropping the finished ones from the cache once they are at
    least DROP_FRACTION of the batch (copying the cache costs about one decode step). The other
    rows' numbers do not change but for float rounding. Caches without keep_rows (hf_policy's)
    keep every row to the end, as before."""
    done = finished[live]
    if not hasattr(cache, "keep_rows") or int(done.sum()) < DROP_FRACTION * len(live):
        return live
    keep = (~done).nonzero()[:, 0]  # [r']
    cache.keep_rows(keep)
    return live[keep]


@torch.no_grad()
def response_seeds(seeds: list[int], n: int, device):
    """[B*n] one seed per response: its prompt's seed hashed with its index among the n."""
    response_index = torch.arange(n, device=device).repeat(len(seeds))
    prompt_seeds = torch.tensor(seeds, dtype=torch.long, device=device).repeat_interleave(n)
    return hash32((prompt_seeds ^ hash32(response_index + 1)) & MASK32)


def generate(policy, prompts: list[list[int]], *, n: int, max_new_tokens: int, eos_ids,
             pad_id: int, valid_vocab: int, seeds: list[int], temperature: float = 1.0,
             top_k: int = 0, top_p: float = 1.0, return_entropy: bool = False,
             drop_finished: bool = True) -> Rollout:  # fmt: skip
    """Sample n responses for each of the B prompts (token lists); rows b*n .. b*n+n-1 belong to
    prompt b.

    drop_finished: finished rows leave the decode batch (drop_finished_rows). The log-probs may
    differ in the last float bits (matmuls of fewer rows: 1.4e-6 at most at configs/maze.yaml's
    step 0, whose tokens were all the same), so False gives back the old numbers exactly. It made
    that step's rollout 1.4x faster (CPU time, 2 threads).
    """
    if len(seeds) != len(prompts):
        raise ValueError(
            f"generate needs one seed per prompt: {len(seeds)} seeds for {len(prompts)} prompts"
        )
    device = next(policy.parameters()).device
    prompt_ids, prompt_mask = left_pad(prompts, pad_id, device)
    R = len(prompts) * n
    row_seeds = response_seeds(seeds, n, device)  # [R]
    eos = torch.tensor(list(eos_ids), device=device)

    tokens = torch.full((R, max_new_tokens), pad_id, dtype=torch.long, device=device)
    sampler_logprobs = torch.zeros(R, max_new_tokens, device=device)
    response_mask = torch.zeros(R, max_new_tokens, device=device)
    entropy = torch.zeros(R, max_new_tokens, device=device) if return_entropy else None
    finished = torch.zeros(R, dtype=torch.bool, device=device)
    logits, cache = policy.prefill(prompt_ids, prompt_mask, n, max_new_tokens)
    # the rows still in the decode batch, in the cache's order
    live = torch.arange(R, device=device)
    length = 0
    for t in range(max_new_tokens):
        next_tokens, logp = sample_token(
            logits, uniforms(row_seeds[live], t), temperature, top_k, top_p, valid_vocab
        )
        done = finished[live]  # finished before this step, not yet dropped: they get padding
        tokens[live, t] = next_tokens.masked_fill(done, pad_id)
        sampler_logprobs[live, t] = logp.masked_fill(done, 0.0)
        response_mask[live, t] = (~done).float()
        if return_entropy:
            step_entropy = tempered_entropy(logits, temperature, valid_vocab)
            entropy[live, t] = step_entropy.masked_fill(done, 0.0)
        finished[live] = done | torch.isin(next_tokens, eos)
        length = t + 1
        if bool(finished.all()) or t + 1 == max_new_tokens:
            break
        if drop_finished:
            live = drop_finished_rows(cache, live, finished)
        logits = policy.decode(tokens[live, t], cache)
    entropy = entropy[:, :length] if return_entropy else None
    return Rollout(tokens[:, :length], response_mask[:, :length], ~finished,
                   sampler_logprobs[:, :length], entropy)  # fmt: skip
