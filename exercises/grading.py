"""What the graders share: call a student's function, compare its answer, and say what went wrong.

A failing grader names the function, the input it was given, what was expected and what came back,
with a hint where a common mistake explains the difference. An exception raised by the student's
function becomes a failure with the same context.
"""

import torch


def show(value, digits=4):
    """A value as a short readable string: tensors as nested lists, rounded; large tensors by their
    shape."""
    if isinstance(value, torch.Tensor):
        if value.numel() > 24:
            first = [round(x, digits) for x in value.detach().double().flatten()[:6].tolist()]
            return f"a tensor of shape {list(value.shape)} starting {first}"
        return str(_rounded(value.detach().double().tolist(), digits))
    if isinstance(value, float):
        return repr(round(value, digits + 6))
    if isinstance(value, str):
        return repr(value)
    return str(value)


def _rounded(x, digits):
    return [_rounded(item, digits) for item in x] if isinstance(x, list) else round(x, digits)


def describe_call(name, args, kwargs):
    parts = [show(a) for a in args] + [f"{key}={show(value)}" for key, value in kwargs.items()]
    return f"{name}({', '.join(parts)})"


def call(fn, *args, **kwargs):
    """fn(*args, **kwargs); an exception becomes a failure that shows the call."""
    try:
        return fn(*args, **kwargs)
    except NotImplementedError as err:
        raise AssertionError(f"{fn.__name__} is not written yet ({err})") from None
    except Exception as err:  # the student's code raised: say on which input
        raise AssertionError(
            f"{describe_call(fn.__name__, args, kwargs)} raised {type(err).__name__}: {err}"
        ) from err


def fail(what, expected, got, hint=""):
    lines = [what, f"  expected {show(expected)}", f"  got      {show(got)}"]
    if hint:
        lines.append(f"  hint: {hint}")
    raise AssertionError("\n".join(lines))


def expect_tensor(got, expected, what, *, atol=1e-5, hint=""):
    """got must be a tensor of expected's shape, without NaN, within atol of expected everywhere."""
    if not isinstance(got, torch.Tensor):
        fail(
            what,
            expected,
            got,
            f"return a torch.Tensor of shape {list(expected.shape)}, not {type(got).__name__}",
        )
    if got.shape != expected.shape:
        fail(
            what,
            expected,
            got,
            f"the shape should be {list(expected.shape)}, got {list(got.shape)}",
        )
    got64, expected64 = got.detach().double(), expected.detach().double()
    if torch.isnan(got64).any():
        fail(
            what,
            expected,
            got,
            hint or "NaN: a division by a zero std? Rows without signal must give exactly 0",
        )
    difference = (got64 - expected64).abs()
    if not (difference <= atol).all():
        where = tuple(int(i) for i in torch.nonzero(difference == difference.max())[0])
        extra = f"largest difference {difference.max().item():.3g} at index {list(where)}"
        fail(what, expected, got, f"{extra}. {hint}" if hint else extra)


def expect_shape(got, shape, what):
    """got must be a tensor of this shape."""
    if not isinstance(got, torch.Tensor) or got.shape != tuple(shape):
        described = list(got.shape) if isinstance(got, torch.Tensor) else type(got).__name__
        raise AssertionError(
            f"{what}\n  expected a tensor of shape {list(shape)}\n  got      {described}"
        )


def expect_float(got, expected, what, *, tol=1e-9, hint=""):
    """got must be a number within tol of expected (relative to max(1, |expected|))."""
    if isinstance(got, torch.Tensor) and got.numel() == 1:
        got = got.item()
    if not isinstance(got, (int, float)) or isinstance(got, bool):
        fail(what, expected, got, f"return a Python float, not {type(got).__name__}")
    if not abs(got - expected) <= tol * max(1.0, abs(expected)):
        fail(what, expected, got, hint)
