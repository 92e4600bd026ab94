"""Synthetic-task verifiers (maze, countdown, arithmetic) and score_batch's dispatch, on hand-made
cases."""

import subprocess
import sys
from pathlib import Path

import pytest

import reward
import tasks

MAZE = "S.*\n.*.\n..E"  # S at (0, 0), E at (2, 2); the path is D D R R


def answer(moves):
    return f"<think>...</think><answer>{moves}</answer>"


# --------------------------------------------------------------------------------------------- maze


@pytest.mark.parametrize(
    "response, expected",
    [
        (answer("DDRR"), 1.0),  # valid path
        (answer("DRDR"), 0.0),  # D R enters the wall at (1, 1)
        (answer("R R"), 0.0),  # second R enters the wall at (0, 2)
        (answer("U"), 0.0),  # off the grid (row -1)
        (answer("L"), 0.0),  # off the grid (column -1)
        (answer("DDRRR"), 0.0),  # off the grid past E (column 3)
        (answer("DDR"), 0.0),  # stops short of E
        (answer(""), 0.0),  # empty walk stays on S
        (answer("DDRRLR"), 1.0),  # through E and back onto it
        (answer("DDRRU"), 0.0),  # through E, ends elsewhere
        (answer(" D\tD\nR  R "), 1.0),  # whitespace inside the tag is ignored
        (answer("D,D,R,R"), 0.0),  # any other character scores 0
        (answer("ddrr"), 0.0),  # lower case is another character
        (answer("DDRR."), 0.0),
        ("DDRR", 0.0),  # no tag: letters in free text never count
        ("the moves are D D R R", 0.0),
        ("<answer>DDRR", 0.0),  # incomplete tag
        ("DDRR</answer>", 0.0),
        (answer("UUU") + answer("DDRR"), 1.0),  # several tags: the last one counts
        (answer("DDRR") + answer("UUU"), 0.0),
        (answer("DDRR") + " <answer>UU", 1.0),  # the last *complete* tag
    ],
)
def test_maze_reward(response, expected):
    assert reward.maze_reward(response, MAZE) == expected


def test_maze_accepts_trailing_newline_and_is_linear_on_long_input():
    assert reward.maze_reward(answer("DDRR"), MAZE + "\n") == 1.0
    padding = "x" * 400_000  # long reasoning, tag at the end: still scored
    assert reward.maze_reward(padding + answer("DDRR"), MAZE) == 1.0
    assert reward.maze_reward(answer("LR" * 60_000 + "DDRR"), MAZE) == 0.0  # too many moves
    assert reward.maze_reward("x" * (reward.MAX_RESPONSE_CHARS + 1) + answer("DDRR"), MAZE) == 0.0


@pytest.mark.parametrize(
    "maze, message",
    [
        ("S.\n.", "row 1 has length 1"),
        ("S.\n.X", "'X'"),
        ("S.\nS.E", "length"),
        ("S.\nSE", "more than one S"),
        ("SE\n.E", "more than one E"),
        ("S.\n..", "no E"),
        (".E", "no S"),
        ("", "empty"),
    ],
)
def test_maze_malformed_grid_is_a_clear_error(maze, message):
    with pytest.raises(ValueError, match=message):
        reward.maze_reward(answer("R"), maze)


# ---------------------------------------------------------------------------------------- countdown

PROBLEM = {"numbers": [2, 3, 5], "target": 16}


@pytest.mark.parametrize(
    "expression, expected",
    [
        ("(3+5)*2", 1.0),
        ("2 * (5 + 3)", 1.0),
        (" ( 3 + 5 ) * 2 ", 1.0),
        ("3+5*2", 0.0),  # precedence: 13
        ("(3+5)*2*1", 0.0),  # 1 is not a given number
        ("(3+5)*2+2-2", 0.0),  # 2 used three times
        ("(3+5)+2", 0.0),  # wrong value
        ("8*2", 0.0),  # not the given numbers
        ("(3+5)*2=16", 0.0),  # only the expression
        ("(3+5)**2", 0.0),  # not an operator of the game
        ("-(3+5)*-2", 0.0),  # no unary minus
        ("(3+5)2", 0.0),  # no implicit multiplication
        ("((3+5)*2", 0.0),  # unbalanced
        ("(3+5)*2)", 0.0),
        ("", 0.0),
        ("__import__('os').system('true')", 0.0),
    ],
)
def test_countdown_reward(expression, expected):
    assert reward.countdown_reward(answer(expression), PROBLEM) == expected


def test_countdown_exact_division_and_multiset():
    assert reward.countdown_reward(answer("6/3*4"), {"numbers": [3, 4, 6], "target": 8}) == 1.0
    # exact Fractions
    assert reward.countdown_reward(answer("4/3*6"), {"numbers": [3, 4, 6], "target": 8}) == 1.0
    # 7/3, not 2
    assert reward.countdown_reward(answer("(6+1)/3"), {"numbers": [1, 3, 6], "target": 2}) == 0.0
    # division by zero
    assert reward.countdown_reward(answer("1/(5-5)"), {"numbers": [1, 5, 5], "target": 0}) == 0.0
    assert reward.countdown_reward(answer("2+2+3"), {"numbers": [2, 2, 3], "target": 7}) == 1.0
    assert reward.countdown_reward(answer("2+3+3"), {"numbers": [2, 2, 3], "target": 8}) == 0.0
    assert reward.countdown_reward("(3+5)*2", PROBLEM) == 0.0  # no tag


