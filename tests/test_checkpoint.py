"""Checkpoints: atomic writes, the newest kept, another run's never pruned, a re-save never leaves a step missing,
resume candidates past a broken `latest`, a torn metrics line."""
import os

import pytest
import torch

from checkpoint import (MetricsLog, clean_leftovers, latest_checkpoint, list_checkpoints, read_run_id,
                        resume_candidates, save_checkpoint)
from model import GPT
from test_model import tiny_gpt


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
    for step in (2, 4, 6):  # a run started over in the same directory (the study runner reuses directories)
        saved = save_checkpoint(tmp_path, step, model, {"step": step}, {}, keep=2, run_id="new")
        assert latest_checkpoint(tmp_path) == saved and os.path.isdir(saved)  # it never deletes its own newest
    names = sorted(os.listdir(tmp_path))
    assert "ckpt_2" not in names and {"ckpt_4", "ckpt_6", "ckpt_8"} <= set(names)  # the old ckpt_8 is left alone
    assert read_run_id(tmp_path / "ckpt_6") == "new" and read_run_id(tmp_path / "ckpt_8") == "old"


def test_resaving_a_step_never_leaves_it_missing(tmp_path, monkeypatch):
    model = tiny_gpt()
    save_checkpoint(tmp_path, 3, model, {"step": 3}, {})
    real_replace = os.replace
    moves = []

    def crash_after_the_old_copy_moved(source, target):  # a kill between the two renames of a re-save
        if os.path.isdir(source):
            moves.append((source, target))
            if len(moves) == 2:
                raise KeyboardInterrupt
        real_replace(source, target)
    monkeypatch.setattr(os, "replace", crash_after_the_old_copy_moved)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tmp_path, 3, model, {"step": 3}, {})
    monkeypatch.setattr(os, "replace", real_replace)
    assert ".old-" in moves[0][1] and not (tmp_path / "ckpt_3").exists()  # moved aside, not deleted: in the window
    clean_leftovers(tmp_path)  # what a resume does first: the moved copy goes back, the half-written one goes
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
    (tmp_path / "latest").write_text("ckpt_2\n")  # latest first, even when it is not the highest step
    assert [os.path.basename(c) for c in resume_candidates(tmp_path)[0]] == ["ckpt_2", "ckpt_4"]


def test_metrics_log_drops_a_torn_last_line_and_names_a_damaged_one(tmp_path):
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n{"step": 3, "a"')
    notes = []
    MetricsLog(str(path), resume_step=2, log=notes.append)
    assert path.read_text() == '{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n' and "torn last line" in notes[0]
    path.write_text('{"step": 1}\n{"step": oops}\n{"step": 2}\n')
    with pytest.raises(ValueError, match="metrics.jsonl:2 is not valid JSON"):
        MetricsLog(str(path), resume_step=2)
