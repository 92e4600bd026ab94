"""logprob.py: the chunked log-prob/entropy path against full log_softmax in float64.

Errors are measured relative to the reference's largest magnitude, max|a - b| / max|ref|.
"""

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from logprob import fused_logprobs, naive_logprobs

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def rel_err(value, reference):
    return (
        (value.double() - reference.double()).abs().max() / reference.double().abs().max()
    ).item()


def make_case(M=50, d=24, V=57, valid_vocab=None, dtype=torch.float32, seed=0, device="cpu"):
    gen = torch.Generator().manual_seed(seed)
    hidden = torch.randn(M, d, generator=gen)
    # logits of a few units: a peaked, not one-hot, softmax
    weight = torch.randn(V, d, generator=gen) * 0.5
    targets = torch.randint(0, valid_vocab or V, (M,), generator=gen)
    return hidden.to(device, dtype), weight.to(device, dtype), targets.to(device)


def logp_entropy_and_grads(fn, hidden, weight, targets, grad_logp, grad_entropy, **options):
    """Run fn with grad; loss = sum(grad_logp * logp) + sum(grad_entropy * entropy) (either may be
    None)."""
    hidden = hidden.detach().requires_grad_()
    weight = weight.detach().requires_grad_()
    logp, entropy = fn(hidden, weight, targets, return_entropy=True, **options)
    loss = 0
    if grad_logp is not None:
        loss = loss + (grad_logp * logp).sum()
    if grad_entropy is not None:
        loss = loss + (grad_entropy * entropy).sum()
    loss.backward()
    return logp, entropy, hidden.grad, weight.grad


@pytest.mark.parametrize("chunk_size", [1, 7, 16, 64, None])  # 7 and 16 do not divide M = 50
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("valid_vocab", [None, 41])
@pytest.mark.parametrize("loss_on", ["logp", "entropy", "both"])
def test_matches_float64_reference(chunk_size, temperature, valid_vocab, loss_on):
    hidden, weight, targets = make_case(valid_vocab=valid_vocab)
    gen = torch.Generator().manual_seed(1)
    grad_logp = torch.randn(50, generator=gen) if loss_on != "entropy" else None
    grad_entropy = torch.randn(50, generator=gen) if loss_on != "logp" else None
    options = dict(temperature=temperature, valid_vocab=valid_vocab)
    ref = logp_entropy_and_grads(
        naive_logprobs,
        hidden.double(),
        weight.double(),
        targets,
        None if grad_logp is None else grad_logp.double(),
        None if grad_entropy is None else grad_entropy.double(),
        **options,
    )
    got = logp_entropy_and_grads(
        fused_logprobs,
        hidden,
        weight,
        targets,
        grad_logp,
        grad_entropy,
        chunk_size=chunk_size,
        **options,
    )
    for name, value, reference in zip(["logp", "entropy", "grad_hidden", "grad_weight"], got, ref):
        assert value.dtype == torch.float32, name
        assert rel_err(value, reference) < 1e-5, name
    if (
        valid_vocab is not None
    ):  # masked ids are outside the softmax: no gradient reaches their rows
        assert torch.all(got[3][valid_vocab:] == 0)


def test_logp_only_call_matches():
    hidden, weight, targets = make_case(valid_vocab=41)
    hidden.requires_grad_()
    logp = fused_logprobs(hidden, weight, targets, temperature=1.3, chunk_size=9, valid_vocab=41)
    logp.sum().backward()
    reference_hidden = hidden.detach().double().requires_grad_()
    reference = naive_logprobs(
        reference_hidden, weight.double(), targets, temperature=1.3, valid_vocab=41
    )
    reference.sum().backward()
    assert isinstance(logp, torch.Tensor) and logp.shape == (50,)
    assert rel_err(logp, reference) < 1e-5
    assert rel_err(hidden.grad, reference_hidden.grad) < 1e-5


def test_naive_reference_is_the_masked_tempered_softmax():
    """The reference itself, against the definition: logits past valid_vocab set to -inf."""
    hidden, weight, targets = make_case(M=9, d=5, V=12, valid_vocab=8, dtype=torch.float64)
    logits = hidden @ weight.T / 0.6  # [M, V]
    logits[:, 8:] = float("-inf")
    probs = logits.softmax(-1)
    expected_logp = probs[torch.arange(9), targets].log()
    expected_entropy = -torch.stack([sum(p * p.log() for p in row if p > 0) for row in probs])
    logp, entropy = naive_logprobs(
        hidden, weight, targets, temperature=0.6, valid_vocab=8, return_entropy=True
    )
    torch.testing.assert_close(logp, expected_logp)
    torch.testing.assert_close(entropy, expected_entropy)


