"""Hermetic tests: no test reads or writes the checkout's runs/.

Every test starts in a fresh working directory of its own (under pytest's tmp_path), so the default
`run.out_dir: runs` of a config is a folder that no earlier training in the checkout can have
filled, and that nothing the test writes outlives it. The checkout's read-only inputs that configs
name by relative path (configs/, data/) are linked into it. A test that runs train.py in a
subprocess inherits this directory unless it passes `cwd=` (then it must pass `--run.out_dir` too).
At the end of the session the checkout's runs/ must be as it was: a test that wrote there fails the
session."""

import os

import threads  # noqa: F401  (before torch: subprocesses inherit OpenMP's wait policy)

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINKED = ("configs", "data")  # inputs a config names relative to the working directory


@pytest.fixture(autouse=True)
def fresh_working_directory(tmp_path_factory, monkeypatch):
    workdir = tmp_path_factory.mktemp("cwd")
    for name in LINKED:
        os.symlink(os.path.join(REPO, name), workdir / name)
    monkeypatch.chdir(workdir)
    return workdir


def snapshot(folder) -> dict:
    """{path: modification time} of everything under `folder` (directories included)."""
    found = {}
    for parent, subfolders, names in os.walk(folder):
        for name in subfolders + names:
            path = os.path.join(parent, name)
            found[path] = os.lstat(path).st_mtime_ns
    return found


@pytest.fixture(autouse=True, scope="session")
def checkout_runs_untouched():
    runs = os.path.join(REPO, "runs")
    before = snapshot(runs)
    yield
    after = snapshot(runs)
    changed = sorted(
        path for path in set(before) | set(after) if before.get(path) != after.get(path)
    )
    assert not changed, (
        "tests wrote into the checkout's runs/ (pass --run.out_dir or leave cwd alone): "
        f"{changed[:5]}"
    )
