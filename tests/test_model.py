"""The tiny GPT against simpler references: KV-cache decode equals full recompute, batching changes
nothing.
"""

import pytest
import torch

from model import GPT, GPTConfig
from rollout import generate, left_pad
from tokenizer import CharTokenizer

TOKENIZER = CharTokenizer()


def tiny_gpt(seed=0, tie=True):
    torch.manual_seed(seed)
    return GPT(
        GPTConfig(
            vocab_size=128, block_size=128, n_layer=2, n_head=2, n_embd=32, tie_embeddings=tie
        )
    ).eval()


PROMPTS = ["S.*\n..E\n", "ab", "a much longer prompt than the others\n"]


def test_kv_cache_decode_equals_full_recompute():
    model = tiny_gpt()
    prompts = [TOKENIZER.encode_prompt(p) for p in PROMPTS]
    continuation = torch.randint(3, 99, (len(prompts), 6))
    prompt_ids, prompt_mask = left_pad(prompts, TOKENIZER.pad_id, "cpu")
    # [B, P+6, V]
    full = model.logits(
        torch.cat([prompt_ids, continuation], 1),
        torch.cat([prompt_mask, torch.ones_like(continuation)], 1),
    )
    P = prompt_ids.shape[1]
    logits, cache = model.prefill(prompt_ids, prompt_mask, n_repeat=1, max_new_tokens=6)
    torch.testing.assert_close(logits, full[:, P - 1], atol=1e-5, rtol=1e-5)
    for t in range(5):
        logits = model.decode(continuation[:, t], cache)
        torch.testing.assert_close(logits, full[:, P + t], atol=1e-5, rtol=1e-5)


def test_left_padding_does_not_change_a_row():
    model = tiny_gpt()
    prompts = [TOKENIZER.encode_prompt(p) for p in PROMPTS]
    ids, mask = left_pad(prompts, TOKENIZER.pad_id, "cpu")
    batched = model.logits(ids, mask)
    for row, prompt in enumerate(prompts):
        alone = model.logits(torch.tensor([prompt]), torch.ones(1, len(prompt), dtype=torch.long))
        torch.testing.assert_close(batched[row, -len(prompt) :], alone[0], atol=1e-5, rtol=1e-5)


def test_batched_greedy_equals_each_prompt_alone():
    model = tiny_gpt(seed=1)
    prompts = [TOKENIZER.encode_prompt(p) for p in PROMPTS]
    options = dict(
        n=2,
        max_new_tokens=12,
        eos_ids=TOKENIZER.eos_ids,
        pad_id=TOKENIZER.pad_id,
        valid_vocab=TOKENIZER.vocab_size,
        temperature=0.0,
    )
    batched = generate(model, prompts, seeds=[0, 1, 2], **options)
    for i, prompt in enumerate(prompts):
        alone = generate(model, [prompt], seeds=[i], **options)
        width = alone.tokens.shape[1]
        assert torch.equal(batched.tokens[2 * i : 2 * i + 2, :width], alone.tokens)
        assert torch.equal(batched.response_mask[2 * i : 2 * i + 2, :width], alone.response_mask)