def test_gradcheck_float64():
    hidden, weight, targets = make_case(M=6, d=4, V=9, valid_vocab=7, dtype=torch.float64)

    def both_outputs(h, w):
        return fused_logprobs(
            h, w, targets, temperature=0.8, chunk_size=4, valid_vocab=7, return_entropy=True
        )

    assert torch.autograd.gradcheck(
        both_outputs, (hidden.requires_grad_(), weight.requires_grad_())
    )


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_low_precision_inputs(device, dtype):
    hidden, weight, targets = make_case(M=40, d=64, V=300, dtype=dtype, device=device)
    gen = torch.Generator().manual_seed(2)
    grad_logp, grad_entropy = (
        torch.randn(40, generator=gen).to(device),
        torch.randn(40, generator=gen).to(device),
    )
    ref = logp_entropy_and_grads(
        naive_logprobs,
        hidden.double(),
        weight.double(),
        targets,
        grad_logp.double(),
        grad_entropy.double(),
        temperature=0.9,
    )
    got = logp_entropy_and_grads(
        fused_logprobs,
        hidden,
        weight,
        targets,
        grad_logp,
        grad_entropy,
        temperature=0.9,
        chunk_size=16,
    )
    assert got[0].dtype == got[1].dtype == torch.float32
    assert got[2].dtype == got[3].dtype == dtype
    # the inputs are exact in float32, so float32 logits lose almost nothing; bf16 logits
    # (a low-precision matmul output) would be off by about 1e-2 here
    assert rel_err(got[0], ref[0]) < 1e-4
    assert rel_err(got[1], ref[1]) < 1e-4
    # gradients are accumulated in float32 and rounded once to the input dtype
    assert rel_err(got[2], ref[2]) < 1e-2
    assert rel_err(got[3], ref[3]) < 1e-2


class TinyTiedLM(torch.nn.Module):
    def __init__(self, vocab=30, d=12):
        super().__init__()
        self.embedding = torch.nn.Embedding(vocab, d)
        self.mix = torch.nn.Linear(d, d)
        self.head = torch.nn.Linear(d, vocab, bias=False)
        self.head.weight = self.embedding.weight  # tied: one parameter, two uses

    def forward(self, tokens, targets, compute):
        hidden = torch.tanh(self.mix(self.embedding(tokens)))  # [M, d]
        return compute(hidden, self.head.weight, targets, temperature=0.9, return_entropy=True)


def test_tied_embedding_gets_both_gradients():
    gen = torch.Generator().manual_seed(3)
    tokens, targets = (
        torch.randint(0, 30, (25,), generator=gen),
        torch.randint(0, 30, (25,), generator=gen),
    )
    model = TinyTiedLM()
    grads = {}
    for name, compute in [
        ("naive", naive_logprobs),
        ("fused", lambda *a, **k: fused_logprobs(*a, chunk_size=6, **k)),
    ]:
        model.zero_grad(set_to_none=True)
        logp, entropy = model(tokens, targets, compute)
        (logp.sum() - 0.1 * entropy.sum()).backward()
        grads[name] = {n: p.grad.clone() for n, p in model.named_parameters()}
    assert set(grads["fused"]) == {"embedding.weight", "mix.weight", "mix.bias"}
    for n in grads["naive"]:
        assert rel_err(grads["fused"][n], grads["naive"][n]) < 1e-5, n
    # the tied weight's gradient is the sum of its two uses, not the head's part alone
    hidden = torch.tanh(model.mix(model.embedding(tokens))).detach()
    weight = model.embedding.weight.detach().requires_grad_()
    logp, entropy = fused_logprobs(hidden, weight, targets, temperature=0.9, return_entropy=True)
    (logp.sum() - 0.1 * entropy.sum()).backward()
    assert rel_err(weight.grad, grads["fused"]["embedding.weight"]) > 1e-3


@pytest.mark.parametrize(
    "chunk_size", [8, None]
)  # several chunks; one chunk, whose logits are kept
def test_backward_twice_with_retain_graph(chunk_size):
    hidden, weight, targets = make_case()
    hidden.requires_grad_()
    logp, entropy = fused_logprobs(
        hidden, weight, targets, chunk_size=chunk_size, return_entropy=True
    )
    loss = logp.sum() + entropy.sum()
    first = torch.autograd.grad(loss, hidden, retain_graph=True)[0]
    second = torch.autograd.grad(loss, hidden)[0]
    assert torch.equal(first, second)