def test_countdown_bounds():
    deep = "(" * 100 + "3" + ")" * 100 + "+5*2"
    assert reward.countdown_reward(answer(deep), {"numbers": [2, 3, 5], "target": 13}) == 0.0
    shallow = "(" * 10 + "3" + ")" * 10 + "+5*2"
    assert reward.countdown_reward(answer(shallow), {"numbers": [2, 3, 5], "target": 13}) == 1.0
    assert (
        reward.countdown_reward(answer("1" * 200), {"numbers": [int("1" * 200)], "target": 1})
        == 0.0
    )
    with pytest.raises(ValueError, match="countdown problem"):
        reward.countdown_reward(answer("1"), {"nums": [1]})


# --------------------------------------------------------------------------------------- arithmetic


@pytest.mark.parametrize(
    "content, expected",
    [
        ("-12", 1.0),
        (" -12\n", 1.0),
        ("12", 0.0),
        ("-012", 1.0),
        ("-12.0", 0.0),
        ("- 12", 0.0),
        ("-1 2", 0.0),
        ("-12 apples", 0.0),
        ("", 0.0),
    ],
)
def test_arithmetic_reward(content, expected):
    assert reward.arithmetic_reward(answer(content), "-12") == expected


def test_arithmetic_policy_sign_and_zeros():
    assert reward.arithmetic_reward(answer("+7"), "7") == 1.0
    assert reward.arithmetic_reward(answer("0"), "-0") == 1.0
    assert reward.arithmetic_reward("7", "7") == 0.0  # no tag
    with pytest.raises(ValueError, match="integer"):
        reward.arithmetic_reward(answer("7"), "seven")


# ----------------------------------------------------------------------------------------- dispatch


def test_score_batch_dispatches_inline_tasks():
    assert reward.score_batch("maze", [answer("DDRR"), answer("U")], [MAZE, MAZE]) == [1.0, 0.0]
    assert reward.score_batch("countdown", [answer("(3+5)*2")], [PROBLEM]) == [1.0]
    assert reward.score_batch("arithmetic", [answer("4"), answer("5")], ["4", "4"]) == [1.0, 0.0]
    assert reward.score_batch("maze", [], []) == []


def test_score_batch_errors_name_the_problem():
    with pytest.raises(ValueError, match="known tasks: maze, countdown, arithmetic, math"):
        reward.score_batch("sudoku", [], [])
    with pytest.raises(ValueError, match="2 responses but 1 golds"):
        reward.score_batch("maze", ["a", "b"], [MAZE])
    with pytest.raises(ValueError, match="unknown verifier backend"):
        reward.score_batch("math", ["1"], ["1"], backend="wolfram")


def test_verifier_stats_count_answers():
    before = reward.verifier_stats()["scored"]
    reward.score_batch("maze", [answer("DDRR")] * 3, [MAZE] * 3)
    assert reward.verifier_stats()["scored"] == before + 3
    assert {"scored", "timeouts"} <= set(reward.verifier_stats())


def test_every_task_has_a_verifier_under_the_same_name():
    # a new task is one generator in tasks.TASKS and one verifier in reward.VERIFIERS, one name
    assert set(tasks.TASKS) == set(reward.VERIFIERS)
    assert reward.POOLED <= set(reward.VERIFIERS)


def test_importing_reward_does_not_import_torch():
    # The pool's workers are fresh interpreters that import pool.py and the verifier's module (for
    # math, math_answer.py); the trainer-free imports of reward.py are a superset of theirs.
    repo = Path(reward.__file__).resolve().parent
    code = "import sys; import reward; print('torch' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "False"


def test_check_golds_refuses_a_gold_that_no_response_can_match_and_keeps_a_long_solution():
    import math_answer

    # one formula of 1,201 characters, no shorter final answer inside
    unmatched = "$" + "1+" * 600 + "1$"
    # long, with a short box
    solution = "We add the numbers one by one. " * 50 + "So the answer is \\boxed{5}."
    responses = [unmatched, f"\\boxed{{{unmatched[1:-1]}}}", "\\boxed{601}", "\\boxed{1}", "1"]
    # the reference: nothing scores on it
    assert not any(math_answer.verify(unmatched, r) for r in responses)
    assert math_answer.verify(solution, "\\boxed{5}")
    assert not math_answer.gold_can_score(unmatched) and math_answer.gold_can_score(solution)
    problems = [
        tasks.Problem("p", solution, origin="data.jsonl:1"),
        tasks.Problem("q", unmatched, origin="data.jsonl:2"),
    ]
    with pytest.raises(
        ValueError, match=r"data.jsonl:2: the gold answer \(1,203 characters.*can never score"
    ):
        reward.check_golds(problems, workers=0)
    reward.check_golds(problems[:1], workers=0)
