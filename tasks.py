"""Tasks: problem generators with verifiable answers, and held-out splits.

A task hands out `Problem`s: the prompt the policy sees, the gold its verifier
(reward.py) compares against, and, where one is known, a correct demonstration for
the supervised warm start. Built in (nothing downloaded):

- maze (the paper's Maze task): a text grid, `S` start, `E` end, `*` wall, `.` free;
  the answer is a string of moves `L R U D` inside `<answer>...</answer>`. Grids are
  carved as spanning trees (one path between any two cells) and then opened at random
  walls (`loop_frac`) so that several paths exist; size and loops set the difficulty.
  Demonstrations are shortest paths from a BFS, a random one among the shortest.
- countdown: reach a target with + - * / using each given number once.
- arithmetic: evaluate a short integer expression.

Train and held-out problems come from disjoint seed streams, and the training
stream skips any problem whose prompt is in the held-out set, so a test maze is
never a training maze. Every problem is a pure function of (seed, stream, index):
a run that resumes, or runs on several ranks, sees the same problems.

- math (`MathTask`): problems from local JSONL or Parquet files with a prompt and an answer
  field (names configurable), put into a GSM8K-style or MATH-style prompt that asks for the
  final answer in `\\boxed{}`; the verifier is reward.math_reward. No demonstrations: a math
  run starts from a pretrained model (sft.steps: 0). A GSM8K answer ("... #### 72") keeps the
  part after `####`. data/math_sample.jsonl is a small sample for tests and a first try.

`TASKS` (at the end) is the registry config.py builds a task from, by `task.name`; each name has
its verifier in reward.VERIFIERS.
"""

import decimal
import json
import math
import os
import random
from collections import deque
from dataclasses import dataclass
from fractions import Fraction

MOVES = {"L": (0, -1), "R": (0, 1), "U": (-1, 0), "D": (1, 0)}


@dataclass
class Problem:
    prompt: str  # the text the policy continues
    gold: object  # what the task's verifier compares against (reward.py)
    demo: str = None  # a correct response for the warm start, when one is known
    origin: str = ""  # where a problem from a file came from ("train.jsonl:12"), for messages


# ----------------------------------------------------------------------------- maze