@pytest.mark.parametrize("which", ["hidden", "weight"])
def test_only_one_input_requires_grad(which):
    hidden, weight, targets = make_case()
    reference_inputs = [hidden.double().requires_grad_(), weight.double().requires_grad_()]
    naive_logprobs(*reference_inputs, targets, temperature=0.8).sum().backward()
    inputs = [hidden.requires_grad_(which == "hidden"), weight.requires_grad_(which == "weight")]
    fused_logprobs(*inputs, targets, temperature=0.8, chunk_size=8).sum().backward()
    index = 0 if which == "hidden" else 1
    assert inputs[1 - index].grad is None
    assert rel_err(inputs[index].grad, reference_inputs[index].grad) < 1e-5


def test_no_grad_builds_no_graph():
    hidden, weight, targets = make_case(valid_vocab=41)
    hidden.requires_grad_()
    weight.requires_grad_()
    with torch.no_grad():
        logp, entropy = fused_logprobs(
            hidden, weight, targets, chunk_size=8, valid_vocab=41, return_entropy=True
        )
        reference_logp, reference_entropy = naive_logprobs(
            hidden.double(), weight.double(), targets, valid_vocab=41, return_entropy=True
        )
    assert logp.grad_fn is None and entropy.grad_fn is None and not logp.requires_grad
    assert rel_err(logp, reference_logp) < 1e-5
    assert rel_err(entropy, reference_entropy) < 1e-5


def test_no_tokens():
    hidden, weight, targets = make_case(M=0)
    hidden.requires_grad_()
    weight.requires_grad_()
    logp, entropy = fused_logprobs(hidden, weight, targets, return_entropy=True)
    assert logp.shape == entropy.shape == (0,)
    (logp.sum() + entropy.sum()).backward()
    assert hidden.grad.shape == (0, 24)
    assert weight.grad.shape == weight.shape and torch.all(weight.grad == 0)
    with torch.no_grad():
        assert fused_logprobs(hidden, weight, targets).shape == (0,)


class LargestTensor(TorchDispatchMode):
    """Records the largest tensor any aten op returns (allocations included)."""

    def __init__(self):
        super().__init__()
        self.numel = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for value in tree_flatten(out)[0]:
            if isinstance(value, torch.Tensor):
                self.numel = max(self.numel, value.numel())
        return out


def test_never_holds_more_than_a_chunk_of_logits():
    # d < chunk, so [V, d] and [M, d] are smaller than one chunk of logits
    M, d, V, chunk = (
        64,
        8,
        50,
        16,
    )
    hidden, weight, targets = make_case(M=M, d=d, V=V)
    hidden.requires_grad_()
    weight.requires_grad_()
    with LargestTensor() as fused:
        logp, entropy = fused_logprobs(
            hidden, weight, targets, chunk_size=chunk, return_entropy=True
        )
        (logp.sum() + entropy.sum()).backward()
    with LargestTensor() as naive:
        logp, entropy = naive_logprobs(hidden, weight, targets, return_entropy=True)
        (logp.sum() + entropy.sum()).backward()
    assert fused.numel == chunk * V
    assert naive.numel == M * V  # the check can see a full logits tensor when there is one


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(hidden=torch.zeros(4, 3, 8)), "hidden must be a 2-D"),
        (dict(weight=torch.zeros(10)), "weight must be a 2-D"),
        (dict(weight=torch.zeros(10, 7)), "does not match"),
        (dict(weight=torch.zeros(10, 8, dtype=torch.float64)), "share one floating dtype"),
        (dict(targets=torch.zeros(5, dtype=torch.long)), "length 4"),
        (dict(targets=torch.zeros(4, 1, dtype=torch.long)), "1-D"),
        (dict(targets=torch.zeros(4)), "int64"),
        (dict(targets=torch.tensor([0, 1, 10, 2])), r"\[0, 10\)"),
        (dict(targets=torch.tensor([0, -1, 2, 2])), r"\[0, 10\)"),
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(valid_vocab=11), "valid_vocab"),
        (dict(valid_vocab=0), "valid_vocab"),
        (dict(valid_vocab=3), r"\[0, 3\)"),  # target 3 >= valid_vocab
        (dict(chunk_size=0), "chunk_size"),
    ],
)
def test_bad_inputs_raise_clear_errors(change, message):
    arguments = dict(
        hidden=torch.zeros(4, 8), weight=torch.zeros(10, 8), targets=torch.tensor([0, 1, 3, 2])
    )
    arguments.update(change)
    options = {
        k: arguments.pop(k) for k in ("temperature", "valid_vocab", "chunk_size") if k in arguments
    }
    with pytest.raises(ValueError, match=message):
        fused_logprobs(arguments["hidden"], arguments["weight"], arguments["targets"], **options)
    options.pop("chunk_size", None)
    if "chunk_size" not in change:
        with pytest.raises(ValueError, match=message):
            naive_logprobs(
                arguments["hidden"], arguments["weight"], arguments["targets"], **options
            )
