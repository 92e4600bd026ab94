"""Sympy arithmetic within bounds, for latex.py: exact values are built only when they fit.

Model text is untrusted, and sympy builds exact values eagerly: 9^{9^{9^{9}}}, (10^{6})!,
Γ(10^{6}+1/2) or e^{10^{9} \\log 2} would take hours and gigabytes before any comparison. So every
power, product, quotient, factorial, binomial and Γ value the parser builds goes through a function
here that refuses it (LatexError) *before* sympy builds it when its exact value would be too large:

- MAX_BITS: no exact rational over 65,536 bits (about 19,700 digits; 2006! fits), so no number
  costs more than a few milliseconds to build, compare or print;
- MAX_EXPONENT: no integer power above 10,000 of a non-rational number (\\sqrt{2}^{10^{9}} is
  2^{5 \\cdot 10^{8}}), so sympy never multiplies out a huge power of a constant;
- bounded(): a constant that is not a plain number only if numeric.py can settle it, so sympy never
  reads its sign or integer part to all its digits;
- MAX_EXP_DEGREE, MAX_HYPERBOLIC_WEIGHT: no e^z, \\sinh z, \\cosh z, \\tanh z (or reciprocal) of
  a high power of a symbolic z, so sympy never expands (a + ib)^n when it asks whether they are real
  or positive (for |.|, floor, \\log, factorials, binomials);
- matrices: products of numeric matrices up to 10x10 and powers 1..8 only, so no symbolic matrix
  product grows without bound.
"""

import math
from collections import namedtuple

import sympy
from sympy.functions.elementary.hyperbolic import HyperbolicFunction

import numeric
from latex_tokens import LatexError

MAX_BITS = 65_536  # largest exact number we build (about 19,700 digits; 2006! fits)
MAX_EXPONENT = 10_000  # largest integer power of a non-rational number (sqrt(2)^10^9 is 2^(5*10^8))
_MAX_LOG = MAX_BITS * math.log(2)
MAX_EXP_DEGREE = 64  # total degree of the powers in an e^z: |e^{x^{64}}| takes 0.2 s
MAX_HYPERBOLIC_WEIGHT = 8  # ... in a \cosh z, each times its base's symbols: 0.7 s at most

# A bare decimal literal such as 2.6667: latex.py keeps its written precision, arithmetic its value
Decimal = namedtuple("Decimal", "value places significant")


def checked(value):
    """`value`, refused if it is an exact rational over MAX_BITS (a sum or product just built)."""
    if (
        isinstance(value, sympy.Rational)
        and max(value.p.bit_length(), value.q.bit_length()) > MAX_BITS
    ):
        raise LatexError(f"number larger than {MAX_BITS} bits")
    return value


def scalar(value):
    """A parsed value as a sympy scalar or matrix; containers (tuples, sets...) are refused."""
    if isinstance(value, int):
        return sympy.Integer(value)
    if isinstance(value, Decimal):
        return value.value
    if not isinstance(value, (sympy.Expr, sympy.MatrixBase)):
        raise LatexError(f"expected a number or expression, got {type(value).__name__}")
    return value


def power(base, exponent):
    base, exponent = scalar(base), scalar(exponent)
    if base == 0 and isinstance(exponent, sympy.Expr) and exponent.is_negative:
        raise LatexError("division by zero")
    if isinstance(exponent, sympy.MatrixBase):  # e^M: a matrix exponential, unbounded symbolically
        raise LatexError("a matrix as an exponent")
    if base is sympy.E:
        _refuse_large_exp(exponent)
    if isinstance(exponent, sympy.Rational) and isinstance(base, sympy.Expr):
        _refuse_large_power(base, exponent)
    if isinstance(base, sympy.MatrixBase):
        if not (isinstance(exponent, sympy.Integer) and 0 < exponent <= 8):
            raise LatexError("matrix powers are limited to exponents 1..8")
        result = base
        for _ in range(int(exponent) - 1):
            result = multiply(result, base)
        return result
    return refuse_slow_exp(checked(sympy.Pow(base, exponent)))


def refuse_slow_exp(value):
    """sympy asks whether e^z or \\cosh z (\\sinh, \\tanh, their reciprocals, and \\cos(iz) is
    \\cosh z) is real or positive whenever |.|, floor, \\log, a factorial or a binomial wraps it, by
    splitting z into real and imaginary parts: each power w^n of z becomes the n + 1 terms of
    (a + ib)^n, expanded at about n^3 cost (|e^{x^{1000}}|: minutes), and for the hyperbolic ones
    z's imaginary part then goes through a polynomial gcd in two variables per symbol
    (\\lfloor\\cosh((a+b+c+d+f+g+h+k)^4)\\rfloor: minutes). Refuse them before anything asks."""
    if not isinstance(value, sympy.Basic):
        return value
    for node in value.atoms(sympy.exp, HyperbolicFunction):
        powers = [p for p in node.args[0].atoms(sympy.Pow) if p.exp.is_Rational]
        if isinstance(node, sympy.exp):
            if sum(abs(p.exp.p) for p in powers) > MAX_EXP_DEGREE:
                raise LatexError("e^z of too high a power to settle")
        elif sum(abs(p.exp.p) * max(1, len(p.base.free_symbols)) for p in powers) > (
            MAX_HYPERBOLIC_WEIGHT
        ):
            raise LatexError("hyperbolic function of too high a power to settle")
    return value


