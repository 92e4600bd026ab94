"""train.py under torchrun, on CPU with gloo: two ranks make the single-process update, a two-rank
run resumes from its checkpoint, FSDP2 does both for a tiny random Hugging Face model, and DDP
trains its LoRA adapters.

Every run is the real entry point (train.main) in fresh processes, started by
`python -m torch.distributed.run`. The reward is swapped for a fixed pseudo-random 0/1 function of
the response text (a CRC): an untrained tiny policy then gets advantages with signal, so the weights
move and a wrong update shows; it depends on the text alone, so it is the same at any rank count.
"""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

import build

import config
import train

# noqa: F401  (session fixture: tiny random Qwen2 and Llama folders)
from test_hf_policy import hf_dirs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY = os.path.join(REPO, "configs", "tiny.yaml")
SAMPLE = os.path.join(REPO, "data", "math_sample.jsonl")
LAUNCHER = f"""
import sys, zlib
sys.path.insert(0, {REPO!r})
import reward, train
reward.score_batch = lambda task, texts, golds, **options: [float(zlib.crc32(t.encode()) % 2) for t
in texts]
train.main()
"""
# the tiny GPT, 2 RL steps with a checkpoint after each; step 0 ranks prompts by entropy (the
# gathered
# entropies), step 1 draws bootstrap groups (the generator every rank seeds alike)
GPT_ARGS = [
    "--config",
    TINY,
    "--sft.steps",
    "10",
    "--rl.steps",
    "2",
    "--task.max_new_tokens",
    "16",
    "--eval.every",
    "0",
    "--eval.n_problems",
    "2",
    "--eval.n_samples",
    "2",
    "--eval.ks",
    "[1, 2]",
    "--run.checkpoint_every",
    "1",
    "--run.keep_checkpoints",
    "5",
    "--run.threads",
    "1",
    "--rl.schedule",
    "[{until_step: 1, advantage: entropy_adaptive, k: 2}, "
    "{until_step: 2, advantage: passk_bootstrap, k: 2}]",
]


def launch(out_dir, ranks, *args):
    """train.main with the text-hash reward, in one process or under torchrun with `ranks`
    processes."""
    os.makedirs(out_dir, exist_ok=True)
    script = os.path.join(out_dir, "launch.py")
    with open(script, "w") as f:
        f.write(LAUNCHER)
    command = (
        [sys.executable, script]
        if ranks == 1
        else [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            f"--nproc_per_node={ranks}",
            script,
        ]
    )
    # a crash prints its Python stack
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONFAULTHANDLER": "1",
    }
    result = subprocess.run(
        [*command, "--run.out_dir", str(out_dir), *args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env=env,
    )
    with open(
        os.path.join(out_dir, "launch.log"), "a"
    ) as f:  # the whole output, for a failure's first error
        f.write(" ".join(map(str, result.args)) + "\n" + result.stdout + result.stderr)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]


