"""threads.py: OpenMP's wait policy is chosen before torch loads (PASSIVE on a busy machine,
libgomp's own spinning on an idle one), never over the user's own choice."""

import os
import subprocess
import sys

import threads


def test_a_busy_machine_gets_a_passive_wait_policy_an_idle_one_keeps_libgomps():
    busy, idle = {}, {}
    assert threads.configure(busy, modules={}, busy=True) and busy == {"OMP_WAIT_POLICY": "PASSIVE"}
    assert threads.configure(idle, modules={}, busy=False) and idle == {}


def test_keeps_the_users_wait_policy_or_spin_count():
    for setting in [{"OMP_WAIT_POLICY": "ACTIVE"}, {"GOMP_SPINCOUNT": "300000"}]:
        environ = dict(setting)
        assert threads.configure(environ, modules={}, busy=True) and environ == setting


def test_says_when_torch_is_loaded_already():
    environ = {}
    assert not threads.configure(environ, modules={"torch": object()}, busy=True)
    assert environ == {}


def test_others_running_reads_the_runnable_count(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("0.10 0.20 0.30 1/123 4567\n")  # only this process runnable
    assert not threads.others_running(str(loadavg), interval_s=0)
    loadavg.write_text("1.90 1.20 0.90 3/130 4567\n")  # two more
    assert threads.others_running(str(loadavg), interval_s=0)
    assert not threads.others_running(str(tmp_path / "missing"), interval_s=0)


def test_an_entry_point_that_imports_it_first_gives_libgomp_the_choice():
    """In a fresh interpreter, `import threads` then torch, beside a CPU-bound process: the child
    runs PASSIVE (an idle machine cannot be arranged inside a test suite)."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        code = "import threads, os, torch; print(os.environ.get('OMP_WAIT_POLICY'))"
        environ = {
            k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")
        }
        out = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            env=environ,
            check=True,
            cwd=os.path.dirname(threads.__file__),
        ).stdout
    finally:
        spinner.kill()
    assert out.split() == ["PASSIVE"]
