"""Where a study's numbers came from: git HEAD, changed files and a hash of the code, as RESULTS.md
lines, with each run's own record of its code, machine and warm start.

A sweep that commits its results moves HEAD without changing the code, so runs are told apart by
the hash of the top-level .py files (`git_state`), not by HEAD.
"""

import collections
import hashlib
import os
import subprocess

REPO = os.path.dirname(os.path.abspath(__file__))


def shown(path: str) -> str:
    """A path relative to the working directory when it lies below it (RESULTS.md should not name
    /home/...)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def git_state() -> dict:
    """HEAD, the changed files, and a hash of the code the runs execute (the repo's top-level .py
    files)."""

    def git(*args):
        try:
            return subprocess.run(
                ["git", "-C", REPO, *args], capture_output=True, text=True, timeout=30
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return ""

    digest = hashlib.sha1()
    for name in sorted(f for f in os.listdir(REPO) if f.endswith(".py")):
        with open(os.path.join(REPO, name), "rb") as f:
            digest.update(name.encode() + b"\0" + f.read())
    changed = [line[3:] for line in git("status", "--porcelain").splitlines() if line.strip()]
    return {
        "head": git("rev-parse", "HEAD").strip() or "unknown (not a git checkout)",
        "changed": changed,
        "code_sha1": digest.hexdigest()[:12],
    }


def provenance(by_arm: dict) -> list[str]:
    """Report lines on where the runs came from: code revisions, machines, warm starts (each result
    records its own)."""
    results = [run["result"] for runs in by_arm.values() for run in runs]
    counted = lambda values: "; ".join(
        f"{value} ({count} runs)" if len(set(values)) > 1 else value
        for value, count in sorted(collections.Counter(values).items())
    )
    # the code's hash, not HEAD: a sweep that commits its results moves HEAD without changing it
    revisions = [
        f"code sha1 `{r['code']['code_sha1']}`" if r.get("code") else "not recorded"
        for r in results
    ]
    heads = sorted({r["code"]["head"][:12] for r in results if r.get("code")})
    machines = [
        ", ".join(f"{k} {v}" for k, v in r["machine"].items())
        if r.get("machine")
        else "not recorded"
        for r in results
    ]
    warm_starts = [r.get("warm_start_sha1") or "not recorded" for r in results]
    later = " and later result commits" if len(heads) > 1 else ""
    lines = [
        f"- the runs' code: {counted(revisions)} (the top-level .py files; git "
        f"{', '.join(f'`{h}`' for h in heads[:3])}{later})",
        f"- on {counted(machines)}"
        + (
            ""
            if len(set(machines)) == 1
            else " (machines whose floats differ: a seed's two arms may come from different ones)"
        ),
        f"- every run started from the warm start whose weights hash to {counted(warm_starts)}"
        + (
            "; the verdicts below hold for that one warm start"
            if len(set(warm_starts)) == 1
            else "; runs from different warm starts are paired all the same: read the verdicts "
            "with care"
        ),
    ]
    return lines
