"""A pool of worker processes for verifiers that may be slow or hostile: a time limit per answer, a
memory limit per worker, nothing that can hang or crash the trainer.

scores = pool.score(verifier, responses, golds, timeout_s=5.0, workers=2)

`verifier(response, gold) -> float` is any module-level function (reward.VERIFIERS has the task
verifiers; the math one is why this exists: a LaTeX answer can ask sympy for a tower of powers).
Each worker is a fresh interpreter started through subprocess (not multiprocessing: the training
script's __main__, and torch with it, is not re-imported in the worker) that imports the verifier's
module (the slow imports happen before it says it is ready), sets its memory limit and answers jobs
over its pipes. The parent keeps a deadline per answer; a worker past it is killed and only that
worker is replaced, and its answer scores 0. Signals are the trainer's: a worker runs in a session
of its own (a closed terminal or `kill -TERM -PGID` does not reach it) and ignores SIGINT, SIGTERM
and SIGHUP (a scheduler that signals every process of a job); it dies with its trainer all the same
(PR_SET_PDEATHSIG, and its stdin closing). A worker lost mid-answer (killed from outside) costs the
answer nothing: it is retried on a new worker, and scores 0 only if it loses a worker again (an
answer that crashes every worker). Messages are JSON lines, never pickles: nothing a worker sends
back can run code in the parent, and responses and golds must be JSON values (text, numbers, lists,
mappings).

Left out: Windows (select on pipes and RLIMIT_AS are POSIX), and sharing one pool between processes
(each trainer rank has its own)."""

import atexit
import collections
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time

DEFAULT_TIMEOUT_S = 5.0
DEFAULT_WORKERS = max(1, min(8, os.cpu_count() or 1))
DEFAULT_MEMORY_MB = 2048  # RLIMIT_AS of a worker (address space, so generous)
WORKER_START_TIMEOUT_S = 120.0
MAX_CHUNK = 16  # answers per pipe write (per-answer deadlines still hold)
RETRIES_AFTER_A_CRASH = 1  # an answer whose worker dies is retried this often, then scores 0
SIGNALS_LEFT_TO_THE_TRAINER = ("SIGINT", "SIGTERM", "SIGHUP")

_pool = []  # worker dicts: proc, buffer, jobs in flight, deadline, ready, verifier
_pool_lock = threading.Lock()
_stats = {"timeouts": 0, "crashes": 0, "worker_starts": 0}
_atexit_registered = False


def stats() -> dict:
    """Cumulative counts since import: time-outs, worker crashes and worker starts."""
    return dict(_stats)


def score(
    verifier,
    responses: list,
    golds: list,
    *,
    timeout_s=DEFAULT_TIMEOUT_S,
    workers=DEFAULT_WORKERS,
    memory_mb=DEFAULT_MEMORY_MB,
    failed_score=0.0,
) -> list[float]:
    """verifier(response, gold) of every pair, in order, each within timeout_s; an answer that times
    out or crashes its worker scores failed_score (0: a wrong answer)."""
    if timeout_s <= 0 or workers < 1:
        raise ValueError(
            f"timeout_s must be positive and workers >= 1, got {timeout_s} and {workers}"
        )
    with _pool_lock:
        return _score_in_pool(
            _verifier_spec(verifier), responses, golds, timeout_s, workers, memory_mb, failed_score
        )


def _verifier_spec(verifier) -> tuple[str, str, str]:
    """(directory, module, function name): what a worker imports to call `verifier`."""
    module = sys.modules[verifier.__module__]
    return os.path.dirname(os.path.abspath(module.__file__)), verifier.__module__, verifier.__name__


# ----------------------------------------------------------------------------- the worker's side


def _worker_loop(directory, module_name, function_name, memory_mb, parent):
    """Entry point of a worker process: read a line [[job_id, response, gold], ...], answer one line
    [job_id, score] per job as soon as it is done (the parent's clock restarts on each)."""
    replies = sys.stdout.buffer
    sys.stdout = sys.stderr  # a stray print must not corrupt the reply stream
    for (
        name
    ) in SIGNALS_LEFT_TO_THE_TRAINER:  # the trainer stops after its step, then closes our stdin
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    _exit_with_parent(parent)
    try:
        import resource

        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    except (ImportError, ValueError, OSError):
        pass  # no RLIMIT_AS on this OS: the time limit still holds
    sys.path.insert(0, directory)
    import importlib

    module = importlib.import_module(module_name)  # imports sympy (for math) before "ready"
    verifier = getattr(module, function_name)
    replies.write((json.dumps(["ready", os.getpid()]) + "\n").encode())
    replies.flush()
    for line in sys.stdin.buffer:
        for job_id, response, gold in json.loads(line):
            try:
                value = float(verifier(response, gold))
            except Exception:  # MemoryError and RecursionError included: a wrong answer
                value = 0.0
            replies.write((json.dumps([job_id, value]) + "\n").encode())
            replies.flush()


