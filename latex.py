"""A small recursive-descent parser from LaTeX math answers to sympy, for math_answer.verify.

What it does: turns one final answer (already extracted and normalised by math_answer.py, e.g.
"\\frac{1}{2}", "(1, 4.5]", "x = 1 \\pm \\sqrt{19}", "\\{1, 2\\}") into a value to compare:
a sympy expression, or one of the small containers below (tuple, set, interval, relation...).
Sympy objects are built only from our own parse tree; model text never reaches sympify,
parse_expr, parse_latex or eval.

Bounds (model text is untrusted): answers longer than MAX_CHARS (latex_tokens.py) or nested deeper
than MAX_DEPTH are refused, and so are number literals over MAX_LITERAL_DIGITS; every power,
product, factorial, binomial and Γ value goes through latex_bounds.py, which refuses exact values
too large to build *before* they are built (9^9^9^9 is never evaluated), and constants numeric.py
cannot bound where sympy would evaluate them to all their digits (floor, functions). Every refusal
is a LatexError; the caller treats it as "cannot parse".

Deliberately left out: sums, integrals, limits and derivatives as answers; units (math_answer.py
drops them before parsing); a general LaTeX grammar. A letter followed by "(" is a product
("f(x)" is f*x), which is enough to tell f(x) from f(y).
"""

from collections import namedtuple

import sympy

import latex_bounds as bounds
import numeric
from latex_tokens import (
    FUNCTIONS,
    GREEK,
    RELATIONS,
    WRAPPERS,
    LatexError,
    nesting_depth,
    tokenize,
)

MAX_DEPTH = 40  # nesting of brackets, powers and unary signs
MAX_LITERAL_DIGITS = 1_000  # longest number literal


# Values besides plain sympy expressions. Items of containers are values themselves.
Decimal = bounds.Decimal  # a bare decimal literal such as 2.6667 (arithmetic sees its value)
Tuple = namedtuple("Tuple", "items brackets")  # (1, 2), \langle 1, 2 \rangle, [1, 2, 3]
SetOf = namedtuple("SetOf", "items")  # \{1, 2\}: order-free
AnswerList = namedtuple("AnswerList", "items")  # "1, 2" or "1 and 2": order-free
Alternatives = namedtuple("Alternatives", "items")  # 1 \pm \sqrt{2}: both values
Interval = namedtuple("Interval", "lo hi lo_closed hi_closed")
Union = namedtuple("Union", "parts")
Relation = namedtuple("Relation", "ops parts")  # a = b = c, 1 < x <= 2, x \in S


# ----------------------------------------------------------------------------------------------
# The parser. Grammar, loosest first:
#   answer   := item ((',' | ';') item)*
#   item     := union (relop union)*                  (a chain: 1 < x <= 2, a = b = c)
#   union    := sum ('\cup' sum)*
#   sum      := ['+' | '-' | '\pm'] term (('+' | '-' | '\pm' | '\mp') term)*
#   term     := signed (('*' | '/' | ':' | implicit) signed)*
#   signed   := ('-' | '+') signed | power
#   power    := postfix ('^' exponent)*              (right-associative)
#   postfix  := atom ('!' | "'" | '_' subscript)*
#   atom     := number | letter | command | group | bracketed list | |x| | matrix


