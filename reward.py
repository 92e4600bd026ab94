"""Verifiers: the binary rewards of RLVR (1 correct, 0 wrong; docs/paper.md).

- `maze_reward(response, maze)`: do the moves in the last <answer>...</answer> walk from S to E
  (the paper's Maze task)?
- `countdown_reward(response, problem)`: is the last answer an expression over + - * / that uses
  each given number exactly once and equals the target (exact Fractions, our own parser)?
- `arithmetic_reward(response, gold)`: is the last answer the gold integer?
- `verify(gold, pred)` / `math_reward(response, gold)`: the math verifier, in Math-Verify's
  argument order: extract the final answer of both strings, normalise it, parse it with our own
  recursive-descent LaTeX parser (latex.py) and compare the values as mathematics.
- `score_batch(task, responses, golds)`: what train.py calls. Synthetic tasks are scored inline
  (bounded, linear time); math goes to a persistent pool of worker processes (POSIX) with a
  per-answer time limit and a memory limit, so a pathological answer scores 0 instead of stalling or crashing
  training. `verifier_stats()` counts answers and time-outs for the logs.

Math policy, one for every answer (tests/test_reward_math.py has a positive and a negative of each):
- extraction, first that parses: "final answer is ...", the last \\boxed{} (boxes separated only
  by ",", "and", "or" are one answer), GSM8K's "#### 42", "answer is / answer: ...", a number
  written after the last $...$, the last $...$ / \\(...\\) / \\[...\\]; with no LaTeX at all, the
  whole text when short, else its last number. A bare gold is its own answer.
- the percent sign, degrees and units are dropped, never converted ("28\\%" == "28" != "0.28");
  thousands separators are removed ("1,000" == "1000", "32, 349" is two answers).
- exact numbers compare exactly, whatever their size (1/2004! != 1/2006!); a written decimal with
  3+ significant digits stands for every value that rounds to it (2.6667 == 8/3, 0.33 != 1/3);
  other expressions are compared numerically at fixed random points (relative 1e-12), never
  simplified, so every comparison has a bounded cost.
- "x = 3" answers 3 when its left side is a name; a predicted "2 + 3 = 5" answers 5; a gold
  equation ("a + 3z = 0") is answered only by an equivalent equation (up to a constant factor).
  Inequalities in one variable are intervals (x > 5 == (5, oo)); "x \\in S" is S.
- comma-separated answers and \\{sets\\} ignore order; tuples and intervals do not; (a, b) is a
  pair or an open interval. A gold that is one capital letter is a multiple-choice answer.

Safety: model text never reaches anything that evaluates Python (no eval/exec, no sympify,
parse_expr or parse_latex of raw text). Sympy objects are built only from our own parse tree,
numbers too large to build (9^9^9^9, 10^6!) are refused before they are built, and numeric checks
use our own fixed-precision evaluator rather than evalf (whose adaptive precision can loop).

Deliberately left out: partial credit and format rewards (the paper uses 0/1 rewards only);
unit conversion; sums, integrals and limits as answers; solving (1 <= |z| <= 2 is not turned into
two intervals).
"""

import atexit
import collections
import json
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from fractions import Fraction
from functools import lru_cache

import mpmath
import sympy

import latex

# Bounds. Model text is untrusted: every loop below is linear in these, every recursion bounded.
MAX_RESPONSE_CHARS = 500_000   # a longer response scores 0: no generation is that long
MAX_MOVES_CHARS = 100_000      # maze: longer move strings score 0
MAX_EXPRESSION_CHARS = 1_000   # countdown expression
MAX_EXPRESSION_DEPTH = 64      # countdown parentheses
MAX_INTEGER_DIGITS = 100       # arithmetic / countdown literals

TASKS = ("maze", "countdown", "arithmetic", "math")


def last_answer_tag(response):
    """Content of the last complete <answer>...</answer> in `response`, or None (linear time)."""
    if len(response) > MAX_RESPONSE_CHARS:
        return None
    end = response.rfind("</answer>")
    if end < 0:
        return None
    start = response.rfind("<answer>", 0, end)
    if start < 0:
        return None
    return response[start + len("<answer>"):end]


# ----------------------------------------------------------------------------------------------
# Maze (paper Sec. 5, the Maze task): S start, E end, * wall, . free; moves L R U D.

_MOVES = {"L": (0, -1), "R": (0, 1), "U": (-1, 0), "D": (1, 0)}


@lru_cache(maxsize=4096)
def parse_maze(maze):
    """(rows, start, end) of a text grid; ValueError naming the problem if it is malformed."""
    if not isinstance(maze, str):
        raise ValueError(f"maze must be a str grid, got {type(maze).__name__}")
    rows = maze.strip("\n").split("\n")
    if not rows or not rows[0]:
        raise ValueError("maze is empty")
    width = len(rows[0])
    start = end = None
    for r, row in enumerate(rows):
        if len(row) != width:
            raise ValueError(f"maze row {r} has length {len(row)}, expected {width}")
        for c, cell in enumerate(row):
            if cell not in "SE*.":
                raise ValueError(f"maze cell ({r}, {c}) is {cell!r}; allowed: 'S' 'E' '*' '.'")
            if cell == "S":
                if start is not None:
                    raise ValueError(f"maze has more than one S: {start} and {(r, c)}")
                start = (r, c)
            elif cell == "E":
                if end is not None:
                    raise ValueError(f"maze has more than one E: {end} and {(r, c)}")
                end = (r, c)
    if start is None or end is None:
        raise ValueError(f"maze has no {'S' if start is None else 'E'}")
    return tuple(rows), start, end


def maze_reward(response, maze):
    """1.0 if the moves in the last <answer> tag lead from S to E through free cells, else 0.0."""
    rows, (row, col), end = parse_maze(maze)
    moves = last_answer_tag(response)
    if moves is None or len(moves) > MAX_MOVES_CHARS:
        return 0.0
    height, width = len(rows), len(rows[0])
    for move in moves:
        if move in " \t\n\r":
            continue
        step = _MOVES.get(move)
        if step is None:
            return 0.0
        row, col = row + step[0], col + step[1]
        if not (0 <= row < height and 0 <= col < width) or rows[row][col] == "*":
            return 0.0
    return 1.0 if (row, col) == end else 0.0


# ----------------------------------------------------------------------------------------------
# Countdown: an expression over + - * / ( ) and integer literals; our own parser, never eval.

