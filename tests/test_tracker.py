"""tracker.py against the real packages, offline: TensorBoard's event files and an offline wandb
run are read back and must hold the logged rows (numbers only, strings left out); a missing package
is a one-line ConfigError naming it; "none" writes nothing. Skipped only where tensorboard or wandb
is not installed (requirements-dev.txt installs both, and .ci/run installs that)."""

import dataclasses
import glob
import json
import os
import struct
import sys

import pytest

import config
import tracker

ROWS = [
    (0, {"heldout/pass@1": 0.171875, "heldout/pass@4": 0.4}),
    (
        1,
        {
            "train/reward": 0.25,
            "train/advantage": "passk_analytic",
            "train/skipped_updates": 0,
            "train/clipped": True,
        },
    ),
    (2, {"train/reward": 1 / 3, "train/advantage": "grpo", "train/loss": -0.0123456789}),
]
SETTINGS = {
    "run": {"name": "tiny", "tracker": "wandb"},
    "rl": {"k": 4, "advantage": "passk_analytic"},
}


def expected_scalars(rows) -> dict:
    """{tag: [(step, value), ...]} of the rows' numbers (bools as 0/1); no strings or lists."""
    scalars = {}
    for step, row in rows:
        for key, value in row.items():
            if isinstance(value, (int, float)):
                scalars.setdefault(key, []).append((step, float(value)))
    return scalars


def log_rows(kind, run_dir, rows=ROWS):
    run = tracker.open_tracker(kind, str(run_dir), SETTINGS)
    for step, row in rows:
        run.log(step, row)
    run.close()


def test_numbers_of_keeps_numbers_only():
    row = {"a": 1, "b": 0.5, "c": "grpo", "d": True, "e": None, "f": [1, 2]}
    assert tracker.numbers_of(row) == {"a": 1.0, "b": 0.5, "d": 1.0}


def test_tensorboard_event_files_read_back_equal_the_logged_rows(tmp_path):
    pytest.importorskip("tensorboard")
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_rows("tensorboard", tmp_path)
    assert glob.glob(str(tmp_path / "events.out.tfevents.*"))
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0, "tensors": 0})
    events.Reload()
    read = {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }
    # TensorBoard's scalar summaries are float32: the logged value rounded to float32, exactly
    logged = {
        tag: [(step, float(np.float32(value))) for step, value in points]
        for tag, points in expected_scalars(ROWS).items()
    }
    assert read == logged
    config_text = events.Tensors("config/text_summary")[0].tensor_proto.string_val[0].decode()
    assert json.loads(config_text.strip("`\n")) == SETTINGS


def wandb_records(path):
    """The protobuf records of a .wandb file: a LevelDB-style log, a 7-byte header, then 32 KiB
    blocks of chunks, each with a 7-byte header (crc32, length, type 1 full / 2 first / 3 middle /
    4 last)."""
    from wandb.proto import wandb_internal_pb2

    with open(path, "rb") as f:
        data = f.read()
    assert data[:4] == b":W&B", f"{path} is not a wandb log"
    position, block, pending, records = 7, 32768, b"", []
    while position + 7 <= len(data):
        if block - position % block < 7:  # a block's tail too short for a chunk header is padding
            position += block - position % block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        pending += data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind == 0:
            break
        if kind in (1, 4):
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            records.append(record)
            pending = b""
    return records


def test_wandb_offline_run_holds_the_settings_and_the_logged_rows(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb-cache"))
    run_dir = tmp_path / "tiny"
    run_dir.mkdir()
    log_rows("wandb", run_dir)
    (log_file,) = glob.glob(str(run_dir / "wandb" / "offline-run-*" / "*.wandb"))
    records = wandb_records(log_file)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.display_name == "tiny"
    settings = {
        item.key: json.loads(item.value_json) for item in run.config.update if item.key != "_wandb"
    }
    assert settings == SETTINGS
    read = {}
    for record in records:
        if record.WhichOneof("record_type") == "history":
            items = {
                "/".join(item.nested_key) or item.key: json.loads(item.value_json)
                for item in record.history.item
            }
            for key, value in items.items():
                if not key.startswith("_"):  # wandb's own _step, _runtime, _timestamp
                    read.setdefault(key, []).append((items["_step"], value))
    assert read == expected_scalars(ROWS)


@pytest.mark.parametrize("kind,package", [("tensorboard", "tensorboard"), ("wandb", "wandb")])
def test_a_missing_package_is_a_one_line_error_naming_it(kind, package, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, package, None)  # `import package` now raises ImportError
    with pytest.raises(config.ConfigError) as error:
        tracker.open_tracker(kind, str(tmp_path), SETTINGS)
    message = str(error.value)
    assert "\n" not in message and f"'{package}'" in message and f"pip install {package}" in message
    assert os.listdir(tmp_path) == []


def test_none_writes_nothing_and_an_unknown_kind_is_refused(tmp_path):
    log_rows("none", tmp_path)
    assert os.listdir(tmp_path) == []
    with pytest.raises(
        config.ConfigError,
        match="run.tracker must be one of none, tensorboard, wandb, got 'mlflow'",
    ):
        tracker.open_tracker("mlflow", str(tmp_path), SETTINGS)


RUN_HAS_TRACKER = "tracker" in {f.name for f in dataclasses.fields(config.RunConfig)}


@pytest.mark.skipif(
    not RUN_HAS_TRACKER, reason="run.tracker is not wired into config.py/train.py yet"
)
def test_a_tiny_run_with_tensorboard_writes_the_rows_of_metrics_jsonl(tmp_path):
    pytest.importorskip("tensorboard")
    import numpy as np
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    import train

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    tiny = os.path.join(repo, "configs", "tiny.yaml")
    overrides = ["--run.out_dir", str(tmp_path), "--run.tracker", "tensorboard", "--rl.steps", "2"]
    cfg, _ = config.parse_args(["--config", tiny, *overrides, "--eval.every", "1"])
    train.train(cfg, log=lambda *args: None)
    run_dir = tmp_path / cfg.run.name
    with open(run_dir / "metrics.jsonl") as f:
        rows = [json.loads(line) for line in f]
    events = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    events.Reload()
    read = {
        tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]
    }
    logged = {
        tag: [(step, float(np.float32(value))) for step, value in points]
        for tag, points in expected_scalars([(row.pop("step"), row) for row in rows]).items()
    }
    assert read == logged


def test_a_resumed_tensorboard_run_replaces_the_steps_after_its_checkpoint(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    first = [(step, {"train/reward": float(step)}) for step in range(1, 5)]
    log_rows("tensorboard", tmp_path, first)
    run = tracker.open_tracker("tensorboard", str(tmp_path), SETTINGS, resume_step=2)
    for step in (3, 4):
        run.log(step, {"train/reward": 10.0 * step})
    run.close()
    events = EventAccumulator(str(tmp_path), size_guidance={"scalars": 0})
    events.Reload()
    read = [(e.step, e.value) for e in events.Scalars("train/reward")]
    assert read == [(1, 1.0), (2, 2.0), (3, 30.0), (4, 40.0)]
