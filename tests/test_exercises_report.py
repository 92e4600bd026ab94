"""`pytest exercises` on a fresh student.py prints a short report: one line per exercise, no
tracebacks (exercises/conftest.py); an explicit --tb brings pytest's usual report back."""

import os
import re
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def graders(*args):
    return subprocess.run(
        [sys.executable, "-m", "pytest", "exercises", "-p", "no:cacheprovider", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PASSK_EXERCISES": ""},
    )


def test_fresh_stubs_give_one_line_per_exercise():
    run = graders()
    lines = run.stdout.splitlines()
    assert run.returncode != 0 and re.search(r"\b\d+ failed\b", run.stdout)
    assert len(lines) < 20, f"{len(lines)} lines:\n{run.stdout[:3000]}"
    assert [line.split()[1] for line in lines if line.startswith("exercise ")] == [
        str(n) for n in range(1, 9)
    ]
    assert all("not written yet" in line for line in lines if line.startswith("exercise "))
    assert "Traceback" not in run.stdout and "def " not in run.stdout


def test_an_explicit_traceback_style_gives_the_usual_report():
    run = graders("exercises/test_ex6_kl_k3.py", "--tb=line")
    assert "kl_k3 is not written yet" in run.stdout and not re.search(
        r"^exercise 6", run.stdout, re.M
    )