_COUNTDOWN_TOKEN = re.compile(r"\s*(?:(\d+)|([-+*/()]))")


def _countdown_tokens(expression):
    tokens, position = [], 0
    expression = expression.rstrip()
    while position < len(expression):
        match = _COUNTDOWN_TOKEN.match(expression, position)
        if match is None:
            return None
        number, operator = match.groups()
        if number is not None and len(number) > MAX_INTEGER_DIGITS:
            return None
        tokens.append(int(number) if number is not None else operator)
        position = match.end()
    return tokens


def _countdown_value(tokens):
    """Exact value of a token list; None if it is not a well-formed expression.

    Grammar: expr := term (('+'|'-') term)*, term := atom (('*'|'/') atom)*,
    atom := integer | '(' expr ')'. No unary minus: negating a number is not a move of the game.
    Division by zero makes the whole expression invalid.
    """
    position = 0

    def atom(depth):
        nonlocal position
        if depth > MAX_EXPRESSION_DEPTH or position >= len(tokens):
            return None
        token = tokens[position]
        position += 1
        if isinstance(token, int):
            return Fraction(token)
        if token != "(":
            return None
        value = expr(depth + 1)
        if value is None or position >= len(tokens) or tokens[position] != ")":
            return None
        position += 1
        return value

    def term(depth):
        nonlocal position
        value = atom(depth)
        while value is not None and position < len(tokens) and tokens[position] in ("*", "/"):
            operator = tokens[position]
            position += 1
            right = atom(depth)
            if right is None or (operator == "/" and right == 0):
                return None
            value = value * right if operator == "*" else value / right
        return value

    def expr(depth):
        nonlocal position
        value = term(depth)
        while value is not None and position < len(tokens) and tokens[position] in ("+", "-"):
            operator = tokens[position]
            position += 1
            right = term(depth)
            if right is None:
                return None
            value = value + right if operator == "+" else value - right
        return value

    value = expr(0)
    return value if position == len(tokens) else None


def countdown_reward(response, problem):
    """1.0 if the last answer uses every number of `problem` exactly once and equals the target."""
    try:
        numbers, target = problem["numbers"], problem["target"]
    except (TypeError, KeyError) as error:
        raise ValueError(f"countdown problem must be {{'numbers': [...], 'target': int}}, got {problem!r}") from error
    expression = last_answer_tag(response)
    if expression is None or len(expression) > MAX_EXPRESSION_CHARS:
        return 0.0
    tokens = _countdown_tokens(expression)
    if not tokens:
        return 0.0
    # Literals are checked against the multiset before any arithmetic is done.
    if sorted(t for t in tokens if isinstance(t, int)) != sorted(numbers):
        return 0.0
    value = _countdown_value(tokens)
    return 1.0 if value is not None and value == target else 0.0


# ----------------------------------------------------------------------------------------------
# Arithmetic: the answer is an integer. Policy: surrounding whitespace is ignored, a leading sign
# ('+' or '-') and leading zeros are accepted ("+012" == "12"), anything else (decimals "12.0",
# separators "1,000", inner spaces "1 2", words) scores 0.

_INTEGER = re.compile(r"[+-]?\d{1,%d}" % MAX_INTEGER_DIGITS)


def arithmetic_reward(response, gold):
    """1.0 if the last <answer> tag holds the gold integer, else 0.0."""
    gold_text = str(gold).strip()
    if not _INTEGER.fullmatch(gold_text):
        raise ValueError(f"arithmetic gold must be an integer, got {gold!r}")
    answer = last_answer_tag(response)
    if answer is None:
        return 0.0
    answer = answer.strip()
    if not _INTEGER.fullmatch(answer):
        return 0.0
    return 1.0 if int(answer) == int(gold_text) else 0.0


# ----------------------------------------------------------------------------------------------
# Math: verify(gold, pred) = extract -> normalise -> parse (latex.py) -> reduce -> compare.

MAX_ANSWER_CHARS = 1_000         # an extracted answer longer than this is compared as text only
MAX_ITEMS = 64                   # elements of a set/list/tuple we are willing to match
NUMERIC_POINTS = 3               # random points for the numeric check of symbolic expressions
NUMERIC_DIGITS = 30              # working precision of that check
RELATIVE_TOLERANCE = 1e-12   # between two computed (non-literal) values
MAX_SYMBOLS = 12                 # distinct variables in one comparison
MIN_DECIMAL_DIGITS = 3           # a written decimal needs this many significant digits to stand for a rounding

# 1. Extraction ---------------------------------------------------------------------------------

_BOX_TOKENS = re.compile(r"\\(?:boxed|fbox)\s*\{|\\.|[{}]", re.DOTALL)
_BOX_BARE = re.compile(r"\\boxed[ \t]+([^\s${}]+)")
_MATH_DELIMITERS = re.compile(r"\\\$|\$\$|\$|\\\(|\\\)|\\\[|\\\]")
_FINAL_ANCHOR = re.compile(r"(?i)\bfinal answer\b\s*(?:is\b\s*:?|:)")
_ANCHOR = re.compile(r"(?i)\banswer\b\s*(?:is\b\s*:?|:)")
_PROSE = re.compile(r"(?<![\\a-zA-Z])[A-Za-z]{3,}")       # a word of 3+ letters that is not a command
_GSM8K = re.compile(r"####[ \t]*([^\n]*)")
_NUMBER_IN_TEXT = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?(?:/\d+)?|\.\d+)(?!\d)")
_BARE_NUMBER = re.compile(r"-?(?:\d{1,3}(?:[, ]\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+)")
_BOX_CONNECTOR = re.compile(r"(?i)(?:,|;|\band\b|\bor\b)")


def _boxed_spans(text):
    """(start, end, content) of every complete \\boxed{...} / \\fbox{...} and \\boxed 5, in order. Linear."""
    spans, stack = [], []            # stack: (is_box, start, content_start) per open brace
    for match in _BOX_TOKENS.finditer(text):
        token = match.group()
        if token == "}":
            if stack:
                is_box, start, content_start = stack.pop()
                if is_box:
                    spans.append((start, match.end(), text[content_start:match.start()]))
        elif token.endswith("{") and token.startswith(("\\boxed", "\\fbox")):
            stack.append((True, match.start(), match.end()))
        elif token == "{":
            stack.append((False, match.start(), match.end()))
    spans += [(m.start(), m.end(), m.group(1)) for m in _BOX_BARE.finditer(text)]
    spans.sort()
    # an outer box contains inner ones: keep the outermost of nested spans
    outermost = []
    for span in spans:
        if outermost and span[0] < outermost[-1][1]:
            continue
        outermost.append(span)
    return outermost


