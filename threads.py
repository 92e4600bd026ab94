"""CPU threads that step aside when the cores are shared: OpenMP's wait policy, chosen before torch
loads.

torch's CPU kernels run on OpenMP (libgomp). Between two parallel regions libgomp's threads
spin-wait (GOMP_SPINCOUNT, 300,000 polls by default) before they sleep, so that the next region
starts without a wake-up. On free cores that is what makes a step of thousands of small regions
fast; on shared cores a spinning thread holds a core another process needs, and runs slow down far
beyond their share. OMP_WAIT_POLICY=PASSIVE (sleep at once) is the cure there and a cost on free
cores. Measured on this project's 2-core machine, 60 warm-start steps of configs/maze.yaml at 2
threads (wall seconds, alternating runs):

    setting                 alone       two side by side (both done)
    libgomp's default       18-22       80
    GOMP_SPINCOUNT=3000     27-29       45
    OMP_WAIT_POLICY=PASSIVE 29-31       35   (the fair share: twice the alone time, ~36-40)

No one setting wins both, so `configure` chooses by what the machine is doing when the run starts:
PASSIVE when another process is running on it (Linux: /proc/loadavg's count of runnable
processes, sampled a few times), libgomp's default otherwise. A run that starts alone and is
joined later keeps spinning; the ones that join sleep. OMP_WAIT_POLICY or GOMP_SPINCOUNT in the
environment always win (`OMP_WAIT_POLICY=PASSIVE` for a lab server, say).

libgomp reads its environment once, when it is loaded, that is at `import torch`. So an entry
point imports this module before torch (train.py, eval.py, experiments.py, the benches, the tests'
conftest). Imported after torch it changes nothing and says so (`configure()` returns False).
"""

import os
import sys

SHARED_WAIT_POLICY = "PASSIVE"


def configure(environ=os.environ, modules=sys.modules, busy=None) -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE when the machine is busy with other work (`busy`, default
    `others_running()`), unless the environment chose a wait policy or a spin count already.
    Returns False when torch is loaded already (libgomp has read its settings: too late)."""
    if "torch" in modules:
        return False
    if "OMP_WAIT_POLICY" in environ or "GOMP_SPINCOUNT" in environ:
        return True
    if others_running() if busy is None else busy:
        environ["OMP_WAIT_POLICY"] = SHARED_WAIT_POLICY
    return True


def others_running(loadavg_path="/proc/loadavg", samples=5, interval_s=0.005) -> bool:
    """Whether another process is using a core now: more than this one runnable in /proc/loadavg
    (Linux: its "R/T" field) in most of a few samples a few ms apart. False where it cannot be read.
    """
    import time

    busy = 0
    for _ in range(samples):
        try:
            with open(loadavg_path) as f:
                busy += int(f.read().split()[3].split("/")[0]) > 1  # this process is one of them
        except (OSError, IndexError, ValueError):
            return False
        time.sleep(interval_s)
    return busy > samples // 2


configure()
