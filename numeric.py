"""A bounded, fixed-precision numeric evaluator for the sympy expressions latex.py builds.

math_answer.py compares symbolic answers by value: both sides at a few deterministic pseudo-random
points, to 30 significant digits, with mpmath. sympy's own evalf is not used: its adaptive precision
can loop for minutes on e^{e^{e^{e^x}}}. Here every node costs a bounded amount and anything beyond
about 10^10000, a pole or an unknown function is simply undefined (None), never an error.
"""

import mpmath
import sympy

POINTS = 3  # random points for the numeric check of symbolic expressions
DIGITS = 30  # working precision of that check


def points(symbols):
    """Deterministic pseudo-random points in (1.4, 3.3): the same symbols get the same values on
    every call, so a verdict never depends on the run."""
    names = sorted(symbols, key=lambda s: s.name)
    return [
        {
            s: mp.mpf(137 + 11 * ((7 * index + 13 * k + 5) % 17)) / (97 + 3 * index)
            for k, s in enumerate(names)
        }
        for index in range(POINTS)
    ]


class Undefined(Exception):
    """A value we will not compute: a pole, an overflow, an unknown function."""


mp = mpmath.MPContext()
mp.dps = DIGITS
_MAX_MAGNITUDE_BITS = 33_000
# mpmath's gamma (binomials too) takes seconds at 1000 digits and minutes at 9000, where
# math_answer.py compares huge constants: beyond this precision they are undefined
_MAX_GAMMA_DIGITS = 300
_CONSTANTS = {
    sympy.pi: lambda: mp.pi,
    sympy.E: lambda: mp.e,
    sympy.I: lambda: mp.j,
    sympy.EulerGamma: lambda: mp.euler,
}
_NUMERIC_FUNCTIONS = {
    sympy.exp: "exp",
    sympy.log: "log",
    sympy.sin: "sin",
    sympy.cos: "cos",
    sympy.tan: "tan",
    sympy.sec: "sec",
    sympy.csc: "csc",
    sympy.cot: "cot",
    sympy.asin: "asin",
    sympy.acos: "acos",
    sympy.atan: "atan",
    sympy.sinh: "sinh",
    sympy.cosh: "cosh",
    sympy.tanh: "tanh",
    sympy.gamma: "gamma",
    sympy.factorial: "factorial",
}


def bounded(value):
    if not mp.isfinite(value) or (value != 0 and mp.mag(value) > _MAX_MAGNITUDE_BITS):
        raise Undefined
    return value


def value(expr, values):
    if expr.is_Symbol:
        if expr not in values:
            raise Undefined
        return values[expr]
    if expr.is_Rational:
        return mp.mpf(expr.p) / expr.q
    if expr in _CONSTANTS:
        return _CONSTANTS[expr]()
    args = [value(arg, values) for arg in expr.args]
    if expr.is_Add:
        return bounded(mp.fsum(args))
    if expr.is_Mul:
        return bounded(mp.fprod(args))
    if expr.is_Pow:
        base, exponent = args
        if base == 0:
            if mp.re(exponent) <= 0:
                raise Undefined
            return mp.mpf(0)
        if abs(exponent) * abs(mp.log(abs(base), 2)) > _MAX_MAGNITUDE_BITS:
            raise Undefined
        return bounded(mp.power(base, exponent))
    if isinstance(expr, sympy.Abs):
        return abs(args[0])
    if isinstance(expr, (sympy.floor, sympy.ceiling)):
        if mp.im(args[0]) != 0:
            raise Undefined
        return (mp.floor if isinstance(expr, sympy.floor) else mp.ceil)(args[0])
    if isinstance(expr, sympy.binomial):
        if mp.dps > _MAX_GAMMA_DIGITS:
            raise Undefined
        return bounded(mp.binomial(*args))
    name = _NUMERIC_FUNCTIONS.get(expr.func)
    if name is None or len(args) != 1:
        raise Undefined
    (argument,) = args
    if name == "exp" and abs(mp.re(argument)) > _MAX_MAGNITUDE_BITS * 0.69:
        raise Undefined
    if name in ("sin", "cos", "tan", "sec", "csc", "cot") and abs(argument) > 10**100:
        raise Undefined  # argument reduction would need that many digits
    if name in ("gamma", "factorial") and (abs(argument) > 10**4 or mp.dps > _MAX_GAMMA_DIGITS):
        raise Undefined
    if name == "log" and argument == 0:
        raise Undefined
    return bounded(getattr(mp, name)(argument))


def evaluate(expr, substitution):
    """mpmath value of a sympy expression at a point, or None where it is undefined."""
    try:
        return value(expr, substitution)
    except (Undefined, ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None


def known(expr):
    """Whether a constant has a value here: no pole, under about 2^33000."""
    return evaluate(expr, {}) is not None


def between_integers(expr):
    """Whether a constant is real, under 10^15 and clearly (10^-10) between two integers: then its
    floor and ceiling follow from a low-precision value."""
    x = evaluate(expr, {})
    return x is not None and mp.im(x) == 0 and abs(x) < 10**15 and abs(x - mp.nint(x)) > 1e-10


def close(a, b, tolerance):
    scale = max(abs(a), abs(b))
    return scale == 0 or abs(a - b) <= tolerance * scale


def values_at_points(expressions):
    """[[value of each expression] at each random point], skipping points where one is undefined.
    All the checks below are numeric: no simplify, no expand, so their cost stays bounded."""
    symbols = set().union(*(e.free_symbols for e in expressions))
    rows = []
    for substitution in points(symbols) if symbols else [{}]:
        row = [evaluate(e, substitution) for e in expressions]
        if all(value is not None for value in row):
            rows.append(row)
    return rows