def _last_boxed(text):
    """Content of the last box, joined with the boxes just before it when only ', ', 'and', 'or',
    spacing or a short label separates them (\\boxed{1} and \\boxed{2} is the answer "1, 2")."""
    spans = _boxed_spans(text)
    if not spans:
        return None
    chosen = [spans[-1]]
    for previous in reversed(spans[:-1]):
        between = text[previous[1]:chosen[0][0]]
        if len(between) > 40:
            break
        bare = re.sub(r"\\(?:quad|qquad|text|textbf|mathrm)\b|\\[,;:! ]|[\s${}()\\]", " ", between)
        if bare.strip() and not _BOX_CONNECTOR.search(bare):
            break
        chosen.insert(0, previous)
    return ", ".join(content for _, _, content in chosen)


def _math_spans(text):
    """(start, end, content) of $...$, $$...$$, \\(...\\), \\[...\\] in order (inline ones on one line)."""
    closers = {"$": "$", "$$": "$$", "\\(": "\\)", "\\[": "\\]"}
    spans, opener, opened_at, content_start = [], None, 0, 0
    for match in _MATH_DELIMITERS.finditer(text):
        token = match.group()
        if token == "\\$":
            continue
        if opener is None:
            if token in closers:
                opener, opened_at, content_start = token, match.start(), match.end()
        elif token == closers[opener]:
            content = text[content_start:match.start()]
            if opener in ("$", "\\(") and "\n" in content:
                opener = token if token == "$" else None
                opened_at, content_start = match.start(), match.end()
                continue
            spans.append((opened_at, match.end(), content))
            opener = None
    return spans


def _last_math(text):
    """The last math span, joined with the spans before it that only ', ', 'and' or 'or' separates
    ("$1$, $2$ and $3$" is the answer "1, 2, 3"); (answer, end position) or None."""
    spans = _math_spans(text)
    if not spans:
        return None
    chosen = [spans[-1]]
    for previous in reversed(spans[:-1]):
        between = text[previous[1]:chosen[0][0]]
        if len(between) > 20 or not re.fullmatch(r"(?i)\s*(?:,|;|,?\s*and|,?\s*or)?\s*", between):
            break
        chosen.insert(0, previous)
    return ", ".join(content for _, _, content in chosen), spans[-1][1]


def _anchored(text, pattern):
    """What follows the last match of `pattern` ("answer is", "answer:") to the end of its sentence."""
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    segment = text[matches[-1].end():matches[-1].end() + 500]
    segment = re.split(r"\n|I hope", segment, maxsplit=1)[0]
    segment = re.split(r"\.(?:\s|$)", segment, maxsplit=1)[0].strip()
    if re.search(r"\bis\b", segment):        # "Final Answer: The largest $n$ is 34"
        segment = re.split(r"\bis\b", segment)[-1]
    math = _last_math(segment)
    if math is not None:
        return math[0]
    if _is_prose(segment):                   # "Jane started growing Sphere 3 hours ago": its last number
        return _last_number(segment)
    return segment.strip(" :*\"")


def _last_number(text):
    match = None
    for match in _NUMBER_IN_TEXT.finditer(text):
        pass
    return match.group() if match else None


def _is_prose(text):
    """Words of three letters or more outside LaTeX commands and their word arguments."""
    return bool(_PROSE.search(re.sub(r"\\[a-zA-Z]+\s*\{[a-zA-Z* ]*\}", " ", text)))


def extract_answers(text, is_gold=False):
    """Candidate final answers of a response (or of a gold), best first, as (answer, is_plain_text):
    "final answer is ...", the last box (with its neighbours), GSM8K's "#### 42", "answer is /
    answer: ...", a number written after the last $...$, the last $...$ (with its neighbours),
    and, when there is no LaTeX at all, the whole text if it is short (for a response: and not
    prose), then its last number."""
    candidates = []
    final = _anchored(text, _FINAL_ANCHOR)
    if final:
        candidates.append((final, False))
    boxed = _last_boxed(text)
    if boxed is not None:
        candidates.append((boxed, False))
    gsm8k = _GSM8K.findall(text)
    if gsm8k:
        candidates.append((gsm8k[-1], True))
    anchored = _anchored(text, _ANCHOR)
    if anchored:
        candidates.append((anchored, False))
    math = _last_math(text)
    if math is not None:
        after = text[math[1]:]
        if "\\" not in after and "$" not in after and _last_number(after):
            candidates.append((_last_number(after), True))
        candidates.append((math[0], False))
    if math is None and boxed is None:
        stripped = text.strip()
        if stripped and len(stripped) <= 200 and (is_gold or not _is_prose(stripped)):
            candidates.append((stripped, True))
        number = _last_number(text)
        if number is not None:
            candidates.append((number, True))
    return [(answer.strip(), plain) for answer, plain in candidates if answer and answer.strip()]


# 2. Normalisation ------------------------------------------------------------------------------

_TEXT_COMMANDS = r"\\(?:text|textbf|textit|textrm|textnormal|mathrm|mbox|operatorname)"
_TEXT_GROUP = re.compile(_TEXT_COMMANDS + r"\s*\{([^{}]*)\}(\s*\^\s*\{?\s*[23]\s*\}?)?")
_UNIT_AFTER_NUMBER = re.compile(r"(?<=[\d}])\s*[A-Za-z]{2,}\.?(?:\s+[A-Za-z]{2,}\.?)*\s*(?:\^\{?[23]\}?)?$")
_PERCENT = re.compile(r"\\?%|\s*\b(?:percentage|percent|pct)\b\.?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b|\\circ\b")


def _unwrap_text(match):
    content, power = match.group(1).strip(), match.group(2) or ""
    if content.lower() in ("and", "or", ",", "and/or"):
        return ", "
    if re.fullmatch(r"[A-Za-z][A-Za-z\s.'-]+", content):     # words: a unit (cm^2) or a label, dropped
        return " "
    return ("{" + content + "}" if content else " ") + power


