"""Grader for exercise 8, logprob_backward: against autograd on the plain log_softmax, at T = 1 and
T != 1, and a case worked by hand."""

import pytest
import torch

from grading import call, expect_shape, expect_tensor

EXERCISE = "logprob_backward"


def autograd_reference(hidden, weight, targets, grad_logp, temperature):
    """What autograd gives for the plain forward, log_softmax(h W^T / T)[y], in float64."""
    hidden = hidden.detach().clone().requires_grad_(True)
    weight = weight.detach().clone().requires_grad_(True)
    # [M]
    logp = (
        torch.log_softmax(hidden @ weight.T / temperature, dim=-1)
        .gather(1, targets[:, None])
        .squeeze(1)
    )
    return torch.autograd.grad(logp, (hidden, weight), grad_logp)


def random_inputs(m, d, v, seed):
    generator = torch.Generator().manual_seed(seed)
    hidden = torch.randn(m, d, generator=generator, dtype=torch.float64)
    weight = torch.randn(v, d, generator=generator, dtype=torch.float64) * 0.5
    targets = torch.randint(0, v, (m,), generator=generator)
    grad_logp = torch.randn(m, generator=generator, dtype=torch.float64)
    return hidden, weight, targets, grad_logp


def check(impl, hidden, weight, targets, grad_logp, temperature, what, hint=""):
    got = call(impl.logprob_backward, hidden, weight, targets, grad_logp, temperature)
    assert isinstance(got, tuple) and len(got) == 2, (
        f"logprob_backward must return (grad_hidden, grad_weight), got {type(got).__name__}"
    )
    expected_hidden, expected_weight = autograd_reference(
        hidden, weight, targets, grad_logp, temperature
    )
    expect_tensor(got[0], expected_hidden, f"grad_hidden of {what}", atol=1e-9, hint=hint)
    expect_tensor(got[1], expected_weight, f"grad_weight of {what}", atol=1e-9, hint=hint)


def test_shapes(impl):
    hidden, weight, targets, grad_logp = random_inputs(7, 5, 11, seed=3)
    got = call(impl.logprob_backward, hidden, weight, targets, grad_logp, 1.0)
    assert isinstance(got, tuple) and len(got) == 2, (
        f"logprob_backward must return (grad_hidden, grad_weight), got {type(got).__name__}"
    )
    expect_shape(got[0], (7, 5), "grad_hidden for hidden [7, 5]: the same shape as hidden")
    expect_shape(got[1], (11, 5), "grad_weight for weight [11, 5]: the same shape as weight")


def test_a_case_worked_by_hand(impl):
    # one token, d = 1, V = 2, T = 1: z = [1, 0] h = [1, 0], p = [e/(e+1), 1/(e+1)],
    # target 0, grad 1
    # dz = onehot - p = [1/(e+1), -1/(e+1)];  grad_hidden = dz @ W = 1/(e+1);
    # grad_weight = dz^T h = [[1/(e+1)], [-1/(e+1)]]
    hidden = torch.tensor([[1.0]], dtype=torch.float64)
    weight = torch.tensor([[1.0], [0.0]], dtype=torch.float64)
    check(
        impl,
        hidden,
        weight,
        torch.tensor([0]),
        torch.tensor([1.0], dtype=torch.float64),
        1.0,
        "one token, h = [1], W = [[1], [0]], target 0, T = 1",
        hint="dlogp/dz = onehot(target) - softmax(z): here [1/(e+1), -1/(e+1)]",
    )


def test_against_autograd_at_temperature_1(impl):
    hidden, weight, targets, grad_logp = random_inputs(7, 5, 11, seed=0)
    check(impl, hidden, weight, targets, grad_logp, 1.0, "7 tokens, d = 5, V = 11, T = 1")


@pytest.mark.parametrize("temperature", [0.7, 1.6])
def test_against_autograd_at_other_temperatures(impl, temperature):
    hidden, weight, targets, grad_logp = random_inputs(9, 4, 13, seed=1)
    check(
        impl,
        hidden,
        weight,
        targets,
        grad_logp,
        temperature,
        f"9 tokens, d = 4, V = 13, T = {temperature}",
        hint="z = h W^T / T: the softmax is of the tempered logits, and both gradients carry a 1/T",
    )


def test_repeated_targets_accumulate(impl):
    hidden, weight, _, grad_logp = random_inputs(6, 3, 5, seed=2)
    targets = torch.tensor([2, 2, 2, 0, 2, 4])  # one row of the head gets several tokens' gradient
    check(impl, hidden, weight, targets, grad_logp, 1.0, "6 tokens, most of them with target 2")
