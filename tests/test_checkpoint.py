"""Checkpoints: atomic writes, the newest kept, another run's never pruned, a re-save never leaves a
step missing, resume candidates past a broken `latest`, a torn metrics line; the run directory's
lock, a full disk, damaged run directories (a `latest` directory, a torn or deleted evals.json,
duplicated or reordered metrics rows)."""

import errno
import os
import subprocess
import sys

import pytest
import torch

from checkpoint import (
    MetricsLog,
    RunError,
    clean_leftovers,
    holds_run,
    latest_checkpoint,
    list_checkpoints,
    load_newest_intact,
    prepare_run_dir,
    read_evals,
    read_run_id,
    resume_candidates,
    save_checkpoint,
    unlock_run_dir,
)
from model import GPT
from test_model import tiny_gpt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_checkpoint_round_trip_is_atomic_and_keeps_the_newest(tmp_path):
    model = tiny_gpt()
    for step in (1, 2, 3):
        save_checkpoint(tmp_path, step, model, {"step": step}, {"run": {"seed": 0}}, keep=2)
    assert [p.split("_")[-1] for p in list_checkpoints(tmp_path)] == ["2", "3"]
    assert latest_checkpoint(tmp_path).endswith("ckpt_3")
    assert not [n for n in (tmp_path).iterdir() if ".tmp" in n.name]
    restored = GPT.from_weights(latest_checkpoint(tmp_path))
    for (name, a), (_, b) in zip(model.state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name
    assert restored.lm_head.weight is restored.tok_emb.weight  # tying survives the round trip
    assert torch.load(f"{latest_checkpoint(tmp_path)}/trainer.pt")["step"] == 3


def test_a_half_written_checkpoint_is_ignored(tmp_path):
    model = tiny_gpt()
    save_checkpoint(tmp_path, 1, model, {"step": 1}, {})
    (tmp_path / "ckpt_2.tmp-123").mkdir()  # a crash while writing step 2
    assert latest_checkpoint(tmp_path).endswith("ckpt_1")
    assert [p.split("_")[-1] for p in list_checkpoints(tmp_path)] == ["1"]


def test_pruning_deletes_only_this_runs_older_checkpoints_never_another_runs_or_latest(tmp_path):
    model = tiny_gpt()
    for step in (6, 8):  # an earlier, longer run left these in the directory
        save_checkpoint(tmp_path, step, model, {"step": step}, {}, keep=2, run_id="old")
    for step in (
        2,
        4,
        6,
    ):  # a run started over in the same directory (the study runner reuses directories)
        saved = save_checkpoint(tmp_path, step, model, {"step": step}, {}, keep=2, run_id="new")
        # it never deletes its own newest
        assert latest_checkpoint(tmp_path) == saved and os.path.isdir(saved)
    names = sorted(os.listdir(tmp_path))
    # the old ckpt_8 is left alone
    assert "ckpt_2" not in names and {"ckpt_4", "ckpt_6", "ckpt_8"} <= set(names)
    assert read_run_id(tmp_path / "ckpt_6") == "new" and read_run_id(tmp_path / "ckpt_8") == "old"


def test_resaving_a_step_never_leaves_it_missing(tmp_path, monkeypatch):
    model = tiny_gpt()
    save_checkpoint(tmp_path, 3, model, {"step": 3}, {})
    real_replace = os.replace
    moves = []

    def crash_after_the_old_copy_moved(
        source, target
    ):  # a kill between the two renames of a re-save
        if os.path.isdir(source):
            moves.append((source, target))
            if len(moves) == 2:
                raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", crash_after_the_old_copy_moved)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 3, model, {"step": 3}, {})
    monkeypatch.setattr(os, "replace", real_replace)
    # moved aside, not deleted: in the window
    assert ".old-" in moves[0][1] and not (tmp_path / "ckpt_3").exists()
    # what a resume does first: the moved copy goes back, the half-written one goes
    clean_leftovers(tmp_path)
    assert latest_checkpoint(tmp_path) == str(tmp_path / "ckpt_3")
    assert not [n for n in os.listdir(tmp_path) if ".tmp-" in n or ".old-" in n]
    assert torch.load(tmp_path / "ckpt_3" / "trainer.pt")["step"] == 3


def test_resume_candidates_fall_back_when_latest_is_missing_empty_or_garbage(tmp_path):
    model = tiny_gpt()
    for step in (2, 4):
        save_checkpoint(tmp_path, step, model, {"step": step}, {}, keep=5)
    assert resume_candidates(tmp_path) == ([str(tmp_path / "ckpt_4"), str(tmp_path / "ckpt_2")], [])
    for broken in ("", "\x00\x01garbage", "ckpt_9\n", "../../etc\n"):
        (tmp_path / "latest").write_text(broken)
        candidates, notes = resume_candidates(tmp_path)
        assert candidates[0].endswith("ckpt_4") and "names no checkpoint" in notes[0]
    (tmp_path / "latest").unlink()
    assert resume_candidates(tmp_path)[0][0].endswith("ckpt_4")
    # latest first, even when it is not the highest step
    (tmp_path / "latest").write_text("ckpt_2\n")
    assert [os.path.basename(c) for c in resume_candidates(tmp_path)[0]] == ["ckpt_2", "ckpt_4"]


def test_metrics_log_drops_a_torn_last_line_and_names_a_damaged_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n{"step": 3, "a"')
    notes = []
    MetricsLog(str(path), resume_step=2, log=notes.append)
    assert (
        path.read_text() == '{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n'
        and "torn last line" in notes[0]
    )
    path.write_text('{"step": 1}\n{"step": oops}\n{"step": 2}\n')
    with pytest.raises(
        RunError, match="metrics.jsonl:2 is not valid JSON"
    ):  # one line, no traceback (train.py)
        MetricsLog(str(path), resume_step=2)


# ---------------------------------------------------------------------- issue 27: the run directory

HOLD_THE_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
import checkpoint
checkpoint.prepare_run_dir(sys.argv[2], False, {"run": {"name": "x"}}, True)
print("locked", flush=True)
time.sleep(120)
"""


def start_holder(run_dir):
    """A second process that prepares (and so locks) run_dir, then waits to be killed."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, REPO, str(run_dir)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "locked"
    return holder


def test_a_run_directory_is_locked_by_its_run_and_the_lock_dies_with_it(tmp_path):
    run_dir = tmp_path / "same_name"
    holder = start_holder(run_dir)
    try:
        with pytest.raises(
            RunError
        ) as refused:  # a second run started at the same moment, same name
            prepare_run_dir(str(run_dir), False, {}, True)
        message = str(refused.value)
        assert (
            str(run_dir) in message
            and f"pid {holder.pid}" in message
            and len(message.splitlines()) == 1
        )
        with pytest.raises(
            RunError, match="in use by another run"
        ):  # --resume of a running run, too
            prepare_run_dir(str(run_dir), True, {}, True)
        # a torchrun rank > 0 shares rank 0's directory
        prepare_run_dir(str(run_dir), False, {}, False)
    finally:
        holder.kill()  # a SIGKILL: the lock file stays, the lock goes with the process
        holder.wait()
    assert (run_dir / "lock").exists()
    prepare_run_dir(str(run_dir), False, {}, True)  # stale: taken at once
    assert (run_dir / "lock").read_text().split()[0] == str(os.getpid())
    # re-entrant in one process (tests, the notebook)
    prepare_run_dir(str(run_dir), False, {}, True)
    unlock_run_dir(str(run_dir))


def test_a_resume_of_a_run_that_does_not_exist_names_the_runs_that_do(tmp_path):
    for name in ("maze", "maze_pass1", "_warmstart"):
        (tmp_path / name).mkdir()
    (tmp_path / "maze" / "latest").write_text("ckpt_2\n")
    with pytest.raises(RunError) as refused:
        prepare_run_dir(str(tmp_path / "mazee"), True, {}, True)
    message = str(refused.value)
    assert "no run in" in message and "maze, maze_pass1" in message and "_warmstart" not in message
    assert not (tmp_path / "mazee").exists()
    (tmp_path / "stopped").mkdir()  # stopped in its warm start: a config.yaml, no checkpoint yet
    (tmp_path / "stopped" / "config.yaml").write_text("run: {}\n")
    prepare_run_dir(str(tmp_path / "stopped"), True, {}, True)
    unlock_run_dir(str(tmp_path / "stopped"))


def test_a_failed_start_that_left_only_config_yaml_does_not_hold_a_run(tmp_path):
    (tmp_path / "config.yaml").write_text("run: {}\n")  # e.g. the task failed to build
    (tmp_path / "lock").write_text("12345 elsewhere\n")  # and its lock file, released
    assert not holds_run(tmp_path)
    prepare_run_dir(str(tmp_path), False, {"run": {"seed": 1}}, True)
    unlock_run_dir(str(tmp_path))


def test_latest_that_is_a_directory_stops_a_resume_in_one_line(tmp_path):
    save_checkpoint(
        tmp_path, 2, tiny_gpt(), {"step": 2, "evals": {"before": None, "after": None}}, {}
    )
    (tmp_path / "latest").unlink()
    (tmp_path / "latest").mkdir()
    with pytest.raises(RunError, match="latest is a directory"):
        prepare_run_dir(str(tmp_path), True, {}, True)
    unlock_run_dir(str(tmp_path))


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 64"),
    ],
)
def test_a_full_disk_while_saving_is_one_line_and_leaves_no_temporary_directory(
    tmp_path, monkeypatch, error
):
    model = tiny_gpt()
    save_checkpoint(tmp_path, 2, model, {"step": 2}, {})

    def disk_full(*args, **kwargs):
        raise error

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(RunError) as refused:
        save_checkpoint(tmp_path, 4, model, {"step": 4}, {})
    assert str(refused.value).startswith(
        "no space left writing ckpt_4; the last complete checkpoint is ckpt_2"
    )
    assert sorted(os.listdir(tmp_path)) == ["ckpt_2", "latest"]
    monkeypatch.setattr(
        model, "save_weights", lambda directory: (_ for _ in ()).throw(PermissionError(13, "no"))
    )
    with pytest.raises(
        PermissionError
    ):  # any other failure goes up as it is, and leaves nothing either
        save_checkpoint(tmp_path, 4, model, {"step": 4}, {})
    assert sorted(os.listdir(tmp_path)) == ["ckpt_2", "latest"]