def normalize_answer(answer):
    """Answer text -> the form latex.parse reads. Units, degrees and percent signs are dropped
    (policy: "28\\%" == "28" and "90^\\circ" == "90"); thousands separators removed; "and"/"or"
    between answers becomes a comma."""
    answer = answer.strip()
    while len(answer) >= 2 and answer[0] == "$" and answer[-1] == "$":
        answer = answer[1:-1].strip()
    for left, right in (("\\(", "\\)"), ("\\[", "\\]")):
        if answer.startswith(left) and answer.endswith(right):
            answer = answer[2:-2].strip()
    boxed = _last_boxed(answer)
    if boxed is not None:
        answer = boxed
    answer = answer.replace("\\$", " ").replace("$", " ").replace("€", " ").replace("£", " ")
    answer = re.sub(r"(\d)\s*\{\s*,\s*\}\s*(?=\d{3})", r"\1", answer)   # 14{,}916
    answer = re.sub(r"(\d),\\!\s*(?=\d{3})", r"\1", answer)        # 11,\! 111
    answer = re.sub(r"(?<![\d.,])(\d{1,3}(?:,\d{3})+)(?![\d,])", lambda m: m.group(1).replace(",", "")
                    if not re.search(r"[\[\](){}]", answer) else m.group(1), answer)
    answer = _DEGREES.sub(" ", answer)
    answer = _PERCENT.sub(" ", answer)
    if not _TEXT_GROUP.fullmatch(answer.strip()):                  # \text{Evelyn} alone is the answer
        answer = _TEXT_GROUP.sub(_unwrap_text, answer)
    answer = re.sub(r"\\q?quad", " ", answer)
    answer = re.sub(r"(?i)(?<=[\s)\]}\d])(?:and|or)(?=[\s(\[{\\\d-])", ",", answer)
    answer = re.sub(r"(?:\s*,\s*){2,}", ", ", answer)
    answer = _UNIT_AFTER_NUMBER.sub("", answer.strip()).strip().strip(",;:").strip()
    return re.sub(r"(?<!\.)\.$", "", answer).strip()     # a full stop, not the "..." of a sequence


def _prepare(text):
    if "matrix" not in text and "array" not in text:
        text = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", text)    # \\frac -> \frac (an escaping artefact)
    return text


def _parse_answer(answer):
    """latex.parse of a normalised answer, retrying on the part after the last '=' on failure."""
    if len(answer) > MAX_ANSWER_CHARS:
        raise latex.LatexError("answer too long")
    try:
        return latex.parse(answer)
    except latex.LatexError:
        if "=" not in answer:
            raise
        return latex.parse(answer.rsplit("=", 1)[1])


def _bare_number(answer):
    """A plain-text number with thousands separators or a decimal comma: '7,425,000', '1 000', '1,22'."""
    if not _BARE_NUMBER.fullmatch(answer):
        return None
    if re.fullmatch(r"-?\d{1,3}(?:([, ])\d{3})+(?:\.\d+)?", answer) and not re.fullmatch(r"-?0,\d+", answer):
        return answer.replace(",", "").replace(" ", "")
    return answer.replace(",", ".")


# 3. Reduction: "x = 3" is the answer 3; "-2 <= x <= 7" is [-2, 7]; "x \in S" is S. -----------------

def _name_like(value):
    """x, x_1, f(x), |AB|, NO/BO, (p, q): a name for the answer rather than a condition on it."""
    if isinstance(value, latex.Tuple):
        return all(_name_like(item) for item in value.items)
    if not isinstance(value, sympy.Expr) or not value.free_symbols or value.has(sympy.Add):
        return False
    if value.as_coeff_Mul()[0] != 1:        # -x or 2x is an expression, not a name
        return False
    return all(number in (1, -1) for number in value.atoms(sympy.Number))


def _reduce(value):
    if isinstance(value, (latex.AnswerList, latex.SetOf, latex.Alternatives)):
        return type(value)([_reduce(item) for item in value.items])
    if not isinstance(value, latex.Relation):
        return value
    ops, parts = list(value.ops), list(value.parts)
    if "\\approx" in ops:                   # x = 1/3 \approx 0.33: the exact value before \approx
        cut = ops.index("\\approx")
        before = latex.Relation(ops[:cut], parts[:cut + 1]) if cut else parts[0]
        after = latex.Relation(ops[cut + 1:], parts[cut + 1:]) if cut + 1 < len(ops) else parts[-1]
        return _reduce(after if _name_like(before) else before)
    if ops == ["\\in"]:
        return parts[1]
    if all(op == "=" for op in ops) and len(parts) > 2:
        return parts[-1]                    # x = 5 + 5 + 1 = 11: the last value is the answer
    interval = _as_interval(ops, parts)
    return interval if interval is not None else value


def _as_interval(ops, parts):
    """1 < x <= 2 -> (1, 2]; -x > -1 -> (-oo, 1); None unless one part is linear in the only
    variable and the others are numbers."""
    if not 2 <= len(parts) <= 3 or any(op not in ("<", "<=", ">", ">=") for op in ops):
        return None
    if len({op[0] for op in ops}) != 1:
        return None                         # 1 < x > 0 is not an interval
    values = [_number_value(p) for p in parts]
    if any(v is None for v in values):
        return None
    variable_parts = [i for i, v in enumerate(values) if v.free_symbols]
    if len(variable_parts) != 1:
        return None
    where = variable_parts[0]
    if _name_like(values[where]):            # 0 < f(x) < 1: the name itself is the variable
        symbol, slope, offset = values[where], sympy.Integer(1), sympy.Integer(0)
    elif len(values[where].free_symbols) == 1:
        (symbol,) = values[where].free_symbols
        slope = sympy.diff(values[where], symbol)
        if slope.free_symbols or not slope.is_real or slope == 0:
            return None
        offset = values[where].subs(symbol, 0)   # linear, so f(0) is the offset (no expand)
    else:
        return None
    # a <= slope*x + offset <= b  ->  (a - offset)/slope <= x <= (b - offset)/slope, flipped if slope < 0
    bounds = [symbol if i == where else parts[i] if (slope, offset) == (1, 0) else (v - offset) / slope
              for i, v in enumerate(values)]       # parts keep a written decimal's precision
    increasing = (ops[0][0] == "<") == bool(slope > 0)
    closed = [op.endswith("=") for op in ops]
    if not increasing:
        bounds, closed = bounds[::-1], closed[::-1]
    where = bounds.index(symbol)
    lo = bounds[where - 1] if where > 0 else -sympy.oo
    hi = bounds[where + 1] if where + 1 < len(bounds) else sympy.oo
    lo_closed = where > 0 and closed[where - 1]
    hi_closed = where + 1 < len(bounds) and closed[where]
    return latex.Interval(lo, hi, lo_closed, hi_closed)


