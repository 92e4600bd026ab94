"""Task generators: demonstrations are correct and shortest, splits never overlap, difficulty knobs
work."""

import random
from collections import deque

import pytest

import reward
import tasks
from tokenizer import CharTokenizer


def shortest_distance(grid: str) -> int:
    """An independent flood fill: the number of moves on a shortest S -> E path."""
    rows = grid.split("\n")
    cells = {(r, c): ch for r, row in enumerate(rows) for c, ch in enumerate(row)}
    start = next(p for p, ch in cells.items() if ch == "S")
    seen, frontier, distance = {start}, deque([(start, 0)]), None
    while frontier:
        (r, c), d = frontier.popleft()
        if cells[(r, c)] == "E":
            return d
        for nxt in ((r + 1, c), (r - 1, c), (r, c + 1), (r, c - 1)):
            if cells.get(nxt, "*") != "*" and nxt not in seen:
                seen.add(nxt)
                frontier.append((nxt, d + 1))
    return distance


def test_bfs_demonstrations_score_one_and_are_shortest():
    task = tasks.SyntheticTask("maze", tasks.maze_maker(5, 13, 0.15), seed=3, n_heldout=200)
    for problem in task.heldout:
        assert reward.maze_reward(problem.demo, problem.gold) == 1.0
        moves = problem.demo[len("<answer>") : -len("</answer>")]
        assert len(moves) == shortest_distance(problem.gold)


def test_random_tie_breaking_gives_different_shortest_paths():
    grid = "S....\n.....\n....E"
    paths = {tasks.solve_maze(grid, random.Random(seed)) for seed in range(50)}
    assert len(paths) > 5 and all(len(p) == 6 for p in paths)
    assert all(reward.maze_reward(tasks.answer_tag(p), grid) == 1.0 for p in paths)


def test_heldout_problems_never_appear_in_training():
    # tiny mazes collide often
    task = tasks.SyntheticTask("maze", tasks.maze_maker(3, 5, 0.3), seed=0, n_heldout=300)
    heldout = {p.prompt for p in task.heldout}
    assert len(heldout) == 300  # de-duplicated
    train = [p.prompt for step in range(40) for p in task.train_batch("rl", step, 50)]
    assert not heldout & set(train)
    # a pure function of (seed, step)
    assert task.train_batch("rl", 3, 50) == task.train_batch("rl", 3, 50)
    assert task.train_batch("rl", 3, 50) != task.train_batch("sft", 3, 50)


def test_loops_create_several_paths():
    def n_edges(grid):
        rows = grid.split("\n")
        free = {(r, c) for r, row in enumerate(rows) for c, ch in enumerate(row) if ch != "*"}
        return len(free), sum((r + 1, c) in free for r, c in free) + sum(
            (r, c + 1) in free for r, c in free
        )

    rng = random.Random(0)
    for _ in range(20):
        cells, edges = n_edges(tasks.generate_maze(rng, 9, 11, loop_frac=0.0))
        assert edges == cells - 1  # a spanning tree: exactly one path between two cells
    cells, edges = n_edges(tasks.generate_maze(rng, 9, 11, loop_frac=0.5))
    assert edges > cells - 1


def test_maze_format_and_size_errors():
    grid = tasks.generate_maze(random.Random(1), 7, 9, 0.1)
    rows = grid.split("\n")
    assert len(rows) == 7 and all(len(r) == 9 for r in rows)
    assert set(grid) <= set("SE*.\n") and grid.count("S") == 1 and grid.count("E") == 1
    with pytest.raises(ValueError, match="odd"):
        tasks.generate_maze(random.Random(1), 8, 8, 0.1)
    with pytest.raises(ValueError, match="odd size"):
        tasks.maze_maker(6, 6, 0.1)


def test_other_synthetic_tasks_have_correct_demonstrations():
    countdown = tasks.SyntheticTask("countdown", tasks.countdown_maker(4, 20), seed=0, n_heldout=50)
    arithmetic = tasks.SyntheticTask(
        "arithmetic", tasks.arithmetic_maker(3, 99), seed=0, n_heldout=50
    )
    for problem in countdown.heldout:
        assert reward.countdown_reward(problem.demo, problem.gold) == 1.0
    for problem in arithmetic.heldout:
        assert reward.arithmetic_reward(problem.demo, problem.gold) == 1.0


