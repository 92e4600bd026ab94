"""Which implementation the graders grade: the `impl` fixture every grader takes.

    pytest exercises                                  # your file, exercises/student.py
    pytest exercises --reference                      # passk's own code: every grader passes
    pytest exercises --impl path/to/submission.py     # another file with the same eight functions
    PASSK_EXERCISES=reference pytest exercises        # the same switch as an environment variable
    PASSK_EXERCISES=audit pytest exercises            # the graders graded (tests/test_exercises.py)

The report is short by default: one line per exercise (how many of its graders pass, and the first
failure's message), no tracebacks. For the details of one exercise:

pytest exercises/test_ex1_pass_at_k.py --tb=short   # or any --tb: then pytest reports as usual

The audit runs each exercise's graders against passk's implementation, against a stub that raises,
and against every mutant of that exercise (mutants.py: plausible wrong implementations); the test
ids say which, e.g. test_population_std[mutant:grpo_sample_std]. Each grader module names its
exercise in EXERCISE, the name of the function it grades."""

import collections
import importlib.util
import os
import re
import types
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXERCISES = (
    "pass_at_k",
    "grpo_advantage",
    "passk_full_advantage",
    "passk_analytic_advantage",
    "ppo_clip_loss",
    "kl_k3",
    "maze_reward",
    "logprob_backward",
)


def pytest_addoption(parser):
    group = parser.getgroup("passk exercises")
    group.addoption(
        "--reference",
        action="store_true",
        help="grade passk's own implementations (exercises/reference.py)",
    )
    group.addoption(
        "--impl",
        default="",
        help="grade this file (default: exercises/student.py, or $PASSK_EXERCISES)",
    )


def load_file(path) -> types.ModuleType:
    path = Path(path).resolve()
    if not path.is_file():
        raise pytest.UsageError(f"no implementation file at {path}")
    spec = importlib.util.spec_from_file_location(f"graded_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chosen(config) -> str:
    """'reference', 'audit' or a file path: the option first, then $PASSK_EXERCISES, then
    student.py."""
    if config.getoption("--reference"):
        return "reference"
    return (
        config.getoption("--impl") or os.environ.get("PASSK_EXERCISES") or str(HERE / "student.py")
    )


def stub() -> types.SimpleNamespace:
    """Every exercise unwritten: a function that raises, as in a fresh student.py."""

    def unwritten(name):
        def raises(*args, **kwargs):
            raise NotImplementedError(f"{name} is a stub")

        raises.__name__ = name
        return raises

    return types.SimpleNamespace(**{name: unwritten(name) for name in EXERCISES})


def audit_implementations(exercise) -> dict:
    """{test id: implementation}: passk's, a stub, and passk's with `exercise` swapped for each of
    its mutants."""
    reference = load_file(HERE / "reference.py")
    mutants = load_file(HERE / "mutants.py")
    implementations = {"reference": reference, "stub": stub()}
    for name, (target, function, _why) in mutants.MUTANTS.items():
        if target == exercise:
            swapped = types.SimpleNamespace(**{e: getattr(reference, e) for e in EXERCISES})
            setattr(swapped, exercise, function)
            implementations[f"mutant:{name}"] = swapped
    return implementations


def pytest_generate_tests(metafunc):
    if "impl" in metafunc.fixturenames and chosen(metafunc.config) == "audit":
        implementations = audit_implementations(metafunc.module.EXERCISE)
        metafunc.parametrize(
            "impl", list(implementations.values()), ids=list(implementations), scope="module"
        )


@pytest.fixture(scope="session")
def impl(request):
    """The module (or namespace) whose functions the graders call."""
    which = chosen(request.config)
    if which == "reference":
        return load_file(HERE / "reference.py")
    return load_file(which)


def pytest_report_header(config):
    which = chosen(config)
    graded = "exercises/reference.py (passk)" if which == "reference" else which
    return f"passk exercises: grading {graded}"


# ----------------------------------------------------------------------------- the short report

# exercise -> [(grader test name, passed, first line of its failure)]
_outcomes = collections.defaultdict(list)
_short = []  # [True] once the short report is chosen


def pytest_configure(config):
    """The short report, unless the user chose a traceback style (--tb) or the audit runs (its
    report is for tests/test_exercises.py)."""
    if config.option.tbstyle == "auto" and chosen(config) != "audit":
        config.option.tbstyle = "no"  # the summary below says what failed, one line per exercise
        config.option.reportchars = ""
        _short.append(True)


def pytest_runtest_logreport(report):
    match = re.search(r"test_ex(\d+)_", report.nodeid)
    if not match or (report.when != "call" and report.passed):
        return
    message = ""
    if report.failed:
        crash = getattr(report.longrepr, "reprcrash", None)
        message = (crash.message if crash else str(report.longrepr)).strip().splitlines()[0][:110]
    _outcomes[EXERCISES[int(match.group(1)) - 1]].append(
        (report.nodeid.split("::")[-1], report.passed, message)
    )


def pytest_terminal_summary(terminalreporter, config):
    if not _short or not _outcomes:
        return
    write = terminalreporter.write_line
    write("")
    for number, exercise in enumerate(EXERCISES, start=1):
        results = _outcomes.get(exercise)
        if not results:
            continue
        passed = sum(ok for _, ok, _ in results)
        failure = next(((name, message) for name, ok, message in results if not ok), None)
        line = f"exercise {number} {exercise:26s} {passed:3d}/{len(results)} graders pass"
        if failure and ("not written yet" in failure[1] or "NotImplementedError" in failure[1]):
            line += "   not written yet"
        elif failure:
            line += f"   first failure, {failure[0].split('[')[0]}: {failure[1]}"
        write(line)
    if any(not ok for results in _outcomes.values() for _, ok, _ in results):
        write("details of one exercise: pytest exercises/test_ex<N>_*.py --tb=short")