def _number_value(value):
    if isinstance(value, latex.Decimal):
        return value.value
    return value if isinstance(value, sympy.Expr) else None


# 4. Comparison ---------------------------------------------------------------------------------

def _points(symbols):
    """Deterministic pseudo-random points in (1.4, 3.3): the same symbols get the same values on
    every call, so a verdict never depends on the run."""
    names = sorted(symbols, key=lambda s: s.name)
    return [{s: _mp.mpf(137 + 11 * ((7 * index + 13 * k + 5) % 17)) / (97 + 3 * index) for k, s in enumerate(names)}
            for index in range(NUMERIC_POINTS)]


class _Undefined(Exception):
    """A value we will not compute: a pole, an overflow, an unknown function."""


# Our own fixed-precision evaluator over the sympy tree, instead of sympy's evalf, whose adaptive
# precision can loop for minutes on e^{e^{e^{e^x}}}: every node here costs a bounded amount, and
# anything beyond about 10^10000 is simply undefined.
_mp = mpmath.MPContext()
_mp.dps = NUMERIC_DIGITS
_MAX_MAGNITUDE_BITS = 33_000
_CONSTANTS = {sympy.pi: lambda: _mp.pi, sympy.E: lambda: _mp.e, sympy.I: lambda: _mp.j,
              sympy.EulerGamma: lambda: _mp.euler}
_NUMERIC_FUNCTIONS = {
    sympy.exp: "exp", sympy.log: "log", sympy.sin: "sin", sympy.cos: "cos", sympy.tan: "tan",
    sympy.sec: "sec", sympy.csc: "csc", sympy.cot: "cot", sympy.asin: "asin", sympy.acos: "acos",
    sympy.atan: "atan", sympy.sinh: "sinh", sympy.cosh: "cosh", sympy.tanh: "tanh",
    sympy.gamma: "gamma", sympy.factorial: "factorial",
}


def _bounded(value):
    if not _mp.isfinite(value) or (value != 0 and _mp.mag(value) > _MAX_MAGNITUDE_BITS):
        raise _Undefined
    return value


def _numeric(expr, values):
    if expr.is_Symbol:
        if expr not in values:
            raise _Undefined
        return values[expr]
    if expr.is_Rational:
        return _mp.mpf(expr.p) / expr.q
    if expr in _CONSTANTS:
        return _CONSTANTS[expr]()
    args = [_numeric(arg, values) for arg in expr.args]
    if expr.is_Add:
        return _bounded(_mp.fsum(args))
    if expr.is_Mul:
        return _bounded(_mp.fprod(args))
    if expr.is_Pow:
        base, exponent = args
        if base == 0:
            if _mp.re(exponent) <= 0:
                raise _Undefined
            return _mp.mpf(0)
        if abs(exponent) * abs(_mp.log(abs(base), 2)) > _MAX_MAGNITUDE_BITS:
            raise _Undefined
        return _bounded(_mp.power(base, exponent))
    if isinstance(expr, sympy.Abs):
        return abs(args[0])
    if isinstance(expr, (sympy.floor, sympy.ceiling)):
        if _mp.im(args[0]) != 0:
            raise _Undefined
        return (_mp.floor if isinstance(expr, sympy.floor) else _mp.ceil)(args[0])
    if isinstance(expr, sympy.binomial):
        return _bounded(_mp.binomial(*args))
    name = _NUMERIC_FUNCTIONS.get(expr.func)
    if name is None or len(args) != 1:
        raise _Undefined
    (argument,) = args
    if name == "exp" and abs(_mp.re(argument)) > _MAX_MAGNITUDE_BITS * 0.69:
        raise _Undefined
    if name in ("sin", "cos", "tan", "sec", "csc", "cot") and abs(argument) > 10 ** 100:
        raise _Undefined                    # argument reduction would need that many digits
    if name in ("gamma", "factorial") and abs(argument) > 10 ** 4:
        raise _Undefined
    if name == "log" and argument == 0:
        raise _Undefined
    return _bounded(getattr(_mp, name)(argument))


def _evaluate(expr, substitution):
    """mpmath value of a sympy expression at a point, or None where it is undefined."""
    try:
        return _numeric(expr, substitution)
    except (_Undefined, ValueError, ZeroDivisionError, OverflowError, TypeError):
        return None


def _close(a, b, tolerance):
    scale = max(abs(a), abs(b))
    return scale == 0 or abs(a - b) <= tolerance * scale


def _numeric_values(expressions):
    """[[value of each expression] at each random point], skipping points where one is undefined.
    All the checks below are numeric: no simplify, no expand, so their cost stays bounded."""
    symbols = set().union(*(e.free_symbols for e in expressions))
    rows = []
    for substitution in (_points(symbols) if symbols else [{}]):
        row = [_evaluate(e, substitution) for e in expressions]
        if all(value is not None for value in row):
            rows.append(row)
    return rows


def _expressions_equal(a, b):
    """Exact where both are exact; otherwise equal values, within RELATIVE_TOLERANCE, at every
    random point where both are defined (and at least one such point)."""
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase)) or a.shape != b.shape:
            return False
        return all(_expressions_equal(x, y) for x, y in zip(a, b))
    if a == b:
        return True
    if isinstance(a, sympy.Rational) and isinstance(b, sympy.Rational):
        return False                        # both exact: 1/2004! and 1/2006! differ, however small
    if a.has(sympy.oo, -sympy.oo, sympy.zoo) or b.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False
    if len(a.free_symbols | b.free_symbols) > MAX_SYMBOLS:
        return False
    rows = _numeric_values([a, b])
    return bool(rows) and all(_close(value_a, value_b, RELATIVE_TOLERANCE) for value_a, value_b in rows)


def _decimal_covers(decimal, value):
    """A written decimal with k places and enough significant digits stands for every value that
    rounds to it: 2.6667 covers 8/3, 0.33 (two digits) covers only 0.33."""
    if decimal.significant < MIN_DECIMAL_DIGITS or not isinstance(value, sympy.Expr) or value.free_symbols:
        return False
    evaluated = _evaluate(value, {})
    if evaluated is None or _mp.im(evaluated) != 0:
        return False
    half_unit = _mp.mpf(10) ** -decimal.places / 2
    written = _mp.mpf(decimal.value.p) / decimal.value.q
    return abs(_mp.re(evaluated) - written) <= half_unit * (1 + 1e-9)


