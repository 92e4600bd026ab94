"""eval.py's CLI as a user meets it: every example in its docstring (and so in --help) runs against
tiny stand-in runs built in tmp_path; --ckpt takes a run, a ckpt_N and a `latest` file alike; a
missing path and checkpoints of different recipes are one-line errors; --ckpt writes passk.md,
passk.json and passk_curve.png."""

import dataclasses
import json
import os
import shlex
import shutil

import pytest
import torch
from test_hf_policy import CHATML, SAMPLE, train_tokenizer

import build
import checkpoint
import eval as evaluation
import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.yaml")
EXAMPLES = [
    line.strip().split("  #")[0].strip()
    for line in evaluation.__doc__.splitlines()
    if line.strip().startswith("python eval.py")
]
# argparse keeps the last value
FAST = [
    "--n",
    "4",
    "--problems",
    "3",
    "--max-new-tokens",
    "6",
    "--batch",
    "2",
]


def train_tiny(root, name, *overrides):
    """A real tiny maze run: 3 SFT steps, 2 RL steps, no in-training eval (seconds)."""
    cfg, _ = build.parse_config(
        [
            "--config",
            TINY,
            "--run.out_dir",
            str(root / "runs"),
            "--run.name",
            name,
            "--run.threads",
            "1",
            "--sft.steps",
            "3",
            "--rl.steps",
            "2",
            "--eval.every",
            "0",
            "--eval.before",
            "false",
            "--eval.n_problems",
            "2",
            "--eval.n_samples",
            "2",
            "--eval.ks",
            "[1, 2]",
            *overrides,
        ]
    )
    train.train(cfg, log=lambda *_: None)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory):
    """What the docstring's examples name, relative to a working directory: runs/maze (with a
    ckpt_120, the demo's last step), runs/maze_pass1, three seeds of runs/study/pass1_s*, a local
    Qwen/Qwen2.5-0.5B-Instruct (a tiny Qwen2 with a chat template), data/math_sample.jsonl,
    math_test.jsonl and runs/math_qwen05b."""
    threads = torch.get_num_threads()
    root = tmp_path_factory.mktemp("eval_cli")
    train_tiny(root, "maze")
    shutil.copytree(
        checkpoint.latest_checkpoint(str(root / "runs" / "maze")),
        root / "runs" / "maze" / "ckpt_120",
    )
    train_tiny(root, "maze_pass1", "--rl.advantage", "grpo", "--rl.k", "1")
    for seed in range(3):
        train_tiny(
            root,
            f"study/pass1_s{seed}",
            "--rl.advantage",
            "grpo",
            "--rl.k",
            "1",
            "--run.seed",
            str(seed),
        )
    torch.set_num_threads(threads)
    import transformers  # a tiny Qwen2 stands in for Qwen/Qwen2.5-0.5B-Instruct: nothing downloaded

    qwen = root / "Qwen" / "Qwen2.5-0.5B-Instruct"
    hf_tokenizer = train_tokenizer(CHATML)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(
        transformers.Qwen2Config(
            vocab_size=64 * -(-len(hf_tokenizer) // 64),
            tie_word_embeddings=True,
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
        )
    )
    model.save_pretrained(qwen)
    hf_tokenizer.save_pretrained(qwen)
    (root / "data").mkdir()
    shutil.copy(SAMPLE, root / "data" / "math_sample.jsonl")
    shutil.copy(SAMPLE, root / "math_test.jsonl")
    cfg, _ = build.parse_config(
        [
            "--config",
            TINY,
            "--run.out_dir",
            str(root / "runs"),
            "--run.name",
            "math_qwen05b",
            "--model.hf",
            str(qwen),
            "--model.chat",
            "true",
            "--task.name",
            "math",
            "--task.train_file",
            SAMPLE,
            "--task.n_heldout",
            "4",
            "--task.max_new_tokens",
            "6",
            "--eval.n_problems",
            "4",
            "--sft.steps",
            "0",
            "--reward.workers",
            "0",
        ]
    )
    policy, _ = build.build_policy(cfg, torch.device("cpu"))
    checkpoint.save_checkpoint(
        root / "runs" / "math_qwen05b", 1, policy, {"step": 1}, dataclasses.asdict(cfg)
    )
    return root


def test_the_docstring_has_examples_and_help_shows_them(capsys):
    assert (
        len(EXAMPLES) >= 8
        and any("/latest" in e for e in EXAMPLES)
        and any("ckpt_" in e for e in EXAMPLES)
    )
    with pytest.raises(SystemExit) as stop:
        evaluation.main(["--help"])
    assert stop.value.code == 0
    shown = capsys.readouterr().out
    assert all(example in shown for example in EXAMPLES)


@pytest.mark.parametrize("example", EXAMPLES)
def test_every_docstring_example_runs(example, workspace, monkeypatch, capsys):
    monkeypatch.chdir(workspace)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(1)
    argv = shlex.split(example)[2:]
    evaluation.main(argv + ([] if "--plot" in argv else FAST))
    printed = capsys.readouterr().out
    if "--plot" in argv:
        assert "wrote" in printed
        return
    out = (
        argv[argv.index("--out") + 1]
        if "--out" in argv
        else printed.split("wrote ")[-1].split("/passk.md")[0]
    )
    for name in ("passk.md", "passk.json", "passk_curve.png"):
        assert (workspace / out / name).stat().st_size > 0, (example, out, name)
    assert "cover@tau" in (workspace / out / "passk.md").read_text()
    assert [row["k"] for row in json.loads((workspace / out / "passk.json").read_text())] == [
        1,
        2,
        3,
        4,
    ]


def test_a_run_dir_a_ckpt_dir_and_the_latest_file_name_the_same_checkpoint(workspace, tmp_path):
    run = workspace / "runs" / "maze"
    latest = checkpoint.latest_checkpoint(str(run))
    assert (
        evaluation.checkpoint_dir(str(run))
        == latest
        == evaluation.checkpoint_dir(str(run / "latest"))
    )
    assert evaluation.checkpoint_dir(latest) == latest
    torch.set_num_threads(1)
    tables = []
    for index, path in enumerate((run, run / "latest", latest)):
        evaluation.main(["--ckpt", str(path), *FAST, "--out", str(tmp_path / str(index))])
        tables.append((tmp_path / str(index) / "passk.json").read_text())
    assert tables[0] == tables[1] == tables[2]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ckpt", "runs/nope"], ["runs/nope", "no such file or directory"]),
        (["--ckpt", "runs/maze/ckpt_999"], ["ckpt_999", "no such file or directory"]),
        (["--ckpt", "data/math_sample.jsonl"], ["not a run's `latest`"]),
        (["--ckpt", "data"], ["neither a checkpoint", "nor a run directory"]),
        (
            ["--ckpt", "runs/maze", "runs/maze_pass1"],
            ["differ in more than the seed (rl.advantage, rl.k)"],
        ),
        (["--ckpt", "runs/nope", "--data", "math_test.jsonl"], ["no such file or directory"]),
    ],
)
def test_bad_checkpoints_are_one_line_errors(args, words, workspace, monkeypatch):
    monkeypatch.chdir(workspace)
    with pytest.raises(SystemExit) as stop:
        evaluation.main(args)
    message = str(stop.value)
    assert (
        message.startswith("error: ")
        and "\n" not in message
        and "config.yaml missing" not in message
    )
    for word in words:
        assert word in message


def test_seeds_of_one_recipe_are_accepted_and_averaged(workspace, capsys, tmp_path):
    seeds = [str(workspace / "runs" / "study" / f"pass1_s{seed}") for seed in range(3)]
    assert evaluation.recipe_differences([evaluation.checkpoint_dir(s) for s in seeds]) == []
    torch.set_num_threads(1)
    rows = evaluation.main(["--ckpt", *seeds, *FAST, "--out", str(tmp_path)])
    assert "t-interval over seeds" in capsys.readouterr().out and [r["k"] for r in rows] == [
        1,
        2,
        3,
        4,
    ]
    assert all(r["low"] <= r["pass@k"] <= r["high"] for r in rows)