def metrics(run_dir) -> list[dict]:
    with open(os.path.join(run_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_metrics(expected: list[dict], got: list[dict], rel):
    # rank 0 alone writes: no step twice
    assert [r["step"] for r in got] == [r["step"] for r in expected]
    for want, have in zip(expected, got):
        for key, value in want.items():
            # time/*, and the share of rows run: one process skips prompts whose advantages are all
            # 0, ranks
            # run every row (the same update, a different amount of work)
            if key.startswith("time/") or key == "train/updated_rows_frac":
                continue
            if isinstance(value, str):  # train/advantage names the estimator: compared exactly
                assert have[key] == value, (want["step"], key)
            else:
                assert have[key] == pytest.approx(value, rel=rel, abs=1e-6), (want["step"], key)


def weights(checkpoint) -> dict:
    return load_file(os.path.join(checkpoint, "model.safetensors"))


def assert_same_weights(expected: dict, got: dict, atol):
    assert sorted(got) == sorted(expected)
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=0, atol=atol, msg=name)


def resume_copy(run_dir, new_dir, step):
    """A copy of a finished run, cut back to its checkpoint at `step` (as if it had stopped
    there)."""
    shutil.copytree(run_dir, new_dir)
    for name in os.listdir(new_dir):
        if name.startswith("ckpt_") and int(name[5:]) > step:
            shutil.rmtree(os.path.join(new_dir, name))
    with open(os.path.join(new_dir, "latest"), "w") as f:
        f.write(f"ckpt_{step}\n")


def largest_change(before: dict, after: dict) -> float:
    return max(float((after[name] - before[name]).abs().max()) for name in before)


# ----------------------------------------------------------------------------- DDP, the tiny GPT


@pytest.fixture(scope="module")
def ddp_runs(tmp_path_factory):
    """one/single (one process) and two/ddp (2 ranks, micro-batches of 2 rows: no_sync
    accumulation), each
    with its own warm-start cache: under torchrun every rank trains it, rank 0 writes it."""
    root = tmp_path_factory.mktemp("ddp")
    launch(root / "one", 1, *GPT_ARGS, "--run.name", "single")
    launch(root / "two", 2, *GPT_ARGS, "--run.name", "ddp", "--rl.micro_batch", "2")
    return root


def test_two_ddp_ranks_make_the_single_process_update(ddp_runs):
    single, ddp = ddp_runs / "one" / "single", ddp_runs / "two" / "ddp"
    for step in (1, 2):
        assert_same_weights(
            weights(single / f"ckpt_{step}"), weights(ddp / f"ckpt_{step}"), atol=2e-6
        )
    (warm_start,) = (ddp_runs / "two" / "_warmstart").iterdir()
    # far above atol
    assert largest_change(weights(warm_start / "ckpt_10"), weights(ddp / "ckpt_1")) > 1e-3
    # train/* of both steps, eval before and after
    assert_same_metrics(metrics(single), metrics(ddp), rel=1e-5)
    assert (
        metrics(ddp)[1]["train/adv_abs"] > 0
        and metrics(ddp)[1]["train/advantage"] == "entropy_adaptive"
    )
    state = torch.load(ddp / "ckpt_2" / "trainer.pt", weights_only=False)
    # every rank's RNG; rank 0 wrote the whole optimizer
    assert len(state["rng"]) == 2 and "optimizer" in state


def test_a_two_rank_run_resumes_from_its_checkpoint(ddp_runs):
    out_dir = ddp_runs / "two"
    resume_copy(out_dir / "ddp", out_dir / "resumed", step=1)
    launch(out_dir, 2, *GPT_ARGS, "--run.name", "resumed", "--rl.micro_batch", "2", "--resume")
    assert_same_weights(
        weights(out_dir / "ddp" / "ckpt_2"), weights(out_dir / "resumed" / "ckpt_2"), atol=1e-7
    )
    assert_same_metrics(metrics(out_dir / "ddp"), metrics(out_dir / "resumed"), rel=1e-6)


# ----------------------------------------------------------------------------- FSDP2, a Hugging
# Face model


def hf_args(model_dir):
    return [
        "--config",
        TINY,
        "--model.hf",
        model_dir,
        "--model.chat",
        "true",
        "--task.name",
        "math",
        "--task.train_file",
        SAMPLE,
        "--task.n_heldout",
        "8",
        "--task.max_new_tokens",
        "8",
        "--sft.steps",
        "0",
        "--rl.prompts_per_step",
        "2",
        "--rl.responses_per_prompt",
        "4",
        "--rl.minibatches",
        "2",
        "--rl.lr",
        "1e-3",
        "--rl.steps",
        "2",
        "--reward.workers",
        "0",
        "--eval.every",
        "0",
        "--eval.n_problems",
        "2",
        "--eval.n_samples",
        "2",
        "--eval.ks",
        "[1, 2]",
        "--run.checkpoint_every",
        "1",
        "--run.keep_checkpoints",
        "5",
        "--run.threads",
        "1",
    ]


@pytest.fixture(scope="module")
def fsdp_runs(tmp_path_factory, hf_dirs):
    """runs/single (one process) and runs/fsdp (2 ranks, FSDP2: run.distributed auto with
    model.hf)."""
    root = tmp_path_factory.mktemp("fsdp")
    launch(root, 1, *hf_args(hf_dirs["qwen"]), "--run.name", "single")
    launch(root, 2, *hf_args(hf_dirs["qwen"]), "--run.name", "fsdp")
    return root


def test_fsdp2_ranks_make_the_single_process_update_and_write_shards(fsdp_runs, hf_dirs):
    single, fsdp = fsdp_runs / "single", fsdp_runs / "fsdp"
    for step in (
        1,
        2,
    ):  # the consolidated export: the same tensors as save_pretrained (tied head written once)
        assert_same_weights(
            weights(single / f"ckpt_{step}"), weights(fsdp / f"ckpt_{step}"), atol=2e-6
        )
    assert largest_change(weights(hf_dirs["qwen"]), weights(fsdp / "ckpt_1")) > 1e-3
    assert_same_metrics(metrics(single), metrics(fsdp), rel=1e-5)
    assert sorted(os.listdir(fsdp / "ckpt_1" / "shards")) == [
        ".metadata",
        "__0_0.distcp",
        "__1_0.distcp",
    ]
    assert not any(name.endswith(".tmp-ranks") for name in os.listdir(fsdp))
    # the export is an ordinary Hugging Face folder
    _, policy, _, _ = build.load_for_eval(str(fsdp))
    assert torch.equal(policy.lm_head.weight, weights(fsdp / "ckpt_2")["model.embed_tokens.weight"])


@pytest.mark.parametrize("ranks", [2, 1])
def test_an_fsdp2_run_resumes_from_its_shards_at_two_ranks_or_one(fsdp_runs, hf_dirs, ranks):
    name = f"resumed_{ranks}"
    resume_copy(fsdp_runs / "fsdp", fsdp_runs / name, step=1)
    launch(fsdp_runs, ranks, *hf_args(hf_dirs["qwen"]), "--run.name", name, "--resume")
    assert_same_weights(
        weights(fsdp_runs / "fsdp" / "ckpt_2"), weights(fsdp_runs / name / "ckpt_2"), atol=2e-6
    )
    assert_same_metrics(metrics(fsdp_runs / "fsdp"), metrics(fsdp_runs / name), rel=1e-5)


# ----------------------------------------------------------------------------- config errors


def test_distributed_config_errors_name_the_problem(tmp_path, monkeypatch):
    with pytest.raises(config.ConfigError, match="run.distributed 'zero'"):
        config.parse_args(["--config", TINY, "--run.distributed", "zero"])
    with pytest.raises(config.ConfigError, match="fsdp shards Hugging Face models"):
        config.parse_args(["--config", TINY, "--run.distributed", "fsdp"])
    cfg, _ = config.parse_args(["--config", TINY, "--run.out_dir", str(tmp_path)])
    # as if torchrun had started 3 ranks
    monkeypatch.setattr(train.distributed, "world_size", lambda: 3)
    with pytest.raises(
        config.ConfigError,
        match=r"prompts_per_step=4 must be a multiple of the number of ranks \(3\)",
    ):
        train.train(cfg)


# ----------------------------------------------------------------------------- DDP over LoRA
# adapters


def test_two_ddp_ranks_train_lora_adapters_as_one_process_does(tmp_path, hf_dirs):
    """run.distributed auto picks DDP for LoRA: only the adapters train, and the update is one
    process's."""
    lora = [
        *hf_args(hf_dirs["qwen"]),
        "--model.lora_rank",
        "4",
        "--rl.lr",
        "1e-2",
        "--rl.kl_coef",
        "0.1",
    ]
    launch(tmp_path, 1, *lora, "--run.name", "single")
    launch(tmp_path, 2, *lora, "--run.name", "ddp")
    adapters = lambda run, step: load_file(
        os.path.join(tmp_path, run, f"ckpt_{step}", "adapter_model.safetensors")
    )
    for step in (
        1,
        2,
    ):  # AdamW at lr 1e-2 turns float32 noise in a near-0 gradient into up to ~3e-6
        assert_same_weights(adapters("single", step), adapters("ddp", step), atol=1e-5)
    # B starts at 0 and 4 AdamW updates at lr 1e-2 move it up to ~0.04: it trained
    assert max(float(t.abs().max()) for n, t in adapters("ddp", 2).items() if "lora_B" in n) > 0.01
    assert_same_metrics(metrics(tmp_path / "single"), metrics(tmp_path / "ddp"), rel=1e-5)
    assert metrics(tmp_path / "ddp")[1]["train/kl_ref"] > 0
    assert not os.path.exists(os.path.join(tmp_path, "ddp", "ckpt_2", "shards"))  # DDP, not FSDP2