def _scalars_equal(gold, pred):
    gold_value, pred_value = _number_value(gold), _number_value(pred)
    if gold_value is None or pred_value is None:
        return False
    if _expressions_equal(gold_value, pred_value):
        return True
    return (isinstance(gold, latex.Decimal) and _decimal_covers(gold, pred_value)) or \
           (isinstance(pred, latex.Decimal) and _decimal_covers(pred, gold_value))


def _unordered_equal(golds, preds):
    if len(golds) > MAX_ITEMS or len(preds) > MAX_ITEMS:
        return False
    return all(any(_equal(g, p) for p in preds) for g in golds) and \
           all(any(_equal(g, p) for g in golds) for p in preds)


def _ordered_equal(golds, preds):
    return len(golds) == len(preds) <= MAX_ITEMS and all(_equal(g, p) for g, p in zip(golds, preds))


def _relation_form(relation):
    """(kind, lhs - rhs) with '>' turned into '<': a < b -> ('<', a - b)."""
    (op,), (lhs, rhs) = relation.ops, relation.parts
    lhs, rhs = _number_value(lhs), _number_value(rhs)
    if lhs is None or rhs is None:
        return None
    flipped = {">": "<", ">=": "<="}
    if op in flipped:
        return flipped[op], rhs - lhs
    return op, lhs - rhs


def _relations_equal(gold, pred):
    """Same relation up to a constant factor (2x + 4y - 3 = 0 is y = -x/2 + 3/4): the ratio of the
    two sides' differences is the same number at every random point, positive for inequalities."""
    if len(gold.ops) != 1 or len(pred.ops) != 1:
        return gold.ops == pred.ops and _ordered_equal(gold.parts, pred.parts)
    gold_form, pred_form = _relation_form(gold), _relation_form(pred)
    if gold_form is None or pred_form is None or gold_form[0] != pred_form[0]:
        return False
    if gold_form[0] == "\\in":
        return False
    gold_difference, pred_difference = gold_form[1], pred_form[1]
    if gold_difference == 0 or pred_difference == 0:
        return gold_difference == pred_difference
    if len(gold_difference.free_symbols | pred_difference.free_symbols) > MAX_SYMBOLS:
        return False
    rows = _numeric_values([gold_difference, pred_difference])
    if not rows or any(p == 0 or g == 0 for g, p in rows):
        return False
    ratios = [g / p for g, p in rows]
    if any(not _close(ratio, ratios[0], RELATIVE_TOLERANCE) for ratio in ratios):
        return False
    ratio = ratios[0]
    if abs(_mp.im(ratio)) > RELATIVE_TOLERANCE * abs(ratio):
        return False
    return _mp.re(ratio) > 0 if gold_form[0] in ("<", "<=") else True


def _as_open_interval(value):
    if isinstance(value, latex.Tuple) and value.brackets == "()" and len(value.items) == 2:
        return latex.Interval(value.items[0], value.items[1], False, False)
    return value


def _collection(value):
    return isinstance(value, (latex.AnswerList, latex.SetOf, latex.Alternatives))


def _single(value):
    while _collection(value) and len(value.items) == 1:
        value = value.items[0]
    return value


def _equal(gold, pred):
    gold, pred = _single(gold), _single(pred)
    if isinstance(gold, latex.Relation) and isinstance(pred, latex.Relation):
        return _relations_equal(gold, pred)
    if isinstance(gold, latex.Relation) or isinstance(pred, latex.Relation):
        # "k = 1" answers 1 when k is a name; a predicted "2 + 3 = 5" answers 5; a gold
        # equation such as "a + 3z = 0" is not answered by "0".
        relation, other = (gold, pred) if isinstance(gold, latex.Relation) else (pred, gold)
        if set(relation.ops) != {"="} or not (_name_like(relation.parts[0]) or relation is pred):
            return False
        return _equal(relation.parts[-1], other) if relation is pred else _equal(other, relation.parts[-1])
    if _collection(gold) or _collection(pred):
        if isinstance(gold, latex.Tuple) and isinstance(pred, latex.AnswerList):
            return _ordered_equal(gold.items, pred.items)       # (1, 3) vs {1,3}: braces only group
        if isinstance(pred, latex.Tuple) and isinstance(gold, latex.AnswerList):
            return _ordered_equal(gold.items, pred.items)
        if not (_collection(gold) and _collection(pred)):
            return False
        return _unordered_equal(gold.items, pred.items)
    if isinstance(gold, latex.Union) or isinstance(pred, latex.Union):
        gold_parts = gold.parts if isinstance(gold, latex.Union) else [gold]
        pred_parts = pred.parts if isinstance(pred, latex.Union) else [pred]
        return _unordered_equal([_as_open_interval(p) for p in gold_parts], [_as_open_interval(p) for p in pred_parts])
    if isinstance(gold, latex.Interval) or isinstance(pred, latex.Interval):
        gold, pred = _as_open_interval(gold), _as_open_interval(pred)
        if not (isinstance(gold, latex.Interval) and isinstance(pred, latex.Interval)):
            return False
        return (gold.lo_closed, gold.hi_closed) == (pred.lo_closed, pred.hi_closed) and \
            _equal(gold.lo, pred.lo) and _equal(gold.hi, pred.hi)
    if isinstance(gold, latex.Tuple) or isinstance(pred, latex.Tuple):
        return isinstance(gold, latex.Tuple) and isinstance(pred, latex.Tuple) and _ordered_equal(gold.items, pred.items)
    return _scalars_equal(gold, pred)


def _text_key(answer):
    """Answer text for a plain string comparison: no wrappers, spaces or case."""
    answer = re.sub(_TEXT_COMMANDS + r"\s*\{([^{}]*)\}", r"\1", answer)
    return re.sub(r"[\s{}]|\\[,;:! ]", "", answer).lower().strip(".")


def _choice_letter(answer):
    """'C', '(C)', '\\text{C}' -> 'C'; None unless the answer is one capital letter."""
    key = re.sub(_TEXT_COMMANDS + r"\s*\{([^{}]*)\}", r"\1", answer)
    key = re.sub(r"[\s$(){}.:*]", "", key)
    return key if re.fullmatch(r"[A-Z]", key) else None


