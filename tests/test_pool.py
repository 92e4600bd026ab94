"""The verifier pool: hostile math answers scored 0 in parallel with nothing executed, time-outs
that replace only their worker, a worker lost mid-answer retried, signals left to the trainer, the
memory limit, shutdown, and the optional Math-Verify backend."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

import math_answer
import pool
import reward
import tasks


@pytest.fixture(scope="module", autouse=True)
def fresh_pool():
    pool.shutdown()
    yield
    pool.shutdown()


def sleepy(response, gold):
    """A verifier that takes `response` seconds (a slow answer, to exercise the time limit)."""
    time.sleep(float(response))
    return 1.0 if gold == "1" else 0.0


SENTINEL = "executed"  # created in the working directory if any answer ever ran


def hostile_answers(sentinel=SENTINEL):
    # the sentinel is a relative name without digits: a path such as /tmp/pytest-1/... would put a
    # number into the text, and "the last number" extraction would then compare it with the gold
    run = f"__import__('os').system('touch {sentinel}')"
    return [
        "\\boxed{" + "{" * 100_000 + "1" + "}" * 100_000 + "}",  # deep braces
        "$" + "(" * 100_000 + "1" + ")" * 100_000 + "$",  # deep parentheses
        "\\boxed{" * 60_000,  # unclosed boxes
        "\\boxed{" + "1+" * 240_000 + "1}",  # half a million characters
        "7" * 1_000_000,  # a million characters
        "$1$" + " " * 400_000 + "$x$",  # long gaps between spans
        "\\boxed{9^{9^{9^{9}}}}",  # towers of powers
        "9^9^9^9",
        "\\boxed{2^{2^{2^{2^{2^{2}}}}}}",
        "\\boxed{e^{e^{e^{e^{e^{x}}}}}}",
        "\\boxed{\\sqrt{2}^{10^{9}}}",
        "\\boxed{(10^{6})!}",  # huge factorials
        "\\boxed{((3!)!)!!}",
        "\\boxed{\\binom{10^{6}}{500000}}",
        "\\boxed{\\Gamma(10^{6}+\\frac{1}{2})}",  # exact values of special functions
        "\\boxed{\\binom{\\frac{1}{2}}{30000}}",
        "\\boxed{\\sin(10^{1000})}",
        "\\boxed{\\left|\\cosh(x^{200})\\right|}",  # sympy expands (a + ib)^200 to ask its sign
        "\\boxed{\\frac{1}{0}}",
        run,  # code under eval
        f"\\boxed{{{run}}}",
        f'The answer is $eval("{run}")$',
        f"$(lambda: {run})()$",
        f"\\boxed{{exec('import os; os.system(\"touch {sentinel}\")')}}",
        f'\\boxed{{sympify("{run}")}}',  # sympify-looking strings
        f"\\boxed{{S('{run}')}}",
        "\\boxed{Symbol('x').__class__.__mro__[-1].__subclasses__()}",
        f"\\boxed{{parse_expr('{run}')}}",
    ]


def test_hostile_answers_score_zero_in_the_pool(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pool.shutdown()  # workers started from here: they share this working directory
    sentinel = tmp_path / SENTINEL
    answers = hostile_answers()
    scores = reward.score_batch("math", answers, ["1"] * len(answers), workers=2, timeout_s=10.0)
    assert scores == [0.0] * len(answers)
    assert not sentinel.exists()


def test_hostile_answers_are_refused_by_the_bounds_without_the_pool(tmp_path, monkeypatch):
    # In-process, with no time limit at all: every one returns (quickly) and is not equal.
    monkeypatch.chdir(tmp_path)
    sentinel = tmp_path / SENTINEL
    for answer in hostile_answers():
        assert math_answer.verify("1", answer) is False
    assert not sentinel.exists()


def test_pool_scores_in_order_and_counts():
    before = reward.verifier_stats()
    golds = ["\\frac12", "1/2", "y", "3", "(1,2)", "\\{1,2\\}"]
    responses = [
        "\\boxed{1/2}",
        "$0.5$",
        "$x$",
        "\\boxed{3}",
        "\\boxed{(2,1)}",
        "\\boxed{\\{2,1\\}}",
    ]
    assert reward.score_batch("math", responses, golds, workers=2) == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    assert reward.score_batch("math", responses, golds, workers=0) == [1.0, 1.0, 0.0, 1.0, 0.0, 1.0]
    after = reward.verifier_stats()
    assert after["scored"] == before["scored"] + 2 * len(golds)
    assert after["timeouts"] == before["timeouts"]


def test_timeout_scores_zero_and_replaces_only_that_worker():
    pool.score(sleepy, ["0.01"] * 4, ["1"] * 4, workers=2)
    pids_before = sorted(worker["proc"].pid for worker in pool._pool)
    before = reward.verifier_stats()
    # each job sleeps `response` seconds; the 60 s one is killed at the 2 s limit
    delays = ["0.01", "60", "0.01", "0.01", "0.01"]
    scores = pool.score(sleepy, delays, ["1"] * len(delays), timeout_s=2.0, workers=2)
    assert scores == [1.0, 0.0, 1.0, 1.0, 1.0]
    after = reward.verifier_stats()
    assert after["timeouts"] == before["timeouts"] + 1
    assert after["worker_starts"] == before["worker_starts"] + 1
    pids_after = sorted(worker["proc"].pid for worker in pool._pool)
    assert len(set(pids_before) & set(pids_after)) == 1  # the other worker survived
    assert reward.score_batch("math", ["\\boxed{2}"], ["2"], workers=2) == [1.0]


def signal_the_worker_on(job, signum, times=1, group=False):
    """A thread that sends `signum` to the worker busy on `job` (its process group when `group`),
    `times` times (each time to the worker then holding the job); returns the thread, started."""

    def send():
        sent, seen = 0, set()
        for _ in range(600):
            for worker in list(pool._pool):
                pid = worker["proc"].pid
                if worker["jobs"] and worker["jobs"][0] == job and pid not in seen:
                    time.sleep(0.2)  # inside the answer
                    os.killpg(os.getpgid(pid), signum) if group else os.kill(pid, signum)
                    seen.add(pid)
                    sent += 1
                    if sent == times:
                        return
            time.sleep(0.05)

    thread = threading.Thread(target=send)
    thread.start()
    return thread


def test_a_worker_killed_mid_answer_is_replaced_and_the_answer_retried_not_scored_zero():
    pool.score(sleepy, ["0.01", "0.01"], ["1", "1"], workers=2)
    before = reward.verifier_stats()
    killer = signal_the_worker_on(1, signal.SIGKILL)
    scores = pool.score(
        sleepy, ["0.01", "1.5", "0.01", "0.01"], ["1"] * 4, timeout_s=60.0, workers=2
    )
    killer.join()
    assert scores == [1.0, 1.0, 1.0, 1.0]
    after = reward.verifier_stats()
    assert after["crashes"] == before["crashes"] + 1 and after["timeouts"] == before["timeouts"]
    assert len(pool._pool) == 2 and all(worker["proc"].poll() is None for worker in pool._pool)


def test_an_answer_that_loses_a_worker_twice_scores_zero():
    pool.score(sleepy, ["0.01", "0.01"], ["1", "1"], workers=2)
    before = reward.verifier_stats()
    # an answer that crashes every worker it meets
    killer = signal_the_worker_on(1, signal.SIGKILL, times=2)
    scores = pool.score(
        sleepy, ["0.01", "1.5", "0.01", "0.01"], ["1"] * 4, timeout_s=60.0, workers=2
    )
    killer.join()
    assert scores == [1.0, 0.0, 1.0, 1.0]
    assert reward.verifier_stats()["crashes"] == before["crashes"] + 2


@pytest.mark.parametrize(
    "signum, group",
    [
        (signal.SIGTERM, False),
        (signal.SIGHUP, False),
        (signal.SIGINT, False),
        (signal.SIGTERM, True),
    ],
)
def test_signals_are_the_trainers_a_worker_mid_answer_finishes_it(signum, group):
    pool.score(sleepy, ["0.01", "0.01"], ["1", "1"], workers=2)
    before = reward.verifier_stats()
    if group:  # kill -TERM -PGID of the trainer's group (a closed terminal) does not reach them
        assert all(os.getpgid(worker["proc"].pid) != os.getpgid(0) for worker in pool._pool)
    sender = signal_the_worker_on(1, signum, group=group)
    scores = pool.score(
        sleepy, ["0.01", "1.5", "0.01", "0.01"], ["1"] * 4, timeout_s=60.0, workers=2
    )
    sender.join()
    assert scores == [1.0, 1.0, 1.0, 1.0]
    # the signal was ignored, not survived by retry
    assert reward.verifier_stats()["crashes"] == before["crashes"]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/<pid>/limits")
def test_workers_run_under_a_memory_limit():
    reward.score_batch("math", ["1"], ["1"], workers=1, memory_mb=1536)
    limits = open(f"/proc/{pool._pool[0]['proc'].pid}/limits").read()
    line = next(line for line in limits.splitlines() if line.startswith("Max address space"))
    assert str(1536 * 1024 * 1024) in line


def test_shutdown_stops_every_worker():
    reward.score_batch("math", ["1", "2"], ["1", "2"], workers=2)
    processes = [worker["proc"] for worker in pool._pool]
    pool.shutdown()
    assert pool._pool == [] and all(process.poll() is not None for process in processes)
    pool.shutdown()  # twice is fine


def test_math_verify_backend_missing_is_one_clear_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "math_verify", None)  # makes `import math_verify` fail
    with pytest.raises(ImportError, match="pip install math-verify"):
        reward.score_batch("math", ["1"], ["1"], backend="math_verify")


def test_math_verify_backend_when_installed():
    pytest.importorskip("math_verify")
    scores = reward.score_batch(
        "math", ["$\\frac{1}{2}$", "$3$"], ["$0.5$", "$4$"], backend="math_verify", workers=1
    )
    assert scores == [1.0, 0.0]


def test_a_killed_parent_leaves_no_worker_behind(tmp_path):
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path[:0] = [{os.path.dirname(here)!r}, {here!r}]; import pool, "
        "test_pool; pool.score(test_pool.sleepy, ['600'], ['1'], workers=1, timeout_s=900)"
    )
    parent = subprocess.Popen([sys.executable, "-c", code])
    deadline, workers = time.time() + 60, []
    while time.time() < deadline and not workers:  # the worker, busy on its 600 s answer
        time.sleep(0.5)
        listing = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(parent.pid)], capture_output=True, text=True
        )
        workers = [int(pid) for pid in listing.stdout.split()]
    assert workers, "the pool did not start its worker"
    time.sleep(2.0)  # past its start: now inside the job
    parent.kill()  # SIGKILL: no atexit, no cleanup
    parent.wait()
    deadline = time.time() + 20
    while time.time() < deadline and any(alive(pid) for pid in workers):
        time.sleep(0.2)
    assert not any(alive(pid) for pid in workers), "a verifier worker outlived its parent"


def alive(pid: int) -> bool:
    """Running (a zombie waiting for its new parent to reap it counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_a_gold_answer_that_cannot_be_verified_in_time_is_refused_with_its_origin(monkeypatch):
    # a gold that takes its `gold` seconds to check
    monkeypatch.setitem(reward.MATH_BACKENDS, "sympy", sleepy)
    problems = [
        tasks.Problem("p", "0.01", origin="data.jsonl:1"),
        tasks.Problem("q", "30", origin="data.jsonl:2"),
    ]
    with pytest.raises(ValueError, match=r"data.jsonl:2: the gold answer '30' takes more than"):
        reward.check_golds(problems, timeout_s=2.0, workers=2)
    reward.check_golds(problems[:1], timeout_s=2.0, workers=2)  # a quick one passes
