"""LoRA policies (model.lora_rank > 0, peft) on the tiny random Qwen2 (tied head) and Llama (untied)
of test_hf_policy, offline and on the CPU.

Checked: an RL step changes the adapters only (the base weights bit for bit the same, in float32 and
in a bf16 base); the fused log-prob path gives the log-probs and adapter gradients of a full-logits
reference
on the wrapped model and never computes a gradient of the frozen head; the adapter checkpoint
reloads
with peft itself, and merged weights give the log-probs of base + adapters; a resumed run continues
with
the same metrics; with a KL term the reference is the base model (adapters off) and no row skips the
update; the compiled sampler samples what the eager one does; bad settings are one-line errors.
"""

import dataclasses
import json
import os

import pytest
import torch
import transformers
from safetensors.torch import load_file

import checkpoint
import build
import config
import optim
import distributed
import hf_policy
import logprob
import ppo
import train
import warm_start
from hf_policy import HFPolicy, LoraOptions, load_hf
from rollout import generate

# noqa: F401 (fixtures)
from test_hf_policy import PROMPTS, hf_dirs, math_config, one_thread, response_batch
from test_train import interrupt_rl_step


def load_lora(hf_dirs, name, rank=4, randomize=True, **options):
    """A LoRA policy; randomize: lora_B drawn at random (peft starts it at 0, where the adapters do
    nothing)."""
    policy, tokenizer = load_hf(
        hf_dirs[name], "cpu", chat=name == "qwen", lora=LoraOptions(rank=rank), **options
    )
    if randomize:
        torch.manual_seed(3)
        with torch.no_grad():
            for parameter_name, parameter in policy.named_parameters():
                if ".lora_B." in parameter_name:
                    parameter.normal_(0, 0.2)
    return policy.eval(), tokenizer


def adapter_names(policy) -> set:
    return {n for n, p in policy.named_parameters() if ".lora_" in n}


def lora_config(tmp_path, hf_dir, *overrides):
    return math_config(tmp_path, hf_dir, "--model.lora_rank", "4", "--rl.kl_coef", "0", *overrides)


def alternating_rewards(monkeypatch):
    """A random model never solves a problem: rewards alternating over responses give every prompt a
    signal."""
    monkeypatch.setattr(
        ppo.reward,
        "score_batch",
        lambda task, texts, golds, **_: [i % 2 * 1.0 for i in range(len(texts))],
    )


# ----------------------------------------------------------------------------- training changes the
# adapters only


@pytest.mark.parametrize(
    "name, base_dtype", [("qwen", "float32"), ("llama", "float32"), ("qwen", "bfloat16")]
)
def test_an_rl_step_changes_only_the_adapters(hf_dirs, tmp_path, monkeypatch, name, base_dtype):
    alternating_rewards(monkeypatch)
    cfg = lora_config(
        tmp_path,
        hf_dirs[name],
        "--model.chat",
        str(name == "qwen").lower(),
        "--model.base_dtype",
        base_dtype,
    )
    device = torch.device("cpu")
    task = build.build_task(cfg)
    policy, tokenizer = build.build_policy(cfg, device)
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    adapters = adapter_names(policy)
    assert adapters and {n for n, p in policy.named_parameters() if p.requires_grad} == adapters
    base_type = torch.bfloat16 if base_dtype == "bfloat16" else torch.float32
    assert {p.dtype for n, p in policy.named_parameters() if n not in adapters} == {base_type}
    assert {p.dtype for n, p in policy.named_parameters() if n in adapters} == {torch.float32}
    # a bf16 base computes under bf16 autocast, even on the CPU
    assert policy.compute_dtype == base_type
    optimizer = optim.make_optimizer(policy, cfg.rl.lr, 0.0)
    metrics = train.rl_step(0, cfg, policy, None, optimizer, task, tokenizer, device)
    assert metrics["train/skipped_updates"] == 0 and metrics["train/adv_abs"] > 0
    changed = {n for n, p in policy.named_parameters() if not torch.equal(p, before[n])}
    assert changed == adapters  # lora_A too: the second mini-batch sees the B the first one moved
    assert policy.lm_head.weight.grad is None
    # AdamW's moments
    state = [t for s in optimizer.state.values() for t in s.values() if t.dim() > 0]
    assert sum(t.numel() for t in state) == 2 * sum(
        policy.get_parameter(n).numel() for n in adapters
    )
    assert {t.dtype for t in state} == {torch.float32}


