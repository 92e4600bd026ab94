"""The sampler: per-prompt randomness, masks, EOS handling, filtering, and the sampled
distribution.
"""

import pytest
import torch

import rollout
from model import KVCache
from rollout import (
    combine_seeds,
    concat_rollouts,
    generate,
    sample_token,
    sequences_batch,
    uniforms,
)
from tokenizer import CharTokenizer
from test_model import tiny_gpt

TOKENIZER = CharTokenizer()
OPTIONS = dict(eos_ids=TOKENIZER.eos_ids, pad_id=TOKENIZER.pad_id, valid_vocab=TOKENIZER.vocab_size)


DROP = pytest.mark.parametrize("drop_finished", [True, False])


def eos_likely_gpt():
    """A tiny GPT that ends most responses within a few tokens, at different steps."""
    model = tiny_gpt()
    with torch.no_grad():  # make EOS likely but not certain
        model.lm_head.weight[TOKENIZER.eos_id] *= 0
        model.norm.weight.zero_()
    return model


@DROP
def test_a_prompts_samples_do_not_depend_on_the_rest_of_the_batch(drop_finished):
    model = tiny_gpt()
    prompts = [TOKENIZER.encode_prompt(p) for p in ["first", "the second prompt", "x"]]
    seeds = [combine_seeds(7, 0, i) for i in range(3)]
    batch = generate(
        model,
        prompts,
        n=4,
        max_new_tokens=10,
        seeds=seeds,
        temperature=1.0,
        top_p=0.9,
        drop_finished=drop_finished,
        **OPTIONS,
    )
    alone = generate(
        model,
        prompts[1:2],
        n=4,
        max_new_tokens=10,
        seeds=seeds[1:2],
        temperature=1.0,
        top_p=0.9,
        drop_finished=drop_finished,
        **OPTIONS,
    )
    assert torch.equal(batch.tokens[4:8, : alone.tokens.shape[1]], alone.tokens)
    other_seed = generate(
        model, prompts[1:2], n=4, max_new_tokens=10, seeds=[123], temperature=1.0, **OPTIONS
    )
    assert not torch.equal(other_seed.tokens, alone.tokens[:, : other_seed.tokens.shape[1]])
    # the n responses differ from each other
    assert len({tuple(row) for row in alone.tokens.tolist()}) > 1


