"""Rewards: what a response earns. RLVR's rewards are verifiable: a program checks the answer and
returns 1.0 (correct) or 0.0 (wrong), nothing in between (docs/paper.md, "Setting").

score_batch(task, responses, golds) -> [0.0 / 1.0, ...]      what train.py and eval.py call

A verifier takes `(response, gold)`, in that order, and returns a float in bounded time; the
policy's output is hostile input and is never evaluated as code. `VERIFIERS` names one per task,
under the same names as tasks.TASKS (a new task is one generator there and one verifier here):
- maze: do the moves in the last <answer>...</answer> walk from S to E (the paper's Maze task)?
- countdown: is the last answer an expression over + - * / that uses each given number exactly once
  and equals the target (exact Fractions, our own parser)?
- arithmetic: is the last answer the gold integer?
- math: math_answer.math_reward, the final answer compared as mathematics (math_answer.py,
  latex.py).
The first three are linear in the response and scored inline. Math is not bounded by construction
(sympy on a tower of powers), so score_batch runs it in pool.py's worker processes, each answer
under a time limit and each worker under a memory limit; a time-out scores 0.
`verifier_stats()` counts answers and time-outs for the logs.

Left out: partial credit and format rewards (the paper uses 0/1 rewards only), reward models."""

import re
import time
from fractions import Fraction
from functools import lru_cache

import math_answer
import pool
from tasks import ANSWER_CLOSE, ANSWER_OPEN, MOVES

# Bounds. Model text is untrusted: every loop below is linear in these, every recursion bounded.
# a longer response scores 0: no generation is that long
MAX_RESPONSE_CHARS = math_answer.MAX_RESPONSE_CHARS
MAX_MOVES_CHARS = 100_000  # maze: longer move strings score 0
MAX_EXPRESSION_CHARS = 1_000  # countdown expression
MAX_EXPRESSION_DEPTH = 64  # countdown parentheses
MAX_INTEGER_DIGITS = 100  # arithmetic / countdown literals


def last_answer_tag(response):
    """Content of the last complete <answer>...</answer> (tasks.answer_tag) in `response`, or None
    (linear time)."""
    if len(response) > MAX_RESPONSE_CHARS:
        return None
    end = response.rfind(ANSWER_CLOSE)
    if end < 0:
        return None
    start = response.rfind(ANSWER_OPEN, 0, end)
    if start < 0:
        return None
    return response[start + len(ANSWER_OPEN) : end]


# ----------------------------------------------------------------------------------------------
# Maze (paper Sec. 5, the Maze task): S start, E end, * wall, . free; moves L R U D.


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
        step = MOVES.get(move)
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
        raise ValueError(
            f"countdown problem must be {{'numbers': [...], 'target': int}}, got {problem!r}"
        ) from error
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
# The registry and the entry point.


def math_verify_reward(response, gold):
    """math with Hugging Face's Math-Verify instead of our policy (`reward.backend:
    math_verify`)."""
    import math_verify

    return (
        1.0
        if math_verify.verify(math_verify.parse(str(gold)), math_verify.parse(str(response)))
        else 0.0
    )


VERIFIERS = {
    "maze": maze_reward,
    "countdown": countdown_reward,
    "arithmetic": arithmetic_reward,
    "math": math_answer.math_reward,
}
POOLED = {"math"}  # verifiers whose cost model text can make unbounded: scored in pool.py's workers
MATH_BACKENDS = {"sympy": math_answer.math_reward, "math_verify": math_verify_reward}
_counts = {"scored": 0, "math_seconds": 0.0}


def verifier_stats():
    """Cumulative counts since import: answers scored, seconds spent on math, the pool's time-outs
    and crashes."""
    return {**_counts, **pool.stats()}