# ----------------------------------------------------------------------------- the log-prob path


@pytest.mark.parametrize("name, group_size", [("qwen", 1), ("qwen", 2), ("llama", 2)])
def test_fused_logprobs_and_adapter_gradients_equal_a_full_logits_reference(
    hf_dirs, monkeypatch, name, group_size
):
    policy, tokenizer = load_lora(hf_dirs, name)
    input_ids, attention_mask, response_mask = response_batch(tokenizer, group_size)
    L, valid = response_mask.shape[1], tokenizer.vocab_size
    weights = torch.rand(response_mask.shape)  # a loss that weighs every token differently
    weight_gradients = []
    real_backward = logprob._backward
    monkeypatch.setattr(
        logprob,
        "_backward",
        lambda *args: weight_gradients.append(args[-1]) or real_backward(*args),
    )
    logp, _ = policy(
        input_ids,
        attention_mask,
        response_mask,
        temperature=0.7,
        valid_vocab=valid,
        group_size=group_size,
    )
    (logp * weights).sum().backward()
    fused_gradients = {
        n: p.grad.clone() for n, p in policy.named_parameters() if p.grad is not None
    }
    assert weight_gradients == [False]  # the fused backward ran, and never for the frozen head
    assert policy.lm_head.weight.grad is None and set(fused_gradients) == adapter_names(policy)

    # the naive reference: peft's own forward, full logits over the vocabulary
    policy.zero_grad(set_to_none=True)
    positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
    logits = policy.model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=positions
    ).logits
    log_softmax = (logits[:, -L - 1 : -1, :valid] / 0.7).log_softmax(-1)  # [R, L, valid]
    expected = log_softmax.gather(-1, input_ids[:, -L:, None])[..., 0] * response_mask
    (expected * weights).sum().backward()
    torch.testing.assert_close(logp, expected.detach(), atol=2e-5, rtol=0)
    for parameter_name, gradient in fused_gradients.items():
        expected_gradient = policy.get_parameter(
            parameter_name
        ).grad  # float32 sums in another order: a relative bound
        torch.testing.assert_close(
            gradient, expected_gradient, atol=2e-5 * expected_gradient.abs().max(), rtol=0
        )
    # the adapters do get a gradient
    assert max(g.abs().max() for g in fused_gradients.values()) > 1e-3


# ----------------------------------------------------------------------------- checkpoints


def test_the_adapter_checkpoint_reloads_with_peft_merges_and_evaluates(hf_dirs, tmp_path):
    from peft import PeftModel

    cfg = lora_config(tmp_path, hf_dirs["qwen"])
    policy, tokenizer = load_lora(hf_dirs, "qwen")
    saved = checkpoint.save_checkpoint(
        tmp_path / "run", 3, policy, {"step": 3}, dataclasses.asdict(cfg)
    )
    assert "model.safetensors" not in os.listdir(saved)  # the adapters only, every one of them
    saved_tensors = load_file(os.path.join(saved, "adapter_model.safetensors"))
    assert len(saved_tensors) == len(adapter_names(policy)) and all(
        ".lora_" in n for n in saved_tensors
    )

    batch = response_batch(tokenizer, 1)
    with torch.no_grad():
        trained, _ = policy(*batch, valid_vocab=tokenizer.vocab_size)
        base = transformers.AutoModelForCausalLM.from_pretrained(
            hf_dirs["qwen"], dtype=torch.float32
        )
        with_peft = PeftModel.from_pretrained(base, saved).eval()  # peft's own loader
        reloaded, _ = HFPolicy(with_peft)(*batch, valid_vocab=tokenizer.vocab_size)
        torch.testing.assert_close(reloaded, trained, atol=1e-6, rtol=0)
        merged, _ = HFPolicy(with_peft.merge_and_unload())(*batch, valid_vocab=tokenizer.vocab_size)
        # float32: merging only reorders sums
        torch.testing.assert_close(merged, trained, atol=1e-5, rtol=0)
        _, for_eval, _, _ = build.load_for_eval(str(tmp_path / "run"))  # eval.py --ckpt's path
        evaluated, _ = for_eval.eval()(*batch, valid_vocab=tokenizer.vocab_size)
    torch.testing.assert_close(evaluated, trained, atol=1e-6, rtol=0)
    # adapters matter
    assert not torch.equal(trained, HFPolicy(base)(*batch, valid_vocab=tokenizer.vocab_size)[0])
    with pytest.raises(ValueError, match="holds LoRA adapters, not a whole model"):
        load_hf(saved, "cpu")
    with pytest.raises(ValueError, match="adapters of another shape"):
        load_lora(hf_dirs, "qwen", rank=2, randomize=False)[0].load_weights(saved)