@DROP
def test_sampling_in_prompt_chunks_equals_sampling_the_batch_at_once(drop_finished):
    """train.py's rl.rollout_prompts: chunks of prompts, then concat_rollouts, give the same
    rollout.
    """
    model = tiny_gpt()
    prompts = [TOKENIZER.encode_prompt(p) for p in ["first", "the second prompt", "x", "four"]]
    # seed 15: the first chunk ends early (EOS), so is padded
    seeds = [combine_seeds(15, 1, i) for i in range(4)]
    options = dict(
        n=2,
        max_new_tokens=12,
        temperature=8.0,
        return_entropy=True,
        drop_finished=drop_finished,
        **OPTIONS,
    )
    whole = generate(model, prompts, seeds=seeds, **options)
    parts = [
        generate(model, prompts[i:j], seeds=seeds[i:j], **options) for i, j in ((0, 1), (1, 4))
    ]
    assert parts[0].tokens.shape[1] < parts[1].tokens.shape[1]
    chunks = concat_rollouts(parts, TOKENIZER.pad_id)
    assert torch.equal(chunks.tokens, whole.tokens) and torch.equal(
        chunks.truncated, whole.truncated
    )
    assert torch.equal(chunks.response_mask, whole.response_mask)
    torch.testing.assert_close(chunks.sampler_logprobs, whole.sampler_logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(chunks.entropy, whole.entropy, atol=1e-5, rtol=0)


@DROP
def test_response_mask_includes_eos_and_marks_truncation(drop_finished):
    model = eos_likely_gpt()
    prompts = [TOKENIZER.encode_prompt("abc")]
    sampled = generate(
        model,
        prompts,
        n=64,
        max_new_tokens=8,
        seeds=[3],
        temperature=1.0,
        drop_finished=drop_finished,
        **OPTIONS,
    )
    for row, mask, truncated in zip(sampled.tokens, sampled.response_mask, sampled.truncated):
        length = int(mask.sum())
        assert mask[:length].all() and not mask[length:].any()
        ends_with_eos = bool(row[length - 1] == TOKENIZER.eos_id)
        assert ends_with_eos != bool(truncated)
        assert (row[length:] == TOKENIZER.pad_id).all()
        if truncated:  # a row cut at max_new_tokens fills every slot
            assert length == 8


def test_the_shared_prompt_cache_samples_the_same_rows(monkeypatch):
    """rl.shared_prompt_cache stores each prompt's keys once; with rows dropped as they finish,
    every row samples the same tokens as with the prompt copied to each, its log-probs and
    entropies equal up to float rounding."""
    monkeypatch.setattr(rollout, "DROP_FRACTION", 0.01)
    prompts = [TOKENIZER.encode_prompt(p) for p in ["abc", "a longer prompt", "x"]]
    options = dict(
        n=16, max_new_tokens=12, seeds=[5, 6, 7], temperature=1.0, return_entropy=True, **OPTIONS
    )
    model = eos_likely_gpt()
    copied = generate(model, prompts, **options)
    model.shared_prompt_cache = True
    shared = generate(model, prompts, **options)
    assert shared.response_mask.sum(1).min() < shared.response_mask.shape[1]  # rows did finish
    assert torch.equal(shared.tokens, copied.tokens)
    assert torch.equal(shared.response_mask, copied.response_mask)
    torch.testing.assert_close(shared.sampler_logprobs, copied.sampler_logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(shared.entropy, copied.entropy, atol=1e-5, rtol=0)


def test_dropping_finished_rows_changes_no_row(monkeypatch):
    """drop_finished=True takes finished rows out of the decode batch; every row samples what it
    did before.
    """
    kept = []
    keep_rows = KVCache.keep_rows
    monkeypatch.setattr(
        KVCache, "keep_rows", lambda cache, rows: kept.append(len(rows)) or keep_rows(cache, rows)
    )
    monkeypatch.setattr(rollout, "DROP_FRACTION", 0.01)  # drop as soon as any row has finished
    prompts = [TOKENIZER.encode_prompt(p) for p in ["abc", "a longer prompt", "x"]]
    options = dict(
        n=16, max_new_tokens=12, seeds=[5, 6, 7], temperature=1.0, return_entropy=True, **OPTIONS
    )
    model = eos_likely_gpt()
    dropped, whole = (
        generate(model, prompts, drop_finished=True, **options),
        generate(model, prompts, **{**options, "drop_finished": False}),
    )
    assert len(kept) >= 2 and kept[-1] < 48  # the batch did shrink, more than once
    assert torch.equal(dropped.tokens, whole.tokens) and torch.equal(
        dropped.truncated, whole.truncated
    )
    assert torch.equal(dropped.response_mask, whole.response_mask)
    torch.testing.assert_close(dropped.sampler_logprobs, whole.sampler_logprobs, atol=1e-5, rtol=0)
    torch.testing.assert_close(dropped.entropy, whole.entropy, atol=1e-5, rtol=0)


@DROP
@pytest.mark.parametrize("shared_prompt_cache", [False, True])
@pytest.mark.parametrize("group_size, length_buckets", [(1, 1), (8, 1), (1, 3), (8, 2)])
def test_sampler_logprobs_equal_the_training_paths(
    drop_finished, shared_prompt_cache, group_size, length_buckets
):
    """The PPO ratio's old log-probs come from the training forward (or, rl.old_logprobs sampler,
    from the sampler); with no top-k/top-p the two must agree (train/sampler_logp_gap is about 0),
    whichever cache the sampler keeps and however the forward buckets its rows."""
    model = eos_likely_gpt()
    model.length_buckets = length_buckets
    model.shared_prompt_cache = shared_prompt_cache
    with torch.no_grad():
        model.norm.weight.fill_(0.3)  # EOS likely, the other tokens not uniform
    prompts = [TOKENIZER.encode_prompt(p) for p in ["abc", "a longer prompt"]]
    sampled = generate(
        model,
        prompts,
        n=8,
        max_new_tokens=10,
        seeds=[1, 2],
        temperature=0.9,
        drop_finished=drop_finished,
        **OPTIONS,
    )
    # some rows ended early
    assert sampled.response_mask.sum(1).min() < sampled.response_mask.shape[1]
    rows = [p for p in prompts for _ in range(8)]
    input_ids, attention_mask = sequences_batch(
        rows, sampled.tokens, sampled.response_mask, TOKENIZER.pad_id
    )
    with torch.no_grad():
        logp, _ = model(
            input_ids,
            attention_mask,
            sampled.response_mask,
            temperature=0.9,
            valid_vocab=TOKENIZER.vocab_size,
            group_size=group_size,
        )
    torch.testing.assert_close(logp, sampled.sampler_logprobs, atol=1e-5, rtol=0)


def test_masked_vocabulary_is_never_sampled():
    logits = torch.zeros(4096, 10)
    logits[:, 7:] = 50.0  # the padded ids would win every draw if they were allowed
    u = uniforms(torch.arange(4096), 0)
    tokens, _ = sample_token(logits, u, temperature=1.0, top_k=0, top_p=1.0, valid_vocab=7)
    assert tokens.max() < 7
    greedy, _ = sample_token(logits, u, temperature=0.0, top_k=0, top_p=1.0, valid_vocab=7)
    assert greedy.max() < 7


def test_sampled_frequencies_match_the_distribution():
    probs = torch.tensor([0.5, 0.25, 0.15, 0.1, 0.0])
    logits = probs.log().expand(200_000, 5)
    u = uniforms(torch.arange(200_000), 5)
    tokens, logp = sample_token(
        logits.clone(), u, temperature=1.0, top_k=0, top_p=1.0, valid_vocab=5
    )
    frequencies = torch.bincount(tokens, minlength=5).float() / len(tokens)
    torch.testing.assert_close(frequencies, probs, atol=4e-3, rtol=0)  # ~4 standard errors
    torch.testing.assert_close(logp, probs.log()[tokens])


def test_top_p_and_top_k_keep_the_right_tokens():
    probs = torch.tensor([0.1, 0.5, 0.25, 0.15])
    logits = probs.log().expand(50_000, 4).clone()
    u = uniforms(torch.arange(50_000), 1)
    top_p, logp = sample_token(logits, u, temperature=1.0, top_k=0, top_p=0.7, valid_vocab=4)
    assert set(top_p.tolist()) == {1, 2}  # 0.5 + 0.25 reaches 0.7; renormalised to 2/3, 1/3
    assert abs((top_p == 1).float().mean().item() - 2 / 3) < 0.01
    # the sampler's log-prob is the tempered one before the filters (what TIS compares with the
    # trainer's), not 2/3
    torch.testing.assert_close(logp[top_p == 1], torch.full_like(logp[top_p == 1], 0.5).log())
    top_k, _ = sample_token(logits, u, temperature=1.0, top_k=3, top_p=1.0, valid_vocab=4)
    assert set(top_k.tolist()) == {1, 2, 3}
    top_1, _ = sample_token(logits, u, temperature=1.0, top_k=1, top_p=1.0, valid_vocab=4)
    assert set(top_1.tolist()) == {1}


def test_uniforms_are_uniform_and_reproducible():
    seeds = torch.tensor([combine_seeds(0, 0, i) for i in range(20_000)])
    u = uniforms(seeds, 3)
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.01 and abs(u.var().item() - 1 / 12) < 0.003
    assert torch.equal(u, uniforms(seeds.clone(), 3)) and not torch.equal(u, uniforms(seeds, 4))
    assert combine_seeds(1, 2, 3) != combine_seeds(1, 3, 2)