def score_batch(
    task,
    responses,
    golds,
    *,
    backend="sympy",
    timeout_s=pool.DEFAULT_TIMEOUT_S,
    workers=pool.DEFAULT_WORKERS,
    memory_mb=pool.DEFAULT_MEMORY_MB,
):
    """Rewards (0.0 / 1.0) of `responses` against `golds`, in order.

    maze, countdown and arithmetic are bounded and scored inline. math is scored in the worker
    pool, each answer within `timeout_s` (a time-out scores 0); workers=0 scores math inline,
    without a time limit (for debugging and as the benchmark's baseline).
    """
    if task not in VERIFIERS:
        raise ValueError(f"unknown task {task!r}; known tasks: {', '.join(VERIFIERS)}")
    if len(responses) != len(golds):
        raise ValueError(f"{len(responses)} responses but {len(golds)} golds")
    if task not in POOLED:
        scores = [VERIFIERS[task](response, gold) for response, gold in zip(responses, golds)]
        _counts["scored"] += len(scores)
        return scores
    verifier = math_verifier(backend)
    if timeout_s <= 0 or workers < 0:
        raise ValueError(
            f"timeout_s must be positive and workers >= 0, got {timeout_s} and {workers}"
        )
    started = time.monotonic()
    golds, responses = [str(g) for g in golds], [str(r) for r in responses]
    scores = [0.0] * len(responses)  # over-long texts score 0 without a round trip to the pool
    fits = [
        i
        for i in range(len(responses))
        if len(responses[i]) <= MAX_RESPONSE_CHARS and len(golds[i]) <= MAX_RESPONSE_CHARS
    ]
    if workers == 0 or not responses:
        fitted = [verifier(responses[i], golds[i]) for i in fits]
    else:
        fitted = pool.score(
            verifier,
            [responses[i] for i in fits],
            [golds[i] for i in fits],
            timeout_s=timeout_s,
            workers=workers,
            memory_mb=memory_mb,
        )
    for i, value in zip(fits, fitted):
        scores[i] = value
    _counts["scored"] += len(scores)
    _counts["math_seconds"] += time.monotonic() - started
    return scores


def check_golds(
    problems,
    *,
    backend="sympy",
    timeout_s=pool.DEFAULT_TIMEOUT_S,
    workers=pool.DEFAULT_WORKERS,
    memory_mb=pool.DEFAULT_MEMORY_MB,
):
    """Refuse, naming its file and line, a math problem whose gold answer cannot be verified against
    itself within the time limit: it would cost every one of its N responses that limit, every time
    it is drawn; and (the sympy backend) one that no response can ever match
    (math_answer.gold_can_score: far too long)."""
    distinct = {}
    for problem in problems:
        distinct.setdefault(str(problem.gold), problem)
    for gold, problem in distinct.items() if backend == "sympy" else ():
        if not math_answer.gold_can_score(gold):
            raise ValueError(
                f"{problem.origin or 'a problem'}: the gold answer ({len(gold):,} characters, "
                f"{gold[:20]!r}...) can never score: the verifier matches final answers of at most "
                f"{math_answer.MAX_ANSWER_CHARS:,} characters; fix it or leave it out"
            )
    if not workers:
        return
    golds = list(distinct)
    verdicts = pool.score(
        math_verifier(backend),
        golds,
        golds,
        timeout_s=timeout_s,
        workers=workers,
        memory_mb=memory_mb,
        failed_score=float("nan"),
    )
    for gold, verdict in zip(golds, verdicts):
        if verdict != verdict:  # nan: it timed out (or crashed its worker)
            raise ValueError(
                f"{distinct[gold].origin or 'a problem'}: the gold answer {gold[:40]!r} takes more "
                "than "
                f"reward.timeout_s={timeout_s} s to verify against itself: fix it or leave it out"
            )


def math_verifier(backend: str):
    """The math verifier of `reward.backend`: sympy (ours, math_answer.py) or math_verify (Hugging
    Face's)."""
    if backend not in MATH_BACKENDS:
        raise ValueError(
            f"unknown verifier backend {backend!r}; known: {', '.join(map(repr, MATH_BACKENDS))}"
        )
    if backend == "math_verify":
        try:
            import math_verify  # noqa: F401
        except ImportError:
            raise ImportError(
                "backend='math_verify' needs Hugging Face's Math-Verify: pip install math-verify"
            ) from None
    return MATH_BACKENDS[backend]