def generate_maze(rng: random.Random, height: int, width: int, loop_frac: float) -> str:
    """A height x width grid (odd sizes): cells sit at even (row, col), passages between them.

    Carved by a randomised depth-first search (a spanning tree: exactly one path between
    two cells), then each remaining wall between two cells is opened with probability
    `loop_frac`, which creates loops and hence several paths. S and E are two distinct cells.
    """
    if height % 2 == 0 or width % 2 == 0 or min(height, width) < 3:
        raise ValueError(f"maze sizes must be odd and >= 3, got {height}x{width}")
    grid = [["*"] * width for _ in range(height)]
    cells = [(r, c) for r in range(0, height, 2) for c in range(0, width, 2)]
    start = rng.choice(cells)
    grid[start[0]][start[1]] = "."
    stack = [start]
    while stack:
        r, c = stack[-1]
        unvisited = [
            (r + 2 * dr, c + 2 * dc)
            for dr, dc in MOVES.values()
            if 0 <= r + 2 * dr < height
            and 0 <= c + 2 * dc < width
            and grid[r + 2 * dr][c + 2 * dc] == "*"
        ]
        if not unvisited:
            stack.pop()
            continue
        nr, nc = rng.choice(unvisited)
        grid[(r + nr) // 2][(c + nc) // 2] = "."
        grid[nr][nc] = "."
        stack.append((nr, nc))
    # Walls between two cells sit at (even, odd) or (odd, even); open some to create loops.
    for r in range(height):
        for c in range(width):
            if (r + c) % 2 == 1 and grid[r][c] == "*" and rng.random() < loop_frac:
                grid[r][c] = "."
    s, e = rng.sample(cells, 2)
    grid[s[0]][s[1]] = "S"
    grid[e[0]][e[1]] = "E"
    return "\n".join("".join(row) for row in grid)


def solve_maze(grid: str, rng: random.Random = None) -> str:
    """A shortest S -> E path as moves, by BFS from E; `rng` picks among equally short paths."""
    rows = grid.split("\n")
    find = lambda ch: next((r, row.index(ch)) for r, row in enumerate(rows) if ch in row)
    start, end = find("S"), find("E")
    distance = {end: 0}
    queue = deque([end])
    while queue:
        r, c = queue.popleft()
        for dr, dc in MOVES.values():
            nr, nc = r + dr, c + dc
            if (
                0 <= nr < len(rows)
                and 0 <= nc < len(rows[nr])
                and rows[nr][nc] != "*"
                and (nr, nc) not in distance
            ):
                distance[(nr, nc)] = distance[(r, c)] + 1
                queue.append((nr, nc))
    if start not in distance:
        raise ValueError("maze has no path from S to E")
    moves, (r, c) = [], start
    while (r, c) != end:
        options = [
            m
            for m, (dr, dc) in MOVES.items()
            if distance.get((r + dr, c + dc)) == distance[(r, c)] - 1
        ]
        move = rng.choice(options) if rng else options[0]
        moves.append(move)
        r, c = r + MOVES[move][0], c + MOVES[move][1]
    return "".join(moves)


def maze_prompt(grid: str) -> str:
    return grid + "\n"


# the answer format of the built-in tasks (reward.py reads it)
ANSWER_OPEN, ANSWER_CLOSE = "<answer>", "</answer>"


def answer_tag(text: str) -> str:
    return f"{ANSWER_OPEN}{text}{ANSWER_CLOSE}"


# ---------------------------------------------------------------------------- other synthetic tasks


# draws before a countdown setting is refused: the defaults need a few a problem; a setting whose
# draws give a target 1 time in 10^4 would be refused once in e^10 problems
COUNTDOWN_DRAWS = 100_000


def generate_countdown(rng: random.Random, n_numbers: int, max_number: int) -> tuple[dict, str]:
    """Numbers and a target reachable by combining every number once; returns (problem,
    expression). Settings that almost never give a target in 1..1000 are refused, not looped on."""
    for _ in range(COUNTDOWN_DRAWS):
        numbers = [rng.randint(1, max_number) for _ in range(n_numbers)]
        terms = [(Fraction(x), str(x)) for x in numbers]
        while len(terms) > 1:
            (a, ea), (b, eb) = (
                terms.pop(rng.randrange(len(terms))),
                terms.pop(rng.randrange(len(terms))),
            )
            op = rng.choice("+-*/")
            if op == "/" and b == 0:
                op = "+"
            value = {"+": a + b, "-": a - b, "*": a * b, "/": a / b if b else None}[op]
            terms.append((value, f"({ea}{op}{eb})"))
        value, expression = terms[0]
        if value.denominator == 1 and 0 < value <= 1000:
            return {"numbers": numbers, "target": int(value)}, expression[
                1:-1
            ] if n_numbers > 1 else expression
    raise ValueError(
        f"countdown: no target in 1..1000 in {COUNTDOWN_DRAWS} draws (task.n_numbers "
        f"{n_numbers}, task.max_number {max_number}): lower task.max_number"
    )


def generate_arithmetic(rng: random.Random, n_terms: int, max_number: int) -> tuple[str, str]:
    """An integer expression with + - * and its value; returns (expression, value)."""
    expression = str(rng.randint(0, max_number))
    for _ in range(n_terms - 1):
        expression += rng.choice("+-*") + str(rng.randint(0, max_number))
    value = _evaluate_integer_expression(expression)
    return expression, str(value)


def _evaluate_integer_expression(expression: str) -> int:
    """Our own generator's expressions only (digits and + - *, no parentheses): products first."""
    total, sign, product, number = 0, 1, 1, ""
    for ch in expression + "+":
        if ch.isdigit():
            number += ch
            continue
        product *= int(number)
        number = ""
        if ch == "*":
            continue
        total += sign * product
        sign, product = (1 if ch == "+" else -1), 1
    return total


# ----------------------------------------------------------------------------- tasks

# a task too small for the held-out set asked of it fails with a message, never loops forever
MAX_REDRAWS = 1000


class SyntheticTask:
    """Problems of one generator, with a held-out set and a training stream that never meets it.

    `make(rng)` returns one Problem. Held-out problems use the stream "heldout", training
    problems "train"; the seeds of the two streams never coincide (different prefixes).
    """

    def __init__(self, name: str, make, seed: int, n_heldout: int):
        self.name, self.make, self.seed = name, make, seed
        self.heldout = self.problems("heldout", n_heldout)
        self.heldout_prompts = {p.prompt for p in self.heldout}

    def problem(self, stream: str, index: int) -> Problem:
        attempt = 0
        while True:  # redraw a training problem that happens to be a held-out one
            rng = random.Random(f"{self.name}/{self.seed}/{stream}/{index}/{attempt}")
            problem = self.make(rng)
            if stream == "heldout" or problem.prompt not in self.heldout_prompts:
                return problem
            attempt += 1
            if attempt == MAX_REDRAWS:
                raise ValueError(
                    f"{self.name}: {MAX_REDRAWS} draws in a row were held-out problems; the "
                    "held-out "
                    f"set covers (nearly) every problem: lower task.n_heldout or widen the task"
                )

    def problems(self, stream: str, count: int, start: int = 0) -> list[Problem]:
        """`count` distinct problems (de-duplicated by prompt) from index `start` of a stream."""
        seen, out, index = set(), [], start
        while len(out) < count:
            if index - start >= MAX_REDRAWS + 20 * count:
                raise ValueError(
                    f"{self.name}: only {len(out)} distinct problems in {index - start} draws, "
                    f"{count} asked for: lower task.n_heldout or widen the task (sizes, numbers)"
                )
            problem = self.problem(stream, index)
            index += 1
            if problem.prompt not in seen:
                seen.add(problem.prompt)
                out.append(problem)
        return out

    def train_batch(self, stream: str, step: int, batch_size: int) -> list[Problem]:
        """The `batch_size` training problems of one step: indices [step*B, (step+1)*B) of a
        stream."""
        return [self.problem(f"train/{stream}", step * batch_size + i) for i in range(batch_size)]


def maze_maker(min_size: int, max_size: int, loop_frac: float):
    odd_sizes = [n for n in range(min_size, max_size + 1) if n % 2 == 1]
    if not odd_sizes:
        raise ValueError(f"task.min_size..max_size ({min_size}..{max_size}) holds no odd size")

    def make(rng):
        size = rng.choice(odd_sizes)
        grid = generate_maze(rng, size, size, loop_frac)
        return Problem(maze_prompt(grid), grid, answer_tag(solve_maze(grid, rng)))

    return make


def countdown_maker(n_numbers: int, max_number: int):
    def make(rng):
        problem, expression = generate_countdown(rng, n_numbers, max_number)
        prompt = f"numbers: {' '.join(map(str, problem['numbers']))}\ntarget: {problem['target']}\n"
        return Problem(prompt, problem, answer_tag(expression))

    return make


def arithmetic_maker(n_terms: int, max_number: int):
    def make(rng):
        expression, value = generate_arithmetic(rng, n_terms, max_number)
        return Problem(f"{expression}=\n", value, answer_tag(value))

    return make


# ----------------------------------------------------------------------------- math datasets

MATH_TEMPLATES = {
    # GSM8K-style: a word problem with a number for an answer
    "gsm8k": "{problem}\nSolve the problem step by step. Put the final number in \\boxed{{}}.",
    # MATH-style: competition problems whose answers are expressions, sets, intervals...
    "math": "{problem}\nPlease reason step by step, and put your final answer within \\boxed{{}}.",
    # the file's prompts as they are (they already say how to answer)
    "plain": "{problem}",
}


def read_records(path: str) -> list[tuple[int, dict]]:
    """(line or row number, record) pairs from a .jsonl or .parquet file; a bad line names file and
    line."""
    if not os.path.isfile(path):
        raise ValueError(f"math data file not found: {path}")
    if path.endswith(".parquet"):
        import pyarrow.parquet

        return list(enumerate(pyarrow.parquet.read_table(path).to_pylist(), start=1))
    records = []
    with open(path, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise ValueError(
                    f"{path}:{number}: not UTF-8 text (byte {raw[err.start]:#04x} at column "
                    f"{err.start + 1})"
                ) from None
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{number}: not valid JSON ({err.msg})") from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{path}:{number}: expected a JSON object with fields, got "
                    f"{type(record).__name__}"
                )
            records.append((number, record))
    return records


# math_answer.MAX_RESPONSE_CHARS (not imported: it brings sympy): a longer gold answer never scores
MAX_GOLD_CHARS = 500_000


def load_math_problems(
    path: str, template: str = "math", prompt_field: str = "prompt", answer_field: str = "answer"
) -> list[Problem]:
    """Problems of one file: the prompt put into MATH_TEMPLATES[template], the gold answer as
    text."""
    if template not in MATH_TEMPLATES:
        raise ValueError(f"unknown math template {template!r}; known: {', '.join(MATH_TEMPLATES)}")
    problems, first_line = [], {}  # first_line: prompt -> (line, gold) where it first came
    for number, record in read_records(path):
        for field_name, option in (
            (prompt_field, "task.prompt_field"),
            (answer_field, "task.answer_field"),
        ):
            if field_name not in record:
                raise ValueError(
                    f"{path}:{number}: no field '{field_name}' (fields: "
                    f"{', '.join(record) or 'none'}; set {option} to use another)"
                )
        problem, answer = record[prompt_field], record[answer_field]
        if not isinstance(problem, str) or not problem.strip():
            raise ValueError(
                f"{path}:{number}: '{prompt_field}' must be non-empty text, got "
                f"{type(problem).__name__}"
            )
        if (
            isinstance(answer, bool)
            or not isinstance(answer, (str, int, float))
            or not str(answer).strip()
        ):
            raise ValueError(
                f"{path}:{number}: '{answer_field}' must be non-empty text or a number, got "
                f"{json.dumps(answer)[:40]}"
            )
        if isinstance(answer, float) and not math.isfinite(answer):
            raise ValueError(f"{path}:{number}: '{answer_field}' is {answer}, not a number a "
                             "response could match")  # fmt: skip
        gold = answer_text(answer).split("####")[-1].strip()  # GSM8K's "reasoning #### 72"
        if len(gold) > MAX_GOLD_CHARS:
            raise ValueError(
                f"{path}:{number}: the gold answer is {len(gold):,} characters; the verifier never "
                f"matches one over {MAX_GOLD_CHARS:,}, so no response could score on it"
            )
        prompt = MATH_TEMPLATES[template].format(problem=problem.strip())
        line, earlier_gold = first_line.setdefault(prompt, (number, gold))
        if earlier_gold != gold:
            raise ValueError(f"{path}:{number}: the problem of line {line} again, with another "
                             f"answer ({gold[:40]!r}, not {earlier_gold[:40]!r})")  # fmt: skip
        problems.append(Problem(prompt, gold, origin=f"{path}:{number}"))
    if not problems:
        raise ValueError(f"{path} holds no problems")
    return problems


def answer_text(answer) -> str:
    """A gold answer as text; a number written out in full (JSON's 1e20 is 100000000000000000000,
    which the verifier matches, where Python's str gives 1e+20)."""
    if isinstance(answer, float):
        return format(decimal.Decimal(repr(answer)), "f")
    return str(answer)


class MathTask:
    """Math problems from files, with the interface of SyntheticTask (name, heldout, train_batch).

    Held out: the test file's first n_heldout problems, or, without a test file, n_heldout problems
    drawn from the training file by the run seed. Training never sees a held-out prompt. Training
    batches walk through the remaining problems in epochs, each epoch in its own shuffled order,
    so a batch is a pure function of (seed, stream, step).
    """

    name = "math"

    def __init__(
        self,
        train_file: str,
        test_file: str = "",
        *,
        seed: int = 0,
        n_heldout: int = 256,
        template: str = "math",
        prompt_field: str = "prompt",
        answer_field: str = "answer",
    ):
        load = lambda path: load_math_problems(path, template, prompt_field, answer_field)
        problems = load(train_file)
        if test_file:
            self.heldout = load(test_file)[:n_heldout]
            if len(self.heldout) < n_heldout:
                raise ValueError(f"{test_file} has {len(self.heldout)} problems, fewer than "
                                 f"task.n_heldout={n_heldout}: lower task.n_heldout (and "
                                 "eval.n_problems) to at most that")  # fmt: skip
        else:
            if n_heldout >= len(problems):
                raise ValueError(
                    f"{train_file} has {len(problems)} problems: too few to hold out "
                    f"task.n_heldout={n_heldout} and train on the rest (give task.test_file)"
                )
            order = list(range(len(problems)))
            random.Random(f"math/{seed}/heldout").shuffle(order)
            self.heldout = [problems[i] for i in sorted(order[:n_heldout])]
        self.heldout_prompts = {p.prompt for p in self.heldout}
        self.train = [p for p in problems if p.prompt not in self.heldout_prompts]
        if not self.train:
            raise ValueError(
                f"{train_file}: every problem is also a held-out one; nothing left to train on"
            )
        self.seed = seed
        self._orders = {}

    def _epoch_order(self, stream: str, epoch: int) -> list[int]:
        key = (stream, epoch)
        if key not in self._orders:
            order = list(range(len(self.train)))
            random.Random(f"math/{self.seed}/{stream}/{epoch}").shuffle(order)
            self._orders = {key: order}  # one epoch at a time is all a run needs
        return self._orders[key]

    def train_batch(self, stream: str, step: int, batch_size: int) -> list[Problem]:
        """Problems [step*B, (step+1)*B) of the stream's sequence of shuffled epochs."""
        batch = []
        for index in range(step * batch_size, (step + 1) * batch_size):
            epoch, position = divmod(index, len(self.train))
            batch.append(self.train[self._epoch_order(stream, epoch)[position]])
        return batch


# ----------------------------------------------------------------------------- the registry


def maze_task(t) -> "SyntheticTask":
    """t: the config's task section (config.TaskConfig)."""
    return SyntheticTask(
        "maze", maze_maker(t.min_size, t.max_size, t.loop_frac), t.seed, t.n_heldout
    )


def countdown_task(t) -> "SyntheticTask":
    return SyntheticTask(
        "countdown", countdown_maker(t.n_numbers, t.max_number), t.seed, t.n_heldout
    )


def arithmetic_task(t) -> "SyntheticTask":
    return SyntheticTask(
        "arithmetic", arithmetic_maker(t.n_numbers, t.max_number), t.seed, t.n_heldout
    )


def math_task(t) -> "MathTask":
    return MathTask(t.train_file, t.test_file, seed=t.seed, n_heldout=t.n_heldout,
                    template=t.template, prompt_field=t.prompt_field,
                    answer_field=t.answer_field)  # fmt: skip


# task name -> a function of the config's task section that builds the task. A new task is one entry
# here and its verifier in reward.VERIFIERS under the same name (tests/test_reward.py checks both).
TASKS = {
    "maze": maze_task,
    "countdown": countdown_task,
    "arithmetic": arithmetic_task,
    "math": math_task,
}
