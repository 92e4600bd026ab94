"""CPU threads that step aside when the cores are shared: OpenMP's wait policy, set before torch
loads.

torch's CPU kernels run on OpenMP (libgomp). Between two parallel regions libgomp's threads
spin-wait (GOMP_SPINCOUNT, 300,000 polls by default) before they sleep, so that the next region
starts without a wake-up. On free cores that is cheap; on shared cores a spinning thread holds a
core that another process's thread (or this process's own straggler) needs, and a step made of
thousands of small parallel regions (a decode step is dozens of them) loses its time slices over
and over. Measured on this project's 2-core machine with the other developers' jobs running
(load about 10): one RL step of configs/maze.yaml at 16 prompts took 40-86 s with libgomp's
default spinning and 5.3-6.8 s with OMP_WAIT_POLICY=PASSIVE (threads sleep at once), 2 threads
each (bench/step.py --shared measures two benches side by side against one alone).

libgomp reads its environment once, when it is loaded, that is at `import torch`. So an entry
point imports this module before torch (train.py, eval.py, the benches): `import threads` sets
OMP_WAIT_POLICY=PASSIVE unless the environment already says OMP_WAIT_POLICY or GOMP_SPINCOUNT
(`GOMP_SPINCOUNT=300000` gives back libgomp's default; `OMP_WAIT_POLICY=ACTIVE` spins longer).
Imported after torch it changes nothing and says so (`configure()` returns False).
"""

import os
import sys

DEFAULT_WAIT_POLICY = "PASSIVE"


def configure(environ=os.environ, modules=sys.modules) -> bool:
    """Set OMP_WAIT_POLICY=PASSIVE unless the environment chose a wait policy or a spin count
    already.

    Returns False when torch is loaded already (libgomp has read its settings: too late), True
    otherwise.
    """
    if "torch" in modules:
        return False
    if "OMP_WAIT_POLICY" not in environ and "GOMP_SPINCOUNT" not in environ:
        environ["OMP_WAIT_POLICY"] = DEFAULT_WAIT_POLICY
    return True


configure()