def test_tokenizer_round_trip_and_errors():
    tokenizer = CharTokenizer()
    text = tasks.generate_maze(random.Random(0), 5, 5, 0.0) + "\n<answer>LRUD</answer> (3+4)*5=35"
    ids = tokenizer.encode_prompt(text)
    assert ids[0] == tokenizer.bos_id and tokenizer.decode(ids) == text
    assert (
        tokenizer.decode(tokenizer.encode("ab") + tokenizer.eos_ids + tokenizer.encode("cd"))
        == "ab"
    )
    assert max(ids) < tokenizer.vocab_size
    with pytest.raises(ValueError, match="cannot encode"):
        tokenizer.encode("é")


def test_a_gold_answer_too_long_to_ever_score_is_refused_at_load_with_file_and_line(tmp_path):
    import math_answer

    assert tasks.MAX_GOLD_CHARS == math_answer.MAX_RESPONSE_CHARS  # one bound, written twice
    data = tmp_path / "data.jsonl"
    huge = "1" * 1_000_000  # a megabyte: verify refuses it unread, whatever the response
    assert not math_answer.verify(huge, huge) and not math_answer.verify(
        huge, "\\boxed{" + huge + "}"
    )
    data.write_text(
        '{"prompt": "1+1?", "answer": "2"}\n' + '{"prompt": "big?", "answer": "%s"}\n' % huge
    )
    with pytest.raises(ValueError, match=r"data.jsonl:2: the gold answer is 1,000,000 characters"):
        tasks.load_math_problems(str(data))
    data.write_text(
        '{"prompt": "1+1?", "answer": "2"}\n'
        + '{"prompt": "big?", "answer": "%s"}\n' % huge[:500_000]
    )
    # at the bound: loaded (check_golds looks closer)
    assert len(tasks.load_math_problems(str(data))) == 2


def test_a_countdown_setting_that_almost_never_gives_a_target_is_refused_not_looped_on():
    with pytest.raises(ValueError, match="task.n_numbers 1, task.max_number 1000000000000"):
        tasks.generate_countdown(random.Random(0), 1, 10**12)
    problem, expression = tasks.generate_countdown(random.Random(0), 4, 20)  # the defaults: fine
    assert 1 <= problem["target"] <= 1000


def test_number_answers_load_as_text_the_verifier_matches_and_bad_ones_are_refused(tmp_path):
    import math_answer

    data = tmp_path / "data.jsonl"
    answers = ["1e20", "1.5e-7", "72", "2.5"]
    data.write_text(
        "".join('{"prompt": "%d?", "answer": %s}\n' % item for item in enumerate(answers))
    )
    golds = [p.gold for p in tasks.load_math_problems(str(data))]
    assert golds == ["100000000000000000000", "0.00000015", "72", "2.5"]  # not "1e+20"
    assert math_answer.verify(golds[0], "\\boxed{10^{20}}")
    for bad in ("NaN", "Infinity"):
        data.write_text('{"prompt": "a?", "answer": 1}\n{"prompt": "b?", "answer": %s}\n' % bad)
        with pytest.raises(ValueError, match="data.jsonl:2: 'answer' is"):
            tasks.load_math_problems(str(data))


def test_a_problem_repeated_with_another_answer_is_refused_and_a_short_test_file_too(tmp_path):
    data = tmp_path / "data.jsonl"
    data.write_text('{"prompt": "a?", "answer": 1}\n{"prompt": "b?", "answer": 2}\n'
                    '{"prompt": "a?", "answer": 1}\n')  # fmt: skip
    assert len(tasks.load_math_problems(str(data))) == 3  # the same answer again: kept
    data.write_text('{"prompt": "a?", "answer": 1}\n{"prompt": "a?", "answer": 3}\n')
    with pytest.raises(ValueError, match="data.jsonl:2: the problem of line 1 again"):
        tasks.load_math_problems(str(data))
    train, test = tmp_path / "train.jsonl", tmp_path / "test.jsonl"
    train.write_text("".join('{"prompt": "t%d?", "answer": %d}\n' % (i, i) for i in range(8)))
    test.write_text("".join('{"prompt": "h%d?", "answer": %d}\n' % (i, i) for i in range(5)))
    assert len(tasks.MathTask(str(train), str(test), n_heldout=5).heldout) == 5
    with pytest.raises(ValueError, match="test.jsonl has 5 problems, fewer than task.n_heldout=8"):
        tasks.MathTask(str(train), str(test), n_heldout=8)
