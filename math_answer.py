"""The math verifier: is a response's final answer equal to the gold answer, as mathematics?

    verify(gold, pred) -> bool                 Math-Verify's argument order
    math_reward(response, gold) -> 1.0 / 0.0   the task verifier (reward.VERIFIERS["math"])

extract the final answer of both strings -> normalise it -> parse it with our own recursive-descent
LaTeX parser (latex.py) -> reduce -> compare the values. No time limit here: reward.score_batch runs
this in pool.py's workers, each answer under a time limit.

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

import re

import sympy

import latex
import numeric

MAX_RESPONSE_CHARS = 500_000  # a longer response or gold is never equal: no generation is that long
MAX_ANSWER_CHARS = 1_000  # an extracted answer longer than this is compared as text only
MAX_ITEMS = 64  # elements of a set/list/tuple we are willing to match
RELATIVE_TOLERANCE = 1e-12  # between two computed (non-literal) values
MAX_SYMBOLS = 12  # distinct variables in one comparison
# a written decimal needs this many significant digits to stand for a rounding
MIN_DECIMAL_DIGITS = 3

# 1. Extraction ---------------------------------------------------------------------------------

_BOX_TOKENS = re.compile(r"\\(?:boxed|fbox)\s*\{|\\.|[{}]", re.DOTALL)
_BOX_BARE = re.compile(r"\\boxed[ \t]+([^\s${}]+)")
_MATH_DELIMITERS = re.compile(r"\\\$|\$\$|\$|\\\(|\\\)|\\\[|\\\]")
_FINAL_ANCHOR = re.compile(r"(?i)\bfinal answer\b\s*(?:is\b\s*:?|:)")
_ANCHOR = re.compile(r"(?i)\banswer\b\s*(?:is\b\s*:?|:)")
_PROSE = re.compile(r"(?<![\\a-zA-Z])[A-Za-z]{3,}")  # a word of 3+ letters that is not a command
_GSM8K = re.compile(r"####[ \t]*([^\n]*)")
_NUMBER_IN_TEXT = re.compile(
    r"(?<![\w.])-?(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?(?:/\d+)?|\.\d+)(?!\d)"
)
_BARE_NUMBER = re.compile(r"-?(?:\d{1,3}(?:[, ]\d{3})+(?:\.\d+)?|\d+(?:[.,]\d+)?|\.\d+)")
_BOX_CONNECTOR = re.compile(r"(?i)(?:,|;|\band\b|\bor\b)")


def _boxed_spans(text):
    """(start, end, content) of every complete \\boxed{...} / \\fbox{...} and \\boxed 5, in order.
    Linear."""
    spans, stack = [], []  # stack: (is_box, start, content_start) per open brace
    for match in _BOX_TOKENS.finditer(text):
        token = match.group()
        if token == "}":
            if stack:
                is_box, start, content_start = stack.pop()
                if is_box:
                    spans.append((start, match.end(), text[content_start : match.start()]))
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
        between = text[previous[1] : chosen[0][0]]
        if len(between) > 40:
            break
        bare = re.sub(r"\\(?:quad|qquad|text|textbf|mathrm)\b|\\[,;:! ]|[\s${}()\\]", " ", between)
        if bare.strip() and not _BOX_CONNECTOR.search(bare):
            break
        chosen.insert(0, previous)
    return ", ".join(content for _, _, content in chosen)


def _math_spans(text):
    """(start, end, content) of $...$, $$...$$, \\(...\\), \\[...\\] in order (inline ones on one
    line)."""
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
            content = text[content_start : match.start()]
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
        between = text[previous[1] : chosen[0][0]]
        if len(between) > 20 or not re.fullmatch(r"(?i)\s*(?:,|;|,?\s*and|,?\s*or)?\s*", between):
            break
        chosen.insert(0, previous)
    return ", ".join(content for _, _, content in chosen), spans[-1][1]


def _anchored(text, pattern):
    """What follows the last match of `pattern` ("answer is", "answer:") to the end of its
    sentence."""
    matches = list(pattern.finditer(text))
    if not matches:
        return None
    segment = text[matches[-1].end() : matches[-1].end() + 500]
    segment = re.split(r"\n|I hope", segment, maxsplit=1)[0]
    segment = re.split(r"\.(?:\s|$)", segment, maxsplit=1)[0].strip()
    if re.search(r"\bis\b", segment):  # "Final Answer: The largest $n$ is 34"
        segment = re.split(r"\bis\b", segment)[-1]
    math = _last_math(segment)
    if math is not None:
        return math[0]
    if _is_prose(segment):  # "Jane started growing Sphere 3 hours ago": its last number
        return _last_number(segment)
    return segment.strip(' :*"')


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
        after = text[math[1] :]
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
_UNIT_AFTER_NUMBER = re.compile(
    r"(?<=[\d}])\s*[A-Za-z]{2,}\.?(?:\s+[A-Za-z]{2,}\.?)*\s*(?:\^\{?[23]\}?)?$"
)
_PERCENT = re.compile(r"\\?%|\s*\b(?:percentage|percent|pct)\b\.?")
_DEGREES = re.compile(r"\^\s*\{?\s*\\circ\s*\}?|°|\\degree\b|\\circ\b")


def _unwrap_text(match):
    content, power = match.group(1).strip(), match.group(2) or ""
    if content.lower() in ("and", "or", ",", "and/or"):
        return ", "
    if re.fullmatch(r"[A-Za-z][A-Za-z\s.'-]+", content):  # words: a unit (cm^2) or a label, dropped
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
    answer = re.sub(r"(\d)\s*\{\s*,\s*\}\s*(?=\d{3})", r"\1", answer)  # 14{,}916
    answer = re.sub(r"(\d),\\!\s*(?=\d{3})", r"\1", answer)  # 11,\! 111
    answer = re.sub(
        r"(?<![\d.,])(\d{1,3}(?:,\d{3})+)(?![\d,])",
        lambda m: (
            m.group(1).replace(",", "") if not re.search(r"[\[\](){}]", answer) else m.group(1)
        ),
        answer,
    )
    answer = _DEGREES.sub(" ", answer)
    answer = _PERCENT.sub(" ", answer)
    if not _TEXT_GROUP.fullmatch(answer.strip()):  # \text{Evelyn} alone is the answer
        answer = _TEXT_GROUP.sub(_unwrap_text, answer)
    answer = re.sub(r"\\q?quad", " ", answer)
    answer = re.sub(r"(?i)(?<=[\s)\]}\d])(?:and|or)(?=[\s(\[{\\\d-])", ",", answer)
    answer = re.sub(r"(?:\s*,\s*){2,}", ", ", answer)
    answer = _UNIT_AFTER_NUMBER.sub("", answer.strip()).strip().strip(",;:").strip()
    return re.sub(r"(?<!\.)\.$", "", answer).strip()  # a full stop, not the "..." of a sequence


def _prepare(text):
    if "matrix" not in text and "array" not in text:
        text = re.sub(r"\\\\(?=[a-zA-Z])", r"\\", text)  # \\frac -> \frac (an escaping artefact)
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
    """A plain-text number with thousands separators or a decimal comma: '7,425,000', '1 000',
    '1,22'."""
    if not _BARE_NUMBER.fullmatch(answer):
        return None
    if re.fullmatch(r"-?\d{1,3}(?:([, ])\d{3})+(?:\.\d+)?", answer) and not re.fullmatch(
        r"-?0,\d+", answer
    ):
        return answer.replace(",", "").replace(" ", "")
    return answer.replace(",", ".")


# 3. Reduction: "x = 3" is the answer 3; "-2 <= x <= 7" is [-2, 7]; "x \in S" is S. ----------------


def _name_like(value):
    """x, x_1, f(x), |AB|, NO/BO, (p, q): a name for the answer rather than a condition on it."""
    if isinstance(value, latex.Tuple):
        return all(_name_like(item) for item in value.items)
    if not isinstance(value, sympy.Expr) or not value.free_symbols or value.has(sympy.Add):
        return False
    if value.as_coeff_Mul()[0] != 1:  # -x or 2x is an expression, not a name
        return False
    return all(number in (1, -1) for number in value.atoms(sympy.Number))


def _reduce(value):
    if isinstance(value, (latex.AnswerList, latex.SetOf, latex.Alternatives)):
        return type(value)([_reduce(item) for item in value.items])
    if not isinstance(value, latex.Relation):
        return value
    ops, parts = list(value.ops), list(value.parts)
    if "\\approx" in ops:  # x = 1/3 \approx 0.33: the exact value before \approx
        cut = ops.index("\\approx")
        before = latex.Relation(ops[:cut], parts[: cut + 1]) if cut else parts[0]
        after = (
            latex.Relation(ops[cut + 1 :], parts[cut + 1 :]) if cut + 1 < len(ops) else parts[-1]
        )
        return _reduce(after if _name_like(before) else before)
    if ops == ["\\in"]:
        return parts[1]
    if all(op == "=" for op in ops) and len(parts) > 2:
        return parts[-1]  # x = 5 + 5 + 1 = 11: the last value is the answer
    interval = _as_interval(ops, parts)
    return interval if interval is not None else value


def _as_interval(ops, parts):
    """1 < x <= 2 -> (1, 2]; -x > -1 -> (-oo, 1); None unless one part is linear in the only
    variable and the others are numbers."""
    if not 2 <= len(parts) <= 3 or any(op not in ("<", "<=", ">", ">=") for op in ops):
        return None
    if len({op[0] for op in ops}) != 1:
        return None  # 1 < x > 0 is not an interval
    values = [_number_value(p) for p in parts]
    if any(v is None for v in values):
        return None
    variable_parts = [i for i, v in enumerate(values) if v.free_symbols]
    if len(variable_parts) != 1:
        return None
    where = variable_parts[0]
    if _name_like(values[where]):  # 0 < f(x) < 1: the name itself is the variable
        symbol, slope, offset = values[where], sympy.Integer(1), sympy.Integer(0)
    elif len(values[where].free_symbols) == 1:
        (symbol,) = values[where].free_symbols
        slope = sympy.diff(values[where], symbol)
        if slope.free_symbols or not slope.is_real or slope == 0:
            return None
        offset = values[where].subs(symbol, 0)  # linear, so f(0) is the offset (no expand)
    else:
        return None
    # a <= slope*x + offset <= b  ->  (a - offset)/slope <= x <= (b - offset)/slope
    # (flipped if slope < 0)
    # parts keep a written decimal's precision
    bounds = [
        symbol if i == where else parts[i] if (slope, offset) == (1, 0) else (v - offset) / slope
        for i, v in enumerate(values)
    ]
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


def _expressions_equal(a, b):
    """Exact where both are exact numbers; otherwise equal values, within RELATIVE_TOLERANCE, at
    every random point where both are defined (and at least one such point); two constants to the
    working precision."""
    if isinstance(a, sympy.MatrixBase) or isinstance(b, sympy.MatrixBase):
        if (
            not (isinstance(a, sympy.MatrixBase) and isinstance(b, sympy.MatrixBase))
            or a.shape != b.shape
        ):
            return False
        return all(_expressions_equal(x, y) for x, y in zip(a, b))
    if a == b:
        return True
    if isinstance(a, sympy.Rational) and isinstance(b, sympy.Rational):
        return False  # both exact: 1/2004! and 1/2006! differ, however small
    if a.has(sympy.oo, -sympy.oo, sympy.zoo) or b.has(sympy.oo, -sympy.oo, sympy.zoo):
        return False
    if len(a.free_symbols | b.free_symbols) > MAX_SYMBOLS:
        return False
    rows = numeric.values_at_points([a, b])
    if not rows or not all(
        numeric.close(value_a, value_b, RELATIVE_TOLERANCE) for value_a, value_b in rows
    ):
        return False
    if a.free_symbols or b.free_symbols:
        return True
    # two exact constants: e^{40} + 1 is not e^{40}, though they agree to 1e-12; they must agree to
    # the working precision, raised by their magnitude so that a +1 at that size still shows
    scale = max(abs(rows[0][0]), abs(rows[0][1]))
    digits = (
        numeric.DIGITS + max(0, int(numeric.mp.mag(scale)) * 3 // 10) if scale else numeric.DIGITS
    )
    with numeric.mp.workdps(digits):
        x, y = numeric.evaluate(a, {}), numeric.evaluate(b, {})
        return (
            x is not None
            and y is not None
            and numeric.close(x, y, numeric.mp.mpf(10) ** (5 - digits))
        )


def _decimal_covers(decimal, value):
    """A written decimal with k places and enough significant digits stands for every value that
    rounds to it: 2.6667 covers 8/3, 0.33 (two digits) covers only 0.33."""
    if (
        decimal.significant < MIN_DECIMAL_DIGITS
        or not isinstance(value, sympy.Expr)
        or value.free_symbols
    ):
        return False
    evaluated = numeric.evaluate(value, {})
    if evaluated is None or numeric.mp.im(evaluated) != 0:
        return False
    half_unit = numeric.mp.mpf(10) ** -decimal.places / 2
    written = numeric.mp.mpf(decimal.value.p) / decimal.value.q
    return abs(numeric.mp.re(evaluated) - written) <= half_unit * (1 + 1e-9)


def _scalars_equal(gold, pred):
    gold_value, pred_value = _number_value(gold), _number_value(pred)
    if gold_value is None or pred_value is None:
        return False
    if _expressions_equal(gold_value, pred_value):
        return True
    return (isinstance(gold, latex.Decimal) and _decimal_covers(gold, pred_value)) or (
        isinstance(pred, latex.Decimal) and _decimal_covers(pred, gold_value)
    )


def _unordered_equal(golds, preds):
    if len(golds) > MAX_ITEMS or len(preds) > MAX_ITEMS:
        return False
    return all(any(_equal(g, p) for p in preds) for g in golds) and all(
        any(_equal(g, p) for g in golds) for p in preds
    )


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
    rows = numeric.values_at_points([gold_difference, pred_difference])
    if not rows or any(p == 0 or g == 0 for g, p in rows):
        return False
    ratios = [g / p for g, p in rows]
    if any(not numeric.close(ratio, ratios[0], RELATIVE_TOLERANCE) for ratio in ratios):
        return False
    ratio = ratios[0]
    if abs(numeric.mp.im(ratio)) > RELATIVE_TOLERANCE * abs(ratio):
        return False
    return numeric.mp.re(ratio) > 0 if gold_form[0] in ("<", "<=") else True


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
        return (
            _equal(relation.parts[-1], other)
            if relation is pred
            else _equal(other, relation.parts[-1])
        )
    if _collection(gold) or _collection(pred):
        if isinstance(gold, latex.Tuple) and isinstance(pred, latex.AnswerList):
            return _ordered_equal(gold.items, pred.items)  # (1, 3) vs {1,3}: braces only group
        if isinstance(pred, latex.Tuple) and isinstance(gold, latex.AnswerList):
            return _ordered_equal(gold.items, pred.items)
        if not (_collection(gold) and _collection(pred)):
            return False
        return _unordered_equal(gold.items, pred.items)
    if isinstance(gold, latex.Union) or isinstance(pred, latex.Union):
        gold_parts = gold.parts if isinstance(gold, latex.Union) else [gold]
        pred_parts = pred.parts if isinstance(pred, latex.Union) else [pred]
        return _unordered_equal(
            [_as_open_interval(p) for p in gold_parts], [_as_open_interval(p) for p in pred_parts]
        )
    if isinstance(gold, latex.Interval) or isinstance(pred, latex.Interval):
        gold, pred = _as_open_interval(gold), _as_open_interval(pred)
        if not (isinstance(gold, latex.Interval) and isinstance(pred, latex.Interval)):
            return False
        return (
            (gold.lo_closed, gold.hi_closed) == (pred.lo_closed, pred.hi_closed)
            and _equal(gold.lo, pred.lo)
            and _equal(gold.hi, pred.hi)
        )
    if isinstance(gold, latex.Tuple) or isinstance(pred, latex.Tuple):
        return (
            isinstance(gold, latex.Tuple)
            and isinstance(pred, latex.Tuple)
            and _ordered_equal(gold.items, pred.items)
        )
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
            continue  # cannot be parsed anyway; keeps every regex below bounded
        bare = _bare_number(candidate) if plain else None
        answer = bare if bare is not None else normalize_answer(candidate)
        if not answer:
            continue
        normalised.append(answer)
        if re.fullmatch(r"[A-Za-z]+(?:[\s'-][A-Za-z]+)*", answer) and re.search(
            r"[A-Za-z]{3}", answer
        ):
            return answer, None  # a word answer ("odd", "Evelyn") is compared as text
        try:
            return answer, _parse_answer(answer)
        except latex.LatexError:
            continue
    return (normalised[0] if normalised else None), None


def gold_can_score(gold) -> bool:
    """False for a gold answer that no response can ever match: longer than MAX_RESPONSE_CHARS, or
    with no candidate final answer of at most MAX_ANSWER_CHARS (verify skips longer ones). A gold
    with a long solution around a short boxed answer can score."""
    gold = str(gold)
    if len(gold) > MAX_RESPONSE_CHARS:
        return False
    return any(
        len(candidate) <= MAX_ANSWER_CHARS
        for candidate, _ in extract_answers(_prepare(gold), is_gold=True)
    )


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
    except Exception:  # sympy refusing something exotic: not equal, never a crash
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
    """1.0 if `verify(gold, response)`, else 0.0. No time limit here: reward.score_batch adds
    one."""
    return 1.0 if verify(gold, response) else 0.0
