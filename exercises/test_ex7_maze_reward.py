"""Grader for exercise 7, maze_reward: hand-made cases for every way to fail (walls, edges, not
ending on E, stray characters, the last answer tag), and random walks on generated mazes against a
plain walker."""

import random

import pytest

from grading import call, expect_float
from tasks import generate_maze, solve_maze

EXERCISE = "maze_reward"

MAZE = "S.*\n.*E\n..."
#   S . *        S at (row 0, col 0), E at (1, 2); the only way: D D R R U
#   . * E
#   . . .


@pytest.mark.parametrize(
    "response, expected, why",
    [
        ("<answer>DDRRU</answer>", 1.0, "the path D D R R U ends on E"),
        ("I think <answer>DDRRU</answer>", 1.0, "text before the tag does not matter"),
        ("<answer>DD RR\nU</answer>", 1.0, "spaces and newlines between moves are ignored"),
        ("<answer>RR</answer>", 0.0, "the second R enters the wall at (0, 2)"),
        (
            "<answer>RDR</answer>",
            0.0,
            "D from (0, 1) enters the wall at (1, 1), even though R then reaches E",
        ),
        ("<answer>DD</answer>", 0.0, "the walk ends at (2, 0), not on E"),
        ("<answer></answer>", 0.0, "no move: the walk ends on S"),
        ("<answer>DDRRUD</answer>", 0.0, "the walk passes E and ends at (2, 2): it must END on E"),
        (
            "<answer>UDDDRRU</answer>",
            0.0,
            "U from row 0 leaves the grid, even if D comes straight back",
        ),
        ("<answer>DDRRRU</answer>", 0.0, "the third R leaves the grid on the right"),
        ("<answer>DDxRRU</answer>", 0.0, "'x' is not a move: the answer is refused, not skipped"),
        ("<answer>ddrru</answer>", 0.0, "moves are the capitals L R U D"),
        ("DDRRU", 0.0, "no <answer> tag"),
        ("<answer>DDRRU", 0.0, "no closing </answer>"),
        ("<answer>RR</answer> no, <answer>DDRRU</answer>", 1.0, "the LAST answer counts"),
        ("<answer>DDRRU</answer> or <answer>RR</answer>", 0.0, "the LAST answer counts"),
    ],
)
def test_hand_made_cases(impl, response, expected, why):
    got = call(impl.maze_reward, response, MAZE)
    expect_float(got, expected, f"maze_reward({response!r}, maze {MAZE!r})", hint=why)


def indented(maze):
    return "\n".join("    " + row for row in maze.split("\n"))


def plain_walk(moves, maze):
    """The rules, written as plainly as possible."""
    rows = maze.split("\n")
    where = {ch: (r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch in "SE"}
    row, col = where["S"]
    for move in moves:
        if move in " \n":
            continue
        if move not in "LRUD":
            return 0.0
        row += {"U": -1, "D": 1}.get(move, 0)
        col += {"L": -1, "R": 1}.get(move, 0)
        if not (0 <= row < len(rows) and 0 <= col < len(rows[0])) or rows[row][col] == "*":
            return 0.0
    return 1.0 if (row, col) == where["E"] else 0.0


def test_shortest_paths_of_generated_mazes_score_1(impl):
    for seed in range(30):
        rng = random.Random(seed)
        size = rng.choice([5, 7, 9])
        maze = generate_maze(rng, size, size, 0.1)
        path = solve_maze(maze)
        expect_float(
            call(impl.maze_reward, f"<answer>{path}</answer>", maze),
            1.0,
            f"maze_reward('<answer>{path}</answer>', maze), a shortest path, on the maze\n"
            + indented(maze),
        )


def test_random_walks_against_a_plain_walker(impl):
    rng = random.Random(0)
    for trial in range(300):
        size = rng.choice([5, 7])
        maze = generate_maze(rng, size, size, 0.2)
        path = solve_maze(maze)
        # the shortest path, bent at random: a move dropped, swapped, added, or a stray character
        moves = list(path)
        for _ in range(rng.randint(0, 2)):
            position = rng.randrange(len(moves) + 1)
            moves.insert(position, rng.choice("LRUDLRUD x"))
        if moves and rng.random() < 0.5:
            moves.pop(rng.randrange(len(moves)))
        moves = "".join(moves)
        response = f"<answer>{moves}</answer>"
        expect_float(
            call(impl.maze_reward, response, maze),
            plain_walk(moves, maze),
            f"maze_reward({response!r}, maze) on the maze\n" + indented(maze),
        )