@pytest.mark.parametrize("length_buckets", [1, 2])
def test_logprob_forward_matches_full_logits(length_buckets):
    """The training log-prob mode equals log_softmax of the full logits at the response
    positions.
    """
    model = tiny_gpt(tie=False)
    model.length_buckets = length_buckets
    prompts = [TOKENIZER.encode_prompt(p) for p in PROMPTS]
    prompt_ids, prompt_mask = left_pad(prompts, TOKENIZER.pad_id, "cpu")
    responses = torch.randint(3, 99, (3, 5))
    response_mask = torch.tensor(
        [[1, 1, 1, 1, 1], [1, 1, 0, 0, 0], [1, 1, 1, 0, 0]], dtype=torch.float
    )
    input_ids = torch.cat([prompt_ids, responses], 1)
    attention_mask = torch.cat([prompt_mask, response_mask.long()], 1)
    logp, entropy = model(
        input_ids,
        attention_mask,
        response_mask,
        temperature=0.7,
        valid_vocab=TOKENIZER.vocab_size,
        return_entropy=True,
    )
    logits = (
        model.logits(input_ids, attention_mask)[:, -6:-1, : TOKENIZER.vocab_size].double() / 0.7
    )
    reference = logits.log_softmax(-1)
    expected = reference.gather(-1, responses[..., None])[..., 0] * response_mask
    expected_entropy = -(reference.exp() * reference).sum(-1) * response_mask
    torch.testing.assert_close(logp.double(), expected, atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy.double(), expected_entropy, atol=1e-5, rtol=0)


@pytest.mark.parametrize("group_size, buckets", [(1, 2), (3, 2), (3, 5), (2, 3)])
def test_length_buckets_give_the_padded_forwards_log_probs_and_gradients(group_size, buckets):
    """forward with length_buckets > 1 (rows cut to their bucket's longest response) equals the
    padded forward.
    """
    torch.manual_seed(3)
    model = tiny_gpt(tie=False)
    prompts = [TOKENIZER.encode_prompt(p) for p in PROMPTS for _ in range(group_size)]
    prompt_ids, prompt_mask = left_pad(prompts, TOKENIZER.pad_id, "cpu")
    # every group longest at a different length
    lengths = torch.tensor([1, 7, 3, 2, 5, 4, 7, 6, 1][: len(prompts)])
    response_mask = (torch.arange(7)[None, :] < lengths[:, None]).float()  # [R, 7]
    responses = torch.randint(3, 99, (len(prompts), 7)).masked_fill(
        response_mask == 0, TOKENIZER.pad_id
    )
    input_ids = torch.cat([prompt_ids, responses], 1)
    attention_mask = torch.cat([prompt_mask, response_mask.long()], 1)
    weights = torch.randn(len(prompts), 7)
    results = []
    for length_buckets in (1, buckets):
        model.length_buckets = length_buckets
        model.zero_grad()
        logp, entropy = model(
            input_ids,
            attention_mask,
            response_mask,
            temperature=0.8,
            valid_vocab=TOKENIZER.vocab_size,
            return_entropy=True,
            group_size=group_size,
        )
        ((logp + 0.1 * entropy) * weights).sum().backward()
        results.append((logp, entropy, [p.grad.clone() for p in model.parameters()]))
    (logp, entropy, grads), (logp_b, entropy_b, grads_b) = results
    torch.testing.assert_close(logp_b, logp, atol=1e-5, rtol=0)
    torch.testing.assert_close(entropy_b, entropy, atol=1e-5, rtol=0)
    for grad, grad_b in zip(grads, grads_b):
        torch.testing.assert_close(grad_b, grad, atol=1e-5, rtol=1e-4)
    assert (logp_b[response_mask == 0] == 0).all() and (logp_b[response_mask == 1] != 0).all()


def test_rope_as_three_operations_equals_the_two_halves_rotation_bit_for_bit():
    """apply_rope's x cos + (x2, x1) sin is (x1 cos - x2 sin, x1 sin + x2 cos) exactly."""
    from model import apply_rope, rope_tables

    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8, requires_grad=True)
    cos, sin = rope_tables(8, 16, 10000.0)  # [16, 8]
    positions = torch.tensor([[0, 1, 2, 3, 4], [7, 8, 9, 10, 15]])
    c, s = cos[positions][:, None], sin[positions][:, None]  # [2, 1, 5, 8]
    half_c, half_s = c[..., 4:], s[..., 4:]  # the angle's cosine and sine
    x1, x2 = x.chunk(2, dim=-1)
    reference = torch.cat([x1 * half_c - x2 * half_s, x1 * half_s + x2 * half_c], dim=-1)
    got = apply_rope(x, c, s)
    assert torch.equal(got, reference)
    grad = torch.randn_like(got)
    assert torch.equal(*(torch.autograd.grad(y, x, grad)[0] for y in (got, reference)))