def test_a_resumed_lora_run_continues_with_the_same_metrics(hf_dirs, tmp_path, monkeypatch):
    alternating_rewards(monkeypatch)
    small = [
        "--rl.steps",
        "3",
        "--rl.kl_coef",
        "0.1",
        "--run.checkpoint_every",
        "1",
        "--eval.before",
        "false",
        "--eval.every",
        "0",
        "--eval.n_problems",
        "2",
        "--eval.n_samples",
        "2",
        "--eval.ks",
        "[1, 2]",
    ]
    train.train(
        lora_config(tmp_path, hf_dirs["qwen"], *small, "--run.name", "straight"),
        log=lambda *a: None,
    )
    real_step = interrupt_rl_step(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        train.train(
            lora_config(tmp_path, hf_dirs["qwen"], *small, "--run.name", "cut"), log=lambda *a: None
        )
    monkeypatch.setattr(train, "rl_step", real_step)
    train.train(
        lora_config(tmp_path, hf_dirs["qwen"], *small, "--run.name", "cut", "--resume"),
        log=lambda *a: None,
    )

    def train_metrics(run):
        with open(tmp_path / run / "metrics.jsonl") as f:
            rows = [json.loads(line) for line in f]
        return [{k: v for k, v in r.items() if k.startswith(("train/", "eval/"))} for r in rows]

    expected, got = train_metrics("straight"), train_metrics("cut")
    # 3 steps and the final evaluation
    assert len(expected) == 4 and expected[-2]["train/kl_ref"] > 0
    assert [sorted(r) for r in got] == [sorted(r) for r in expected]
    for want, have in zip(expected, got):
        for key, value in want.items():
            assert have[key] == (
                pytest.approx(value, rel=1e-6, abs=1e-9) if isinstance(value, float) else value
            ), key
    adapters = [
        load_file(tmp_path / run / "ckpt_3" / "adapter_model.safetensors")
        for run in ("straight", "cut")
    ]
    for name, tensor in adapters[0].items():
        torch.testing.assert_close(adapters[1][name], tensor, atol=1e-7, rtol=0)


# ----------------------------------------------------------------------------- the KL reference


@pytest.mark.parametrize("kl_coef", [0.1, 0.0])
def test_with_a_kl_term_the_reference_is_the_base_model_and_no_row_is_skipped(
    hf_dirs, tmp_path, monkeypatch, kl_coef
):
    # prompt 0: every response right (silent, advantages all 0); prompt 1: alternating (a signal)
    monkeypatch.setattr(
        ppo.reward,
        "score_batch",
        lambda task, texts, golds, **_: [
            1.0 if i < len(texts) // 2 else i % 2 * 1.0 for i in range(len(texts))
        ],
    )
    batches = []
    real_update = ppo.ppo_update
    monkeypatch.setattr(
        ppo,
        "ppo_update",
        lambda cfg, policy, batch, rows: (
            batches.append(batch) or real_update(cfg, policy, batch, rows)
        ),
    )
    cfg = lora_config(tmp_path, hf_dirs["qwen"], "--rl.kl_coef", str(kl_coef))
    policy, tokenizer = load_lora(hf_dirs, "qwen")
    reference = policy.without_adapters() if kl_coef > 0 else None  # as train.train builds it
    optimizer = optim.make_optimizer(policy, cfg.rl.lr, 0.0)
    metrics = train.rl_step(
        0, cfg, policy, reference, optimizer, build.build_task(cfg), tokenizer, torch.device("cpu")
    )
    batch = batches[0]
    assert metrics["train/zero_advantage_frac"] == 0.5
    if (
        kl_coef == 0
    ):  # the contrast: without a KL term the silent prompt skips the forward and backward
        assert (
            batch.skip_zero_advantage
            and batch.ref_logp is None
            and metrics["train/updated_rows_frac"] == 0.5
        )
        return
    assert (
        not batch.skip_zero_advantage
        and metrics["train/updated_rows_frac"] == 1.0
        and metrics["train/kl_ref"] > 0
    )
    base, _ = load_hf(hf_dirs["qwen"], "cpu", chat=True)  # the model without any adapters
    with torch.no_grad():
        expected, _ = base.eval()(
            batch.input_ids,
            batch.attention_mask,
            batch.response_mask,
            valid_vocab=tokenizer.vocab_size,
            group_size=cfg.rl.responses_per_prompt,
        )
        with_adapters, _ = policy.eval()(
            batch.input_ids,
            batch.attention_mask,
            batch.response_mask,
            valid_vocab=tokenizer.vocab_size,
        )
    torch.testing.assert_close(batch.ref_logp, expected, atol=1e-6, rtol=0)
    assert (
        batch.ref_logp - with_adapters
    ).abs().max() > 1e-2  # the adapters are on again outside the reference


# ----------------------------------------------------------------------------- sampling


def test_the_compiled_sampler_with_adapters_samples_what_the_eager_one_does(hf_dirs):
    outputs = []
    for decode in ("dynamic", "compiled"):
        policy, tokenizer = load_lora(hf_dirs, "llama", decode=decode)
        prompts = [tokenizer.encode_prompt(p) for p in PROMPTS[1:]]
        outputs.append(
            generate(
                policy,
                prompts,
                n=1,
                max_new_tokens=8,
                eos_ids=tokenizer.eos_ids,
                pad_id=tokenizer.pad_id,
                valid_vocab=tokenizer.vocab_size,
                seeds=[0, 1],
                temperature=0.0,
            ).tokens
        )
    assert torch.equal(outputs[0], outputs[1])
    plain, _ = load_hf(hf_dirs["llama"], "cpu")
    without = generate(
        plain.eval(),
        prompts,
        n=1,
        max_new_tokens=8,
        eos_ids=tokenizer.eos_ids,
        pad_id=tokenizer.pad_id,
        valid_vocab=tokenizer.vocab_size,
        seeds=[0, 1],
        temperature=0.0,
    )
    assert not torch.equal(without.tokens, outputs[0])  # the sampler did run the adapters


# ----------------------------------------------------------------------------- one-line errors


@pytest.mark.parametrize(
    "args, words",
    [
        (["--model.lora_targets", "[q_proj, lm_head]"], "lm_head cannot take an adapter"),
        (["--model.lora_targets", "[embed_tokens]"], "embed_tokens cannot take an adapter"),
        (["--model.lora_rank", "-1"], "model.lora_rank=-1 is out of range"),
        (["--model.lora_alpha", "0"], "model.lora_alpha=0.0 is out of range: it must be > 0"),
        (
            ["--model.lora_dropout", "1.5"],
            "model.lora_dropout=1.5 is out of range: it must be in [0, 1)",
        ),
        (["--run.distributed", "fsdp"], "fsdp with LoRA is not supported"),
        (
            ["--model.lora_rank", "0", "--model.base_dtype", "bfloat16"],
            "base_dtype bfloat16 needs model.lora_rank > 0",
        ),
        (["--model.base_dtype", "float16"], "model.base_dtype 'float16'"),
        (
            ["--model.lora_rank", "0", "--model.lora_targets", "[q_proj]"],
            "need model.lora_rank > 0",
        ),
    ],
)
def test_bad_lora_settings_are_one_line_errors(hf_dirs, tmp_path, args, words):
    with pytest.raises(config.ConfigError) as error:
        lora_config(tmp_path, hf_dirs["qwen"], *args)
    assert words in str(error.value) and len(str(error.value).splitlines()) == 1


def test_lora_elsewhere_is_refused_with_a_one_line_error(hf_dirs, tmp_path):
    tiny = os.path.join(os.path.dirname(config.__file__), "configs", "tiny.yaml")
    with pytest.raises(config.ConfigError, match="for Hugging Face models"):
        build.parse_config(["--config", tiny, "--model.lora_rank", "8"])
    with pytest.raises(
        config.ConfigError, match="not the adapters a warm start"
    ):  # a reference that is not the start
        build.parse_config(
            [
                "--config",
                tiny,
                "--model.hf",
                hf_dirs["qwen"],
                "--model.lora_rank",
                "8",
                "--rl.kl_coef",
                "0.1",
            ]
        )
    with pytest.raises(
        ValueError, match="lm_head cannot take an adapter"
    ):  # a target peft would have matched
        load_hf(hf_dirs["qwen"], "cpu", lora=LoraOptions(rank=2, targets=["lm_head"]))
    with pytest.raises(ValueError, match="model.dtype float32 cannot run a bfloat16 base"):
        load_hf(
            hf_dirs["qwen"], "cpu", lora=LoraOptions(rank=2), base_dtype="bfloat16", dtype="float32"
        )
    with pytest.raises(ValueError, match="model.lora_targets \\['nothing_here'\\]"):
        load_hf(hf_dirs["qwen"], "cpu", lora=LoraOptions(rank=2, targets=["nothing_here"]))
    assert distributed.resolve_mode("auto", hf=True, lora=True) == "ddp"
    assert distributed.resolve_mode("auto", hf=True) == "fsdp" and hf_policy.LORA_REFUSED_TARGETS


def test_the_warm_start_key_of_a_run_without_lora_is_what_it_was(hf_dirs, tmp_path):
    """The cache key hashes the model section: the fields LoRA added stay out of it at their
    defaults, so
    warm starts cached before LoRA existed are found again (the study's, above all)."""
    import hashlib

    tiny = os.path.join(os.path.dirname(config.__file__), "configs", "tiny.yaml")
    cfg, _ = build.parse_config(["--config", tiny, "--run.out_dir", str(tmp_path)])
    # the model section as it was
    before_lora = {
        k: v
        for k, v in dataclasses.asdict(cfg.model).items()
        if not k.startswith("lora_") and k != "base_dtype"
    }
    source = json.dumps(
        {
            "model": before_lora,
            "task": dataclasses.asdict(cfg.task),
            "sft": dataclasses.asdict(cfg.sft),
            "seed": cfg.run.seed,
        },
        sort_keys=True,
    )
    assert warm_start.warm_start_dir(cfg) == os.path.join(
        str(tmp_path), "_warmstart", hashlib.sha1(source.encode()).hexdigest()[:12]
    )
    with_lora, _ = build.parse_config(
        [
            "--config",
            tiny,
            "--run.out_dir",
            str(tmp_path),
            "--model.hf",
            hf_dirs["qwen"],
            "--model.lora_rank",
            "4",
        ]
    )
    with_lora.model.hf = cfg.model.hf
    # a LoRA warm start is a cache of its own
    assert warm_start.warm_start_dir(with_lora) != warm_start.warm_start_dir(cfg)


def test_the_single_gpu_config_is_the_papers_recipe_with_adapters():
    configs = os.path.join(os.path.dirname(config.__file__), "configs")
    lora, _ = build.parse_config(["--config", os.path.join(configs, "math_qwen7b_lora.yaml")])
    paper, _ = build.parse_config(["--config", os.path.join(configs, "math_qwen7b.yaml")])
    changed = {
        f"{section}.{key}"
        for section, values in dataclasses.asdict(lora).items()
        for key, value in values.items()
        if value != dataclasses.asdict(paper)[section][key]
    }
    assert changed <= {
        "run.name",
        "model.lora_rank",
        "model.lora_alpha",
        "rl.lr",
        "rl.rollout_prompts",
        "rl.micro_batch",
    }, changed
    assert (
        lora.model.lora_rank > 0
        and lora.rl.responses_per_prompt == 32
        and lora.rl.prompts_per_step == 128
    )
    assert distributed.resolve_mode(lora.run.distributed, bool(lora.model.hf), lora=True) == "ddp"