class _Parser:
    def __init__(self, tokens, pm_sign=1):
        self.tokens = tokens
        self.position = 0
        self.depth = 0
        self.abs_depth = 0
        self.pm_sign = pm_sign
        self.saw_pm = False

    # -- token helpers
    def peek(self, offset=0):
        index = self.position + offset
        return self.tokens[index][1] if index < len(self.tokens) else None

    def peek_kind(self):
        return self.tokens[self.position][0] if self.position < len(self.tokens) else None

    def take(self):
        if self.position >= len(self.tokens):
            raise LatexError("unexpected end of answer")
        token = self.tokens[self.position][1]
        self.position += 1
        return token

    def expect(self, text):
        token = self.take()
        if token != text:
            raise LatexError(f"expected {text!r}, found {token!r}")

    def enter(self):
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise LatexError(f"nesting deeper than {MAX_DEPTH}")

    def leave(self):
        self.depth -= 1

    # -- lists and items
    def answer(self):
        items = self.items(closers=())
        if self.position != len(self.tokens):
            raise LatexError(f"unexpected {self.peek()!r}")
        return (
            items[0]
            if len(items) == 1 and not isinstance(items[0], Alternatives)
            else AnswerList(_flatten(items))
        )

    def items(self, closers):
        items = []
        while True:
            if self.peek() in closers or self.peek() is None:
                break
            items.append(self.item(closers))
            if self.peek() in (",", ";"):
                self.take()
                continue
            break
        return items

    def item(self, closers):
        """One list element; parsed twice (with + and with -) if it holds a \\pm of its own."""
        outer_saw_pm, outer_sign = self.saw_pm, self.pm_sign
        self.saw_pm, self.pm_sign = False, 1
        start = self.position
        value = self.chain()
        if self.saw_pm:
            end = self.position
            self.position, self.pm_sign = start, -1
            other = self.chain()
            if self.position != end:
                raise LatexError("inconsistent \\pm parse")
            value = Alternatives([value, other])
        self.saw_pm, self.pm_sign = outer_saw_pm, outer_sign
        return value

    def chain(self):
        parts, ops = [self.relation_part()], []
        while self.peek() in RELATIONS:
            ops.append(self.take())
            parts.append(self.relation_part())
        return Relation(ops, parts) if ops else parts[0]

    def relation_part(self):
        start = self.position
        value = self.union()
        return _as_decimal(self.tokens[start : self.position], value)

    def union(self):
        parts = [self.sum()]
        while self.peek() in ("\\cup", "\\setminus", "\\cap"):
            if self.take() != "\\cup":
                raise LatexError("only unions of sets are supported")
            parts.append(self.sum())
        return Union(parts) if len(parts) > 1 else parts[0]

    # -- arithmetic
    def sum(self):
        total = None
        sign = 1
        if self.peek() in ("+", "-", "\\pm", "\\mp"):
            sign = self.sign_of(self.take())
        while True:
            term = self.term()
            if sign != 1 or total is not None:
                term = bounds.multiply(sign, term) if sign != 1 else bounds.scalar(term)
                total = term if total is None else bounds.checked(bounds.scalar(total) + term)
            else:
                total = term
            if self.peek() not in ("+", "-", "\\pm", "\\mp"):
                return total
            sign = self.sign_of(self.take())

    def sign_of(self, token):
        if token in ("\\pm", "\\mp"):
            self.saw_pm = True
            return self.pm_sign if token == "\\pm" else -self.pm_sign
        return -1 if token == "-" else 1

    def term(self):
        value = self.signed()
        while True:
            token = self.peek()
            if token in ("*", "/", ":"):
                self.take()
                right = self.signed()
                value = (
                    bounds.multiply(value, right) if token == "*" else bounds.divide(value, right)
                )
            elif self.starts_atom():
                value = bounds.multiply(value, self.power())
            else:
                return value

    def starts_atom(self):
        kind, token = self.peek_kind(), self.peek()
        if token is None:
            return False
        if kind in ("number", "begin"):
            return True
        if kind == "op":
            return (
                token.isalpha()
                or token in ("(", "[", "{")
                or (token == "|" and self.abs_depth == 0)
            )
        if kind == "escaped":
            return token == "\\{"
        return kind == "command" and (
            token in FUNCTIONS
            or token in WRAPPERS
            or token[1:] in GREEK
            or token
            in (
                "\\frac",
                "\\sqrt",
                "\\binom",
                "\\pi",
                "\\infty",
                "\\lfloor",
                "\\lceil",
                "\\langle",
                "\\emptyset",
            )
        )

    def signed(self):
        if self.peek() in ("-", "+"):
            sign = self.take()
            self.enter()
            value = self.signed()
            self.leave()
            return bounds.multiply(-1, value) if sign == "-" else value
        return self.power()

    def power(self):
        base = self.postfix()
        if self.peek() != "^":
            return base
        self.take()
        self.enter()
        exponent = self.exponent()
        if self.peek() == "^":  # a^b^c = a^(b^c)
            self.take()
            exponent = bounds.power(exponent, self.exponent())
        self.leave()
        return bounds.power(base, exponent)

    def exponent(self):
        if self.peek() == "{":
            return self.group()
        if self.peek() in ("-", "+"):
            return self.signed()
        return self.postfix(single_character=True)

    def postfix(self, single_character=False):
        value = self.atom(single_character)
        while True:
            token = self.peek()
            if token == "!":
                self.take()
                value = bounds.factorial(value)
            elif token == "'" and isinstance(value, sympy.Symbol):
                self.take()
                value = sympy.Symbol(f"{value.name}'")
            elif token == "_":
                self.take()
                value = self.subscript(value)
            else:
                return value

    def subscript(self, base):
        start = self.position
        if self.peek() == "{":
            self.take()
            depth = 1
            while depth:
                token = self.take()
                depth += {"{": 1, "}": -1}.get(token, 0)
            text = "".join(t for _, t in self.tokens[start + 1 : self.position - 1])
        else:
            text = self.take()
        if isinstance(base, sympy.Integer) and text.isdigit():  # 204_5: a number in base 5
            digits, radix = str(base), int(text)
            if 2 <= radix <= 36:
                try:
                    return bounds.checked(sympy.Integer(int(digits, radix)))
                except ValueError:
                    raise LatexError(f"{digits} is not a base-{radix} number") from None
        if isinstance(base, sympy.Symbol):
            return sympy.Symbol(f"{base.name}_{text}")
        raise LatexError("subscript on something other than a name or a number")

    # -- atoms
    def group(self):
        """{ ... } as an argument: one value (a \\pm inside belongs to the enclosing item)."""
        self.expect("{")
        self.enter()
        value = self.chain()
        self.expect("}")
        self.leave()
        return value

    def argument(self):
        """A command argument: {group} or one character (\\frac12, \\sqrt3)."""
        if self.peek() == "{":
            return bounds.scalar(self.group())
        return self.atom(single_character=True)

    def atom(self, single_character=False):
        kind, token = self.peek_kind(), self.peek()
        if token is None:
            raise LatexError("unexpected end of answer")
        if kind == "number":
            self.take()
            if single_character and len(token) > 1 and token[0] != ".":
                self.tokens.insert(self.position, ("number", token[1:]))  # \frac12 -> 1, 2
                token = token[0]
            if len(token) > MAX_LITERAL_DIGITS:
                raise LatexError("number literal too long")
            return sympy.Rational(token) if "." in token else sympy.Integer(token)
        if kind == "op" and token.isalpha():
            self.take()
            return _letter(token)
        if token in ("(", "[", "\\{", "{", "\\langle"):
            return self.bracketed()
        if token == "|":
            self.take()
            self.enter()
            self.abs_depth += 1
            inner = self.sum()
            self.abs_depth -= 1
            self.expect("|")
            self.leave()
            return sympy.Abs(bounds.scalar(inner))
        if kind == "begin":
            return self.matrix()
        if kind == "command":
            return self.command()
        raise LatexError(f"unexpected {token!r}")

    def bracketed(self):
        opener = self.take()
        closers = {
            "(": (")", "]"),
            "[": (")", "]"),
            "\\{": ("\\}",),
            "{": ("}",),
            "\\langle": ("\\rangle",),
        }[opener]
        self.enter()
        saved_abs, self.abs_depth = self.abs_depth, 0
        items = self.items(closers=closers)
        closer = self.take()
        if closer not in closers:
            raise LatexError(f"expected one of {closers}, found {closer!r}")
        self.abs_depth = saved_abs
        self.leave()
        if opener == "\\{":
            return SetOf(_flatten(items))
        if opener == "\\langle":
            return Tuple(items, "<>")
        if opener == "{":
            return items[0] if len(items) == 1 else AnswerList(_flatten(items))
        if len(items) == 1 and (opener, closer) in (("(", ")"), ("[", "]")):
            return items[0]
        if len(items) == 2 and (opener, closer) != ("(", ")"):
            return Interval(items[0], items[1], opener == "[", closer == "]")
        if (opener, closer) in (("(", ")"), ("[", "]")) and items:
            return Tuple(items, opener + closer)
        raise LatexError(f"cannot read {opener}...{closer} with {len(items)} items")

    def matrix(self):
        environment = self.take()
        name = environment[len("\\begin{") : -1]
        if name not in (
            "pmatrix",
            "bmatrix",
            "matrix",
            "array",
            "smallmatrix",
            "Bmatrix",
            "vmatrix",
        ):
            raise LatexError(f"unsupported environment {name}")
        if name == "array" and self.peek() == "{":  # the column spec
            while self.take() != "}":
                pass
        rows, row = [], []
        self.enter()
        while self.peek_kind() != "end":
            row.append(bounds.scalar(self.sum()))
            token = self.peek()
            if token == "&":
                self.take()
            elif token == "\\\\":
                self.take()
                rows.append(row)
                row = []
            elif self.peek_kind() != "end":
                raise LatexError(f"unexpected {token!r} in a matrix")
        self.take()
        self.leave()
        if row:
            rows.append(row)
        if not rows or any(len(r) != len(rows[0]) for r in rows):
            raise LatexError("ragged matrix")
        if len(rows) * len(rows[0]) > 400:
            raise LatexError("matrix too large")
        matrix = sympy.ImmutableMatrix(rows)
        if name == "vmatrix":  # a determinant: expands to n! terms, so small ones only
            if matrix.shape[0] != matrix.shape[1] or matrix.shape[0] > 3:
                raise LatexError("determinants are limited to 3x3")
            return matrix.det()
        return matrix

    def command(self):
        token = self.take()
        if token == "\\frac":
            numerator = self.argument()
            return bounds.divide(numerator, self.argument())
        if token == "\\sqrt":
            if self.peek() == "[":
                self.take()
                index = self.sum()
                self.expect("]")
                return bounds.power(self.argument(), bounds.divide(1, index))
            return bounds.power(self.argument(), sympy.Rational(1, 2))
        if token == "\\binom":
            top = self.argument()
            return bounds.binomial(top, self.argument())
        if token == "\\pi":
            return sympy.pi
        if token == "\\infty":
            return sympy.oo
        if token == "\\emptyset":
            return SetOf([])
        if token in ("\\lfloor", "\\lceil"):
            self.enter()
            inner = self.sum()
            self.expect("\\rfloor" if token == "\\lfloor" else "\\rceil")
            self.leave()
            inner = bounds.bounded(bounds.scalar(inner), numeric.between_integers)
            return (sympy.floor if token == "\\lfloor" else sympy.ceiling)(inner)
        if token in FUNCTIONS:
            return self.function(token)
        if token[1:] in GREEK:
            return sympy.Symbol(token[1:])
        if token in WRAPPERS:
            return self.wrapper()
        raise LatexError(f"unsupported command {token}")

    def function(self, token):
        exponent = None
        base = None
        if token == "\\log" and self.peek() == "_":
            self.take()
            base = self.argument()
        if self.peek() == "^":  # \sin^2 x
            self.take()
            exponent = self.exponent()
        self.enter()
        # \sin(x)^2 is (\sin x)^2: an argument in brackets ends there, and the caller's power and
        # postfix apply to the value; \sin x^2 is \sin(x^2)
        argument = bounds.scalar(self.atom() if self.peek() == "(" else self.power())
        self.leave()
        value = _GUARDED_FUNCTIONS.get(token, FUNCTIONS[token])(argument)
        value = bounds.bounded(bounds.refuse_slow_exp(value))  # \sin(iz) is i \sinh z
        if base is not None:
            value = bounds.divide(value, sympy.log(bounds.scalar(base)))
        if exponent is not None:
            if exponent == -1 and token in ("\\sin", "\\cos", "\\tan"):
                value = {"\\sin": sympy.asin, "\\cos": sympy.acos, "\\tan": sympy.atan}[token](
                    argument
                )
            else:
                value = bounds.power(value, exponent)
        return value

    def wrapper(self):
        """\\text{...}, \\mathrm{...}, \\mathbf{...}: a word becomes one name, anything else is
        parsed."""
        if self.peek() != "{":
            return self.atom(single_character=True)
        start = self.position
        self.take()
        words = []
        while (
            self.peek() is not None
            and self.peek() != "}"
            and self.peek_kind() == "op"
            and self.peek().isalpha()
        ):
            words.append(self.take())
        if self.peek() == "}" and len(words) > 1:
            self.take()
            return sympy.Symbol("".join(words))
        self.position = start
        return self.group()