def _exit_with_parent(parent: int):
    """A worker busy on an answer when its trainer is killed must not run on alone at 100 % CPU: on
    Linux the kernel kills it with its parent (PR_SET_PDEATHSIG), elsewhere a thread checks the
    parent every second."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass

    def watch():
        while os.getppid() == parent:
            time.sleep(1.0)
        os._exit(0)

    threading.Thread(target=watch, daemon=True).start()
    if os.getppid() != parent:  # the parent died before the kernel was told
        os._exit(0)


# ----------------------------------------------------------------------------- the parent's side


def _start_worker(spec, memory_mb):
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import sys; sys.path.insert(0, {here!r}); import pool; "
        f"pool._worker_loop(*{spec!r}, {int(memory_mb)}, {os.getpid()})"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,
        close_fds=True,
        start_new_session=True,
    )
    _stats["worker_starts"] += 1
    return {
        "proc": proc,
        "buffer": b"",
        "jobs": collections.deque(),
        "deadline": None,
        "ready": False,
        "started": time.monotonic(),
        "memory_mb": memory_mb,
        "spec": spec,
    }


def _stop_worker(worker, kill=True):
    proc = worker["proc"]
    try:
        proc.stdin.close()
    except OSError:
        pass
    if kill:
        proc.kill()
    try:
        proc.wait(timeout=2.0)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    proc.stdout.close()


def shutdown():
    """Stop every worker (registered with atexit when the pool starts; safe to call twice)."""
    with _pool_lock:
        while _pool:
            _stop_worker(_pool.pop(), kill=False)


def _resize_pool(spec, workers, memory_mb):
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(shutdown)
        _atexit_registered = True
    for worker in [
        w for w in _pool if (w["spec"], w["memory_mb"]) != (spec, memory_mb)
    ]:  # another verifier or
        _pool.remove(worker)  # limit: new workers
        _stop_worker(worker, kill=False)
    while len(_pool) > workers:
        _stop_worker(_pool.pop(), kill=False)
    while len(_pool) < workers:
        _pool.append(_start_worker(spec, memory_mb))


def _replace_worker(index):
    worker = _pool[index]
    _stop_worker(worker)
    _pool[index] = _start_worker(worker["spec"], worker["memory_mb"])


def _score_in_pool(spec, responses, golds, timeout_s, workers, memory_mb, failed_score):
    """Scores in order. Jobs go out in small chunks (one pipe write per chunk) and come back one
    line per answer; a worker's deadline is timeout_s after its last answer, so every answer has
    its own time limit. On a time-out the answer in progress scores 0; on a crash it is retried
    (RETRIES_AFTER_A_CRASH times, then it scores 0); the rest of the chunk goes back to the queue
    and only that worker is replaced."""
    scores = [failed_score] * len(responses)
    pending = collections.deque(range(len(responses)))
    crashes = collections.Counter()  # job -> workers it lost
    _resize_pool(spec, workers, memory_mb)
    chunk_size = max(1, min(MAX_CHUNK, len(pending) // (4 * len(_pool))))
    while pending or any(w["jobs"] for w in _pool):
        for index, worker in enumerate(_pool):
            if worker["ready"] and not worker["jobs"] and pending:
                jobs = [pending.popleft() for _ in range(min(chunk_size, len(pending)))]
                message = json.dumps([[job, responses[job], golds[job]] for job in jobs]) + "\n"
                try:
                    worker["proc"].stdin.write(message.encode())
                except OSError:  # died while idle: its jobs go to another worker
                    pending.extendleft(reversed(jobs))
                    _stats["crashes"] += 1
                    _replace_worker(index)
                    continue
                worker["jobs"].extend(jobs)
                worker["deadline"] = time.monotonic() + timeout_s
        now = time.monotonic()
        waits = [w["deadline"] - now for w in _pool if w["jobs"]]
        waits += [w["started"] + WORKER_START_TIMEOUT_S - now for w in _pool if not w["ready"]]
        by_fd = {
            w["proc"].stdout.fileno(): i for i, w in enumerate(_pool) if w["jobs"] or not w["ready"]
        }
        readable, _, _ = select.select(list(by_fd), [], [], max(0.0, min(waits)))
        for fd in readable:
            index = by_fd[fd]
            worker = _pool[index]
            chunk = os.read(fd, 1 << 16)
            if not chunk:  # the worker died (memory limit, signal, bug)
                if not worker["ready"]:
                    raise RuntimeError(
                        "a verifier worker exited while starting; see its stderr above"
                    )
                _stats["crashes"] += 1
                crashes[worker["jobs"][0]] += 1
                _requeue_after_failure(
                    worker, pending, retry=crashes[worker["jobs"][0]] <= RETRIES_AFTER_A_CRASH
                )
                _replace_worker(index)
                continue
            _take_replies(worker, chunk, scores, timeout_s)
        now = time.monotonic()
        for index, worker in enumerate(_pool):
            if worker["jobs"] and now > worker["deadline"]:
                _stats["timeouts"] += 1
                _requeue_after_failure(worker, pending)
                _replace_worker(index)
            elif not worker["ready"] and now > worker["started"] + WORKER_START_TIMEOUT_S:
                raise RuntimeError(
                    f"a verifier worker did not start within {WORKER_START_TIMEOUT_S:.0f} s"
                )
    return scores


def _take_replies(worker, chunk: bytes, scores, timeout_s):
    """Read a worker's reply lines ("ready", or [job, score] for the job in progress) from `chunk`;
    each answer restarts the worker's clock."""
    worker["buffer"] += chunk
    while b"\n" in worker["buffer"]:
        line, worker["buffer"] = worker["buffer"].split(b"\n", 1)
        job, value = json.loads(line)
        if job == "ready":
            worker["ready"] = True
        elif worker["jobs"] and job == worker["jobs"][0]:
            scores[job] = float(value)
            worker["jobs"].popleft()
            worker["deadline"] = time.monotonic() + timeout_s


def _requeue_after_failure(worker, pending, retry=False):
    """The rest of the worker's chunk goes back to the queue, and the answer in progress with it
    when `retry`; otherwise that answer keeps its failed score."""
    if not retry:
        worker["jobs"].popleft()
    pending.extendleft(reversed(worker["jobs"]))
    worker["jobs"].clear()