def _pred_choice(pred_text, gold_letter):
    for candidate, plain in extract_answers(pred_text):
        if plain or len(candidate) > MAX_ANSWER_CHARS:
            continue
        letter = _choice_letter(normalize_answer(candidate))
        if letter:
            return letter
    start = re.match(r"\s*\**\(?([A-Z])\)?(?:[.:)*\s]|$)", pred_text)
    if start:
        return start.group(1)
    letters = re.findall(r"(?<![A-Za-z\\])([A-E%s])(?![A-Za-z])" % gold_letter, pred_text)
    return letters[-1] if letters else None


def _first_parsed(candidates):
    """(normalised answer, value) of the first candidate that parses; value None if none does."""
    normalised = []
    for candidate, plain in candidates:
        if len(candidate) > MAX_ANSWER_CHARS:
            continue                        # cannot be parsed anyway; keeps every regex below bounded
        bare = _bare_number(candidate) if plain else None
        answer = bare if bare is not None else normalize_answer(candidate)
        if not answer:
            continue
        normalised.append(answer)
        if re.fullmatch(r"[A-Za-z]+(?:[\s'-][A-Za-z]+)*", answer) and re.search(r"[A-Za-z]{3}", answer):
            return answer, None             # a word answer ("odd", "Evelyn") is compared as text
        try:
            return answer, _parse_answer(answer)
        except latex.LatexError:
            continue
    return (normalised[0] if normalised else None), None


def verify(gold, pred):
    """True if the final answer of `pred` equals the final answer of `gold` as mathematics.

    Math-Verify's argument order. Both strings go through the same extraction (a bare gold is
    its own answer); a gold that is one capital letter is a multiple-choice answer. Never raises
    on model text: anything unreadable is simply not equal.
    """
    gold, pred = str(gold), str(pred)
    if len(gold) > MAX_RESPONSE_CHARS or len(pred) > MAX_RESPONSE_CHARS:
        return False
    try:
        return _verify(gold, pred)
    except Exception:                       # sympy refusing something exotic: not equal, never a crash
        return False


def _verify(gold, pred):
    gold_text, pred_text = _prepare(gold), _prepare(pred)
    gold_candidates = extract_answers(gold_text, is_gold=True)
    if not gold_candidates or not pred_text.strip():
        return False
    gold_letter = _choice_letter(normalize_answer(gold_candidates[0][0][:MAX_ANSWER_CHARS]))
    if gold_letter:
        return _pred_choice(pred_text, gold_letter) == gold_letter
    gold_answer, gold_value = _first_parsed(gold_candidates)
    pred_answer, pred_value = _first_parsed(extract_answers(pred_text))
    if gold_answer is None or pred_answer is None:
        return False
    if _text_key(gold_answer) == _text_key(pred_answer):
        return True
    if gold_value is None or pred_value is None:
        return False
    return _equal(_reduce(gold_value), _reduce(pred_value))


def math_reward(response, gold):
    """1.0 if `verify(gold, response)`, else 0.0. No time limit here: use score_batch for that."""
    return 1.0 if verify(gold, response) else 0.0


def _verify_with_backend(backend, gold, pred):
    if backend == "sympy":
        return verify(gold, pred)
    if backend == "_sleep":                 # test hook: a job that takes `pred` seconds, to exercise the time limit
        time.sleep(float(pred))
        return gold == "1"
    import math_verify  # only reached after _check_backend, which explains a missing package
    return bool(math_verify.verify(math_verify.parse(gold), math_verify.parse(pred)))


def _check_backend(backend):
    if backend not in ("sympy", "math_verify", "_sleep"):
        raise ValueError(f"unknown verifier backend {backend!r}; known: 'sympy', 'math_verify'")
    if backend == "math_verify":
        try:
            import math_verify  # noqa: F401
        except ImportError:
            raise ImportError("backend='math_verify' needs Hugging Face's Math-Verify: pip install math-verify") from None


# ----------------------------------------------------------------------------------------------
# The worker pool. Each worker is a fresh interpreter (the spawn start method, through subprocess
# rather than multiprocessing, so that the training script's __main__, and torch with it, is not
# re-imported in the worker) that imports this file, sets its memory limit and answers jobs over
# its pipes. The parent keeps a deadline per answer; a worker past it is killed and only that
# worker is replaced. Messages are JSON lines, never pickles: nothing a worker sends back can run
# code in the parent.

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))
DEFAULT_MEMORY_MB = 2048        # RLIMIT_AS of a worker (address space, so generous)
WORKER_START_TIMEOUT_S = 120.0
MAX_CHUNK = 16                  # answers per pipe write (per-answer deadlines still hold)

_pool = []                      # worker dicts: proc, buffer, jobs in flight, deadline, ready
_pool_lock = threading.Lock()
_stats = {"scored": 0, "timeouts": 0, "crashes": 0, "worker_starts": 0, "math_seconds": 0.0}
_atexit_registered = False


def verifier_stats():
    """Cumulative counts since import: answers scored, math time-outs and worker crashes."""
    return dict(_stats)


def _worker_loop(memory_mb):
    """Entry point of a worker process: read a line [[job_id, backend, gold, pred], ...], answer one
    line [job_id, verdict] per job as soon as it is done (the parent's clock restarts on each)."""
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr                 # a stray print must not corrupt the reply stream
    signal.signal(signal.SIGINT, signal.SIG_IGN)   # Ctrl-C is the trainer's; it closes our stdin
    try:
        import resource
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass                                # no RLIMIT_AS on this OS: the time limit still holds
    verify("1", "1")                        # import sympy and warm caches before saying ready
    replies.write((json.dumps(["ready", os.getpid()]) + "\n").encode())
    replies.flush()
    for line in sys.stdin.buffer:
        for job_id, backend, gold, pred in json.loads(line):
            try:
                verdict = bool(_verify_with_backend(backend, gold, pred))
            except Exception:               # MemoryError and RecursionError included: a wrong answer
                verdict = False
            replies.write((json.dumps([job_id, verdict]) + "\n").encode())
            replies.flush()