# FUNCTIONS entries that can build exact numbers, routed through latex_bounds.py
_GUARDED_FUNCTIONS = {
    "\\Gamma": bounds.gamma,
    "\\exp": lambda argument: bounds.power(sympy.E, argument),
}


def _letter(letter):
    if letter == "e":
        return sympy.E
    if letter == "i":
        return sympy.I
    return sympy.Symbol(letter)


def _flatten(items):
    flat = []
    for item in items:
        flat.extend(item.items if isinstance(item, Alternatives) else [item])
    return flat


def _as_decimal(tokens, value):
    """A bare decimal literal (optionally signed) keeps its written precision."""
    texts = [t for _, t in tokens]
    if texts and texts[0] in ("-", "+"):
        texts = texts[1:]
    if len(texts) == 1 and "." in texts[0] and tokens[-1][0] == "number":
        digits = texts[0].replace(".", "").lstrip("0")
        return Decimal(value, len(texts[0].split(".")[1]), len(digits))
    return value


def parse(text):
    """The value of one LaTeX answer (see the module docstring); LatexError if it cannot be read."""
    if nesting_depth(text) > MAX_DEPTH:
        raise LatexError(f"nesting deeper than {MAX_DEPTH}")
    tokens = tokenize(text)
    if not tokens:
        raise LatexError("empty answer")
    try:
        return _Parser(tokens).answer()
    except RecursionError:
        raise LatexError("answer nested too deeply") from None
    except (TypeError, ArithmeticError, AttributeError, MemoryError) as error:
        # sympy refusing an operation
        raise LatexError(f"cannot build: {error}") from None