def _refuse_large_power(base, exponent):
    """sympy spreads a rational power over a product ((2x)^n is 2^n x^n, (c \\sqrt{2})^n is
    c^n 2^{n/2}) and builds each rational factor's power exactly: each must fit MAX_BITS."""
    if not (base.free_symbols or base.is_Rational) and abs(exponent.p) > MAX_EXPONENT:
        raise LatexError("power too large to build")
    for factor in sympy.Mul.make_args(base):
        root, degree = factor.as_base_exp()
        if root.is_Rational and degree.is_Rational and abs(root) != 1:
            total, bits = degree * exponent, max(root.p.bit_length(), root.q.bit_length())
            if abs(total.p) * bits > MAX_BITS * total.q:
                raise LatexError("power too large to build")


def _refuse_large_exp(exponent):
    """sympy's e^{...} turns c \\log b, anywhere in its exponent, into \\log b^c and e^{c \\log b}
    into b^c (e^{\\pi (10^{9} \\log 2 + 1)} builds 2^{10^9}): guard each such power."""
    for node in sympy.preorder_traversal(exponent):
        for factor in node.args if node.is_Mul else ():
            if isinstance(factor, sympy.log):
                _refuse_large_power(factor.args[0], node.as_coeff_Mul()[0])


def factorial(value):
    value = scalar(value)
    if isinstance(value, sympy.Integer):
        if value < 0:
            raise LatexError("factorial of a negative integer")
        if value > MAX_BITS or value > 2 and math.lgamma(int(value) + 1) / math.log(2) > MAX_BITS:
            raise LatexError("factorial too large to build")
    elif value.is_number and not value.free_symbols:
        raise LatexError("factorial of a non-integer number")
    return checked(sympy.factorial(value))


def gamma(value):
    value = scalar(value)
    if isinstance(value, sympy.Integer):
        if value <= 0:
            raise LatexError("gamma at a pole (a non-positive integer)")
        return factorial(value - 1)
    _refuse_large_gamma(value)
    return checked(sympy.gamma(value))


def _refuse_large_gamma(value):
    """sympy builds Γ(n) = (n - 1)! and Γ(n + 1/2) = (2n - 1)!! \\sqrt{\\pi} / 2^n exactly: refuse
    a rational argument whose value would take more than MAX_BITS (about log2 Γ(|x|) + |x| bits)."""
    size = abs(value) if isinstance(value, sympy.Rational) else 0
    if size > MAX_BITS or size > 2 and math.lgamma(size) / math.log(2) + size > MAX_BITS:
        raise LatexError("gamma too large to build")


def binomial(top, bottom):
    top, bottom = scalar(top), scalar(bottom)
    if isinstance(top, sympy.Integer) and isinstance(bottom, sympy.Integer) and top >= 0:
        n, k = int(top), int(bottom)
        if n > 2**60:
            raise LatexError("binomial too large to build")
        k = min(k, n - k)  # above 0 only when 0 < k < n
        if k > 0 and math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) > _MAX_LOG:
            raise LatexError("binomial too large to build")
    elif isinstance(bottom, sympy.Integer) and isinstance(top, sympy.Rational) and bottom > 0:
        # sympy multiplies out top (top - 1) ... (top - bottom + 1), of about this many bits
        if int(bottom) * (abs(top.p) + int(bottom) * top.q).bit_length() > MAX_BITS:
            raise LatexError("binomial too large to build")
    elif isinstance(bottom, sympy.Integer) and isinstance(top, sympy.Expr) and top.is_number:
        # ... and expands it: a polynomial in every constant of an irrational top (\\pi, \\sqrt{2})
        if bottom > 1:
            raise LatexError("binomial of an irrational or complex number")
    elif isinstance(bottom, sympy.Expr) and bottom.is_number and isinstance(top, sympy.Expr):
        # a non-integer bottom: sympy writes Γ(top + 1) / (Γ(bottom + 1) Γ(top - bottom + 1))
        for argument in (top + 1, bottom + 1, top - bottom + 1):
            _refuse_large_gamma(argument)
    return checked(sympy.binomial(top, bottom))


def bounded(value, settled=numeric.known):
    """A constant that is not a plain number gets through only if numeric.py settles it: sympy reads
    a constant's sign or integer part to all its digits (|\\sin(e^{e^{30}})|: 10^13 of them), and
    near an integer by simplify (the floor of (1 + \\sqrt{2})^{10^4} (1 - \\sqrt{2})^{10^4}: 7s)."""
    if isinstance(value, sympy.Expr) and value.is_number and not value.is_Rational:
        if not value.has(sympy.oo, -sympy.oo, sympy.zoo) and not settled(value):
            raise LatexError("a number numeric.py cannot settle")
    return value


def divide(numerator, denominator):
    numerator, denominator = scalar(numerator), scalar(denominator)
    if denominator == 0:
        raise LatexError("division by zero")
    if isinstance(denominator, sympy.MatrixBase):
        raise LatexError("division by a matrix")
    return checked(numerator * sympy.Pow(denominator, -1))


def multiply(left, right):
    left, right = scalar(left), scalar(right)
    if isinstance(left, sympy.MatrixBase) and isinstance(right, sympy.MatrixBase):
        # symbolic matrix products grow without bound (M^16 of a 20x20 matrix): numbers only
        if left.free_symbols or right.free_symbols or max(left.shape + right.shape) > 10:
            raise LatexError("matrix products are limited to numeric matrices up to 10x10")
        if left.shape[1] != right.shape[0]:
            raise LatexError("matrix shapes do not match")
        product = left * right
        for entry in product:
            checked(entry)
        return product
    return checked(left * right)
