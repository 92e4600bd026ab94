"""Which implementation the graders grade: the `impl` fixture every grader takes.

    pytest exercises                                  # your file, exercises/student.py
    pytest exercises --reference                      # passk's own implementations: every grader passes
    pytest exercises --impl path/to/submission.py     # another file with the same eight functions
    PASSK_EXERCISES=reference pytest exercises        # the same switch as an environment variable
    PASSK_EXERCISES=audit pytest exercises            # the graders graded (tests/test_exercises.py)

The audit runs each exercise's graders against passk's implementation, against a stub that raises,
and against every mutant of that exercise (mutants.py: plausible wrong implementations); the test
ids say which, e.g. test_population_std[mutant:grpo_sample_std].
Each grader module names its exercise in EXERCISE, the name of the function it grades.
"""
import importlib.util
import os
import types
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
EXERCISES = ("pass_at_k", "grpo_advantage", "passk_full_advantage", "passk_analytic_advantage", "ppo_clip_loss",
             "kl_k3", "maze_reward", "logprob_backward")


def pytest_addoption(parser):
    group = parser.getgroup("passk exercises")
    group.addoption("--reference", action="store_true",
                    help="grade passk's own implementations (exercises/reference.py)")
    group.addoption("--impl", default="", help="grade this file (default: exercises/student.py, or $PASSK_EXERCISES)")


def load_file(path) -> types.ModuleType:
    path = Path(path).resolve()
    if not path.is_file():
        raise pytest.UsageError(f"no implementation file at {path}")
    spec = importlib.util.spec_from_file_location(f"graded_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def chosen(config) -> str:
    """'reference', 'audit' or a file path: the option first, then $PASSK_EXERCISES, then student.py."""
    if config.getoption("--reference"):
        return "reference"
    return config.getoption("--impl") or os.environ.get("PASSK_EXERCISES") or str(HERE / "student.py")


def stub() -> types.SimpleNamespace:
    """Every exercise unwritten: a function that raises, as in a fresh student.py."""
    def unwritten(name):
        def raises(*args, **kwargs):
            raise NotImplementedError(f"{name} is a stub")
        raises.__name__ = name
        return raises
    return types.SimpleNamespace(**{name: unwritten(name) for name in EXERCISES})


def audit_implementations(exercise) -> dict:
    """{test id: implementation}: passk's, a stub, and passk's with `exercise` swapped for each of its mutants."""
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
        metafunc.parametrize("impl", list(implementations.values()), ids=list(implementations), scope="module")


@pytest.fixture(scope="session")
def impl(request):
    """The module (or namespace) whose functions the graders call."""
    which = chosen(request.config)
    if which == "reference":
        return load_file(HERE / "reference.py")
    return load_file(which)


def pytest_report_header(config):
    which = chosen(config)
    return f"passk exercises: grading {'exercises/reference.py (passk)' if which == 'reference' else which}"