def test_a_resume_skips_a_checkpoint_whose_evals_json_is_torn_or_deleted(tmp_path):
    model = tiny_gpt()
    for step in (2, 4, 6):
        save_checkpoint(
            tmp_path,
            step,
            model,
            {"step": step, "evals": {"before": {"a": 1}, "after": None}},
            {},
            keep=5,
        )
    (tmp_path / "ckpt_6" / "evals.json").write_text('{"before": {"a"')  # torn
    (tmp_path / "ckpt_4" / "evals.json").unlink()  # deleted
    notes = []
    chosen = load_newest_intact(resume_candidates(tmp_path)[0], tiny_gpt(), {}, notes.append)
    assert chosen.endswith("ckpt_2") and "ckpt_6" in notes[0] and "ckpt_4" in notes[1]
    assert read_evals(chosen, {}) == {"before": {"a": 1}, "after": None}
    # an older format
    assert read_evals(tmp_path / "ckpt_4", {"eval_before": {"a": 2}})["before"] == {"a": 2}


def test_a_resume_warns_that_other_threads_change_the_trajectory(tmp_path):
    save_checkpoint(
        tmp_path,
        2,
        tiny_gpt(),
        {"step": 2, "evals": {"before": None, "after": None}},
        {"run": {"threads": 2}},
    )
    notes = []
    load_newest_intact(
        [str(tmp_path / "ckpt_2")], tiny_gpt(), {"run": {"threads": 1}}, notes.append
    )
    assert (
        "run.threads 2 -> 1 changes the trajectory" in notes[-1]
        and "same thread count" in notes[-1]
    )
    notes.clear()
    load_newest_intact(
        [str(tmp_path / "ckpt_2")], tiny_gpt(), {"run": {"threads": 2}}, notes.append
    )
    assert notes == []