def _start_worker(memory_mb):
    here = os.path.dirname(os.path.abspath(__file__))
    code = f"import sys; sys.path.insert(0, {here!r}); import reward; reward._worker_loop({int(memory_mb)})"
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, bufsize=0, close_fds=True)
    _stats["worker_starts"] += 1
    return {"proc": proc, "buffer": b"", "jobs": collections.deque(), "deadline": None,
            "ready": False, "started": time.monotonic(), "memory_mb": memory_mb}


def _stop_worker(worker, kill=True):
    proc = worker["proc"]
    try:
        proc.stdin.close()
    except OSError:
        pass
    if kill:
        proc.kill()
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def shutdown_pool():
    """Stop every worker (registered with atexit when the pool starts; safe to call twice)."""
    with _pool_lock:
        while _pool:
            _stop_worker(_pool.pop(), kill=False)


def _resize_pool(workers, memory_mb):
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(shutdown_pool)
        _atexit_registered = True
    for worker in [w for w in _pool if w["memory_mb"] != memory_mb]:   # a new limit needs new workers
        _pool.remove(worker)
        _stop_worker(worker, kill=False)
    while len(_pool) > workers:
        _stop_worker(_pool.pop(), kill=False)
    while len(_pool) < workers:
        _pool.append(_start_worker(memory_mb))


def _replace_worker(index):
    memory_mb = _pool[index]["memory_mb"]
    _stop_worker(_pool[index])
    _pool[index] = _start_worker(memory_mb)


def _score_math_in_pool(golds, preds, backend, timeout_s, workers, memory_mb):
    """Scores in order. Jobs go out in small chunks (one pipe write per chunk) and come back one
    line per answer; a worker's deadline is timeout_s after its last answer, so every answer has
    its own time limit. On a time-out or a crash, the answer in progress scores 0, the rest of
    the chunk goes back to the queue and only that worker is replaced."""
    scores = [0.0] * len(preds)
    # over-long texts score 0 without a round trip
    pending = collections.deque(i for i in range(len(preds))
                                if len(preds[i]) <= MAX_RESPONSE_CHARS and len(golds[i]) <= MAX_RESPONSE_CHARS)
    _resize_pool(workers, memory_mb)
    chunk_size = max(1, min(MAX_CHUNK, len(pending) // (4 * len(_pool))))
    while pending or any(w["jobs"] for w in _pool):
        for index, worker in enumerate(_pool):
            if worker["ready"] and not worker["jobs"] and pending:
                jobs = [pending.popleft() for _ in range(min(chunk_size, len(pending)))]
                message = json.dumps([[job, backend, golds[job], preds[job]] for job in jobs]) + "\n"
                try:
                    worker["proc"].stdin.write(message.encode())
                except OSError:                 # died while idle: its jobs go to another worker
                    pending.extendleft(reversed(jobs))
                    _stats["crashes"] += 1
                    _replace_worker(index)
                    continue
                worker["jobs"].extend(jobs)
                worker["deadline"] = time.monotonic() + timeout_s
        now = time.monotonic()
        waits = [w["deadline"] - now for w in _pool if w["jobs"]]
        waits += [w["started"] + WORKER_START_TIMEOUT_S - now for w in _pool if not w["ready"]]
        by_fd = {w["proc"].stdout.fileno(): i for i, w in enumerate(_pool) if w["jobs"] or not w["ready"]}
        readable, _, _ = select.select(list(by_fd), [], [], max(0.0, min(waits)))
        for fd in readable:
            index = by_fd[fd]
            worker = _pool[index]
            chunk = os.read(fd, 1 << 16)
            if not chunk:                       # the worker died (memory limit, signal, bug)
                if not worker["ready"]:
                    raise RuntimeError("a verifier worker exited while starting; see its stderr above")
                _stats["crashes"] += 1
                _requeue_after_failure(worker, pending)
                _replace_worker(index)
                continue
            worker["buffer"] += chunk
            while b"\n" in worker["buffer"]:
                line, worker["buffer"] = worker["buffer"].split(b"\n", 1)
                job, verdict = json.loads(line)
                if job == "ready":
                    worker["ready"] = True
                elif worker["jobs"] and job == worker["jobs"][0]:
                    scores[job] = 1.0 if verdict else 0.0
                    worker["jobs"].popleft()
                    worker["deadline"] = time.monotonic() + timeout_s
        now = time.monotonic()
        for index, worker in enumerate(_pool):
            if worker["jobs"] and now > worker["deadline"]:
                _stats["timeouts"] += 1
                _requeue_after_failure(worker, pending)
                _replace_worker(index)
            elif not worker["ready"] and now > worker["started"] + WORKER_START_TIMEOUT_S:
                raise RuntimeError(f"a verifier worker did not start within {WORKER_START_TIMEOUT_S:.0f} s")
    return scores


def _requeue_after_failure(worker, pending):
    """The answer in progress keeps its 0.0; the rest of the worker's chunk is retried."""
    worker["jobs"].popleft()
    pending.extendleft(reversed(worker["jobs"]))
    worker["jobs"].clear()


def score_batch(task, responses, golds, *, backend="sympy", timeout_s=DEFAULT_TIMEOUT_S,
                workers=DEFAULT_WORKERS, memory_mb=DEFAULT_MEMORY_MB):
    """Rewards (0.0 / 1.0) of `responses` against `golds`, in order.

    maze, countdown and arithmetic are bounded and scored inline. math is scored in the worker
    pool, each answer within `timeout_s` (a time-out scores 0); workers=0 scores math inline,
    without a time limit (for debugging and as the benchmark's baseline).
    """
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(TASKS)}")
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
    if task != "math":
        reward_fn = {"maze": maze_reward, "countdown": countdown_reward, "arithmetic": arithmetic_reward}[task]
        scores = [reward_fn(response, gold) for response, gold in zip(responses, golds)]
        _stats["scored"] += len(scores)
        return scores
    _check_backend(backend)
    if timeout_s <= 0 or workers < 0:
        raise ValueError(f"timeout_s must be positive and workers >= 0, got {timeout_s} and {workers}")
    started = time.monotonic()
    golds, responses = [str(g) for g in golds], [str(r) for r in responses]
    if workers == 0 or not responses:
        scores = [1.0 if _verify_with_backend(backend, g, r) else 0.0 for g, r in zip(golds, responses)]
    else:
        with _pool_lock:
            scores = _score_math_in_pool(golds, responses, backend, timeout_s, workers, memory_mb)
    _stats["scored"] += len(scores)
    _stats["math_seconds"] += time.monotonic() - started
    return scores