def test_shared_prompt_attention_equals_sdpa_over_the_copied_prompt():
    """One decode step's attention with each prompt stored once equals scaled_dot_product_attention
    over [prompt slots, own slots] copied to every row, padding masked, some rows dropped."""
    from model import shared_prompt_attention

    torch.manual_seed(1)
    B, n, H, P, t, hd = 3, 4, 2, 5, 3, 8
    prompt_keys, prompt_values = torch.randn(B, H, P, hd), torch.randn(B, H, P, hd)
    prompt_valid = torch.ones(B, P, dtype=torch.bool)
    prompt_valid[0, :2] = False  # left padding
    prompt_valid[2, :4] = False
    rows = torch.tensor([0, 2, 3, 5, 8, 9, 11])  # live rows among B * n
    r = len(rows)
    q, keys, values = torch.randn(r, H, 1, hd), torch.randn(r, H, t, hd), torch.randn(r, H, t, hd)
    place = rows // n, rows % n  # each row's prompt and its index among the prompt's n
    got = shared_prompt_attention(
        q, prompt_keys, prompt_values, prompt_valid, keys, values, place, n
    )
    prompt = rows // n  # [r]
    all_keys = torch.cat([prompt_keys[prompt], keys], dim=2)  # [r, H, P + t, hd]
    all_values = torch.cat([prompt_values[prompt], values], dim=2)
    mask = torch.cat([prompt_valid[prompt], torch.ones(r, t, dtype=torch.bool)], dim=1)
    expected = torch.nn.functional.scaled_dot_product_attention(
        q, all_keys, all_values, attn_mask=mask[:, None, None, :]
    )
    assert got.shape == (r, H, 1, hd)
    torch.testing.assert_close(got, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("n_repeat", [1, 3])
def test_shared_prompt_cache_decode_equals_full_recompute(n_repeat):
    """With the prompt stored once (SharedPromptCache), prefill and decode still give the logits
    of a full forward without a cache, for every row of every prompt."""
    model = tiny_gpt()
    model.shared_prompt_cache = True
    prompts = [TOKENIZER.encode_prompt(p) for p in PROMPTS]
    prompt_ids, prompt_mask = left_pad(prompts, TOKENIZER.pad_id, "cpu")
    prompt_ids = prompt_ids.repeat_interleave(n_repeat, 0)
    prompt_mask = prompt_mask.repeat_interleave(n_repeat, 0)
    continuation = torch.randint(3, 99, (len(prompt_ids), 6))
    full = model.logits(
        torch.cat([prompt_ids, continuation], 1),
        torch.cat([prompt_mask, torch.ones_like(continuation)], 1),
    )
    P = prompt_ids.shape[1]
    logits, cache = model.prefill(
        prompt_ids[::n_repeat], prompt_mask[::n_repeat], n_repeat=n_repeat, max_new_tokens=6
    )
    torch.testing.assert_close(logits, full[:, P - 1], atol=1e-5, rtol=1e-5)
    live = torch.arange(len(prompt_ids))
    for t in range(5):
        if t == 2:  # drop a row of each prompt, as the sampler drops finished ones
            keep = torch.tensor([i for i in range(len(live)) if i % n_repeat or n_repeat == 1])
            keep = keep[1:] if n_repeat == 1 else keep
            cache.keep_rows(keep)
            live = live[keep]
        logits = model.decode(continuation[live, t], cache)
        torch.testing.assert_close(logits, full[live, P + t], atol=1e-5, rtol=1e-5)


def test_shared_prefix_puts_each_prompt_first_as_repeat_and_cat_do_bit_for_bit():
    """SharedPrefix.put_first (the prompt broadcast into the result) gives repeat_interleave then
    cat's numbers and gradients exactly."""
    from model import SharedPrefix

    torch.manual_seed(0)
    B, n, H, P, T, hd = 3, 4, 2, 5, 7, 8
    prompt = torch.randn(B, H, P, hd, requires_grad=True)
    own = torch.randn(B * n, T, H, hd).transpose(1, 2).requires_grad_()  # strided, as in Attention
    grad = torch.randn(B * n, H, P + T, hd)
    got = SharedPrefix(n).put_first(prompt, own)
    reference = torch.cat([prompt.repeat_interleave(n, dim=0), own], dim=2)
    assert torch.equal(got, reference)
    got_grads, reference_grads = (
        torch.autograd.grad(y, (prompt, own), grad) for y in (got, reference)
    )
    assert all(torch.equal(a, b) for a, b in zip(got_grads, reference_grads))


def shared_prompt_attention_by_transposes(
    q, prompt_keys, prompt_values, prompt_valid, keys, values, rows, n
):
    """shared_prompt_attention as first written (rows scattered into [B*n, ...], transposed and
    reshaped into the matmuls' layout and back): the reference for its numbers bit for bit."""
    B, H, P, hd = prompt_keys.shape
    scale = hd**-0.5
    grouped = q.new_zeros(B * n, H, hd)
    grouped[rows] = q[:, :, 0]
    grouped = grouped.view(B, n, H, hd).transpose(1, 2)  # [B, H, n, hd]
    prompt_scores = grouped @ prompt_keys.transpose(-1, -2) * scale  # [B, H, n, P]
    prompt_scores = prompt_scores.masked_fill(~prompt_valid[:, None, None, :], float("-inf"))
    prompt_scores = prompt_scores.transpose(1, 2).reshape(B * n, H, P)[rows]  # [r, H, P]
    own_scores = (q @ keys.transpose(-1, -2))[:, :, 0] * scale  # [r, H, t]
    probs = torch.cat([prompt_scores, own_scores], dim=-1).softmax(-1)  # [r, H, P + t]
    prompt_probs = q.new_zeros(B * n, H, P)
    prompt_probs[rows] = probs[:, :, :P]
    prompt_out = prompt_probs.view(B, n, H, P).transpose(1, 2) @ prompt_values  # [B, H, n, hd]
    prompt_out = prompt_out.transpose(1, 2).reshape(B * n, H, hd)[rows]  # [r, H, hd]
    return prompt_out[:, :, None] + probs[:, :, None, P:] @ values


@pytest.mark.parametrize(
    "B, n, H, P, t, hd, live", [(3, 4, 2, 5, 3, 8, 0.6), (64, 16, 4, 57, 20, 32, 0.4)]
)
def test_shared_prompt_attention_keeps_its_first_layouts_numbers_bit_for_bit(
    B, n, H, P, t, hd, live
):
    """Writing the rows straight into the matmuls' [B, H, n, .] layout (no transposes) changed no
    bit of the result, at a tiny shape and at configs/maze.yaml's."""
    from model import shared_prompt_attention

    torch.manual_seed(2)
    prompt_keys, prompt_values = torch.randn(B, H, P, hd), torch.randn(B, H, P, hd)
    prompt_valid = torch.rand(B, P).argsort(1) >= P // 3  # [B, P] some slots padding
    rows = (torch.rand(B * n) < live).nonzero()[:, 0]  # [r] the live rows
    r = len(rows)
    q, keys, values = torch.randn(r, H, 1, hd), torch.randn(r, H, t, hd), torch.randn(r, H, t, hd)
    arguments = (q, prompt_keys, prompt_values, prompt_valid, keys, values)
    got = shared_prompt_attention(*arguments, (rows // n, rows % n), n)
    assert torch.equal(got, shared_prompt_attention_by_transposes(*arguments, rows, n))
