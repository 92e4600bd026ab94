"""threads.py: OpenMP's wait policy is set before torch loads, never over the user's own choice."""

import subprocess
import sys

import threads


def test_sets_a_passive_wait_policy_before_torch_loads():
    environ = {}
    assert threads.configure(environ, modules={}) and environ == {"OMP_WAIT_POLICY": "PASSIVE"}


def test_keeps_the_users_wait_policy_or_spin_count():
    for setting in [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}]:
        environ = dict(setting)
        assert threads.configure(environ, modules={}) and environ == setting


def test_says_when_torch_is_loaded_already():
    environ = {}
    assert not threads.configure(environ, modules={"torch": object()}) and environ == {}


def test_an_entry_point_that_imports_it_first_runs_torch_passive():
    """In a fresh interpreter: `import threads` then torch; libgomp sees the setting (the child's
    environment).
    """
    code = (
        "import threads, os, torch; "
        "print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads() > 0)"
    )
    environ = {
        key: value
        for key, value in __import__("os").environ.items()
        if key not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=environ,
        check=True,
        cwd=threads.__file__.rsplit("/", 1)[0],
    ).stdout
    assert out.split() == ["PASSIVE", "True"]