def test_metrics_log_on_resume_never_duplicates_the_final_evaluation_row(tmp_path):
    path = tmp_path / "metrics.jsonl"
    rows = [
        '{"step": 0, "eval/pass@1": 0.1}\n',
        '{"step": 1, "train/reward": 0.5}\n',
        '{"step": 2, "train/reward": 0.6}\n',
        '{"step": 2, "eval/pass@1": 0.3}\n',
    ]
    path.write_text("".join(rows))  # killed between the final evaluation's row and evals.json
    MetricsLog(str(path), resume_step=2, final_recorded=False)
    # the resumed run evaluates again and writes the row once
    assert path.read_text() == "".join(rows[:3])
    # the record was written: a resume that only redraws the report keeps it
    path.write_text("".join(rows))
    MetricsLog(str(path), resume_step=2, final_recorded=True)
    assert path.read_text() == "".join(rows)
    path.write_text("".join(rows[:2] + rows[:1] + rows[2:]))  # a before-RL row inserted mid-file
    with pytest.raises(RunError, match="metrics.jsonl:3 goes back from step 1 to 0"):
        MetricsLog(str(path), resume_step=2)


def test_tests_run_away_from_the_checkouts_runs(tmp_path):
    """tests/conftest.py: a config's default run.out_dir ("runs") is never the checkout's, whatever
    it holds."""
    assert os.path.realpath("runs") != os.path.join(REPO, "runs") and os.getcwd() != REPO
    assert os.path.isfile(os.path.join("configs", "tiny.yaml"))  # the inputs configs name: found
    assert os.path.isfile(os.path.join("data", "math_sample.jsonl"))
