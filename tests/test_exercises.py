"""The exercises' graders, graded (exercises/): they pass passk's own implementations, fail a stub
that raises,
and reject every mutant of their exercise (exercises/mutants.py: plausible wrong implementations).

One pytest run of exercises/ in audit mode (PASSK_EXERCISES=audit) grades each exercise's graders
against
passk, the stub and every mutant of that exercise; its JUnit report says which test failed for
which. A second run checks the switch a teacher types, `pytest exercises --reference`.
"""

import collections
import importlib.util
import inspect
import os
import re
import subprocess
import sys
import xml.etree.ElementTree as ElementTree

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXERCISES = os.path.join(REPO, "exercises")


def load(name):
    spec = importlib.util.spec_from_file_location(
        f"exercises_{name}", os.path.join(EXERCISES, f"{name}.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_graders(*args, env=None, junit=None):
    command = [sys.executable, "-m", "pytest", "exercises", "-p", "no:cacheprovider", *args]
    if junit:
        command.append(f"--junitxml={junit}")
    return subprocess.run(
        command,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="module")
def audit(tmp_path_factory):
    """{implementation id: {exercise: {grader test: passed}}} from one audit run of every grader."""
    junit = tmp_path_factory.mktemp("audit") / "audit.xml"
    run = run_graders(env={"PASSK_EXERCISES": "audit"}, junit=junit)
    assert junit.exists(), (
        f"the audit run wrote no report:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}"
    )
    outcomes = collections.defaultdict(lambda: collections.defaultdict(dict))
    for case in ElementTree.parse(junit).iter("testcase"):
        # name: test_population_std[mutant:grpo_sample_std] or test_edge_cases[stub-16-0-4-0.0-...]
        match = re.fullmatch(r"(\w+)\[(reference|stub|mutant:\w+)(-.*)?\]", case.get("name"))
        assert match, f"an audit test without an implementation id: {case.get('name')}"
        exercise = case.get("classname").rsplit(".", 1)[-1]
        passed = (
            case.find("failure") is None
            and case.find("error") is None
            and case.find("skipped") is None
        )
        outcomes[match.group(2)][exercise][case.get("name")] = passed
    return outcomes


def test_passk_passes_every_grader(audit):
    failed = [
        name
        for results in audit["reference"].values()
        for name, passed in results.items()
        if not passed
    ]
    assert len(audit["reference"]) == 8, sorted(audit["reference"])
    assert not failed, f"graders that fail passk's own implementation: {failed}"


def test_a_stub_that_raises_fails_every_grader(audit):
    passed = [name for results in audit["stub"].values() for name, ok in results.items() if ok]
    assert sum(len(results) for results in audit["stub"].values()) >= 40
    assert not passed, f"graders that pass a stub (they never call the function): {passed}"


def test_every_mutant_is_rejected_and_is_plausible(audit):
    mutants = load("mutants").MUTANTS
    # exercise function -> its grader module, from the module's EXERCISE = "..." line
    grader_module = {}
    for file in sorted(os.listdir(EXERCISES)):
        if file.startswith("test_ex") and file.endswith(".py"):
            with open(os.path.join(EXERCISES, file)) as f:
                grader_module[re.search(r'^EXERCISE = "(\w+)"$', f.read(), re.M).group(1)] = file[
                    :-3
                ]
    not_rejected, implausible = [], []
    for name, (exercise, _function, why) in mutants.items():
        results = audit[f"mutant:{name}"][grader_module[exercise]]
        assert results, f"mutant {name} ({why}) was never graded"
        if all(results.values()):
            not_rejected.append(f"{name} ({why})")
        if not any(results.values()):
            implausible.append(f"{name} ({why})")
    assert not not_rejected, f"mutants no grader of their exercise rejects: {not_rejected}"
    assert not implausible, f"mutants that fail every grader, not plausible mistakes: {implausible}"


def test_every_exercise_has_mutants_and_the_student_file_its_signatures():
    mutants, reference, student = load("mutants").MUTANTS, load("reference"), load("student")
    exercises = (
        "pass_at_k",
        "grpo_advantage",
        "passk_full_advantage",
        "passk_analytic_advantage",
        "ppo_clip_loss",
        "kl_k3",
        "maze_reward",
        "logprob_backward",
    )
    per_exercise = collections.Counter(exercise for exercise, _, _ in mutants.values())
    for name in exercises:
        assert per_exercise[name] >= 3, f"{name} has {per_exercise[name]} mutants"
        stub, ours = getattr(student, name), getattr(reference, name)
        assert list(inspect.signature(stub).parameters) == list(
            inspect.signature(ours).parameters
        ), name
        assert stub.__doc__, f"{name} has no docstring"
    for name, (
        exercise,
        function,
        _,
    ) in mutants.items():  # a mutant is called as the graders call its exercise
        assert list(inspect.signature(function).parameters) == list(
            inspect.signature(getattr(reference, exercise)).parameters
        ), name


def test_the_reference_switch_passes():
    run = run_graders("--reference")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert re.search(r"\b(\d+) passed\b", run.stdout) and "failed" not in run.stdout
