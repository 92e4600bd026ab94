"""bench/memory.py on a tiny Qwen2 shape, in this process: every part it accounts from the tensors
equals the count a naive formula gives, and its prediction at a measured batch gives back that
batch's peaks."""

import argparse
import os
import sys

import pytest
import torch

import config

sys.path.insert(
    0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench")
)
import memory  # noqa: E402  (bench/memory.py)

TINY = memory.SHAPES["tiny"]
BATCH = dict(prompts=2, n=4, prompt_tokens=12, new_tokens=8)


@pytest.fixture(scope="module")
def measured():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    results = {
        mode: memory.measure(
            argparse.Namespace(shape="tiny", mode=mode, device="cpu", rss=False, **BATCH)
        )
        for mode in ("full", "lora")
    }
    yield results
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_the_accounted_parts_equal_naive_counts(measured, mode):
    result, parts = measured[mode], measured[mode]["parts"]
    large = result["steps"]["large"]
    d, layers, V = TINY["hidden_size"], TINY["num_hidden_layers"], TINY["vocab_size"]
    policy = memory.build_policy("tiny", mode, torch.device("cpu"))
    # the tied head once
    weights = {p.data_ptr(): p.numel() * p.element_size() for p in policy.parameters()}
    assert parts["weights"] == sum(weights.values())
    trained = [
        p for n, p in policy.named_parameters() if (".lora_" in n if mode == "lora" else True)
    ]
    assert result["trainable"] == sum(p.numel() for p in trained)
    assert parts["gradients"] == 4 * result["trainable"]
    # two moments, a step each
    assert parts["optimizer state"] == 2 * 4 * result["trainable"] + 4 * len(trained)

    rows, slots = large["kv"]["rows"], large["kv"]["slots"]
    assert (
        rows == (BATCH["prompts"] + 1) * BATCH["n"]
        and slots == BATCH["prompt_tokens"] + BATCH["new_tokens"] - 1
    )
    with (
        torch.no_grad()
    ):  # the cache's dtypes as the sampler leaves them (under bf16 autocast RoPE keeps keys fp32)
        _, state = policy.eval().prefill(
            torch.ones(1, 3, dtype=torch.long), torch.ones(1, 3, dtype=torch.long), 1, 1
        )
    layer = state.kv.layers[0]
    head_dim = d // TINY["num_attention_heads"]
    per_slot = (
        layers
        * TINY["num_key_value_heads"]
        * head_dim
        * (layer.keys.element_size() + layer.values.element_size())
    )
    assert parts["rollout KV cache"] == rows * slots * per_slot

    micro_rows, tokens = large["micro"]["rows"], large["micro"]["tokens"]
    assert micro_rows == rows // 2 and tokens == micro_rows * (
        BATCH["prompt_tokens"] + BATCH["new_tokens"]
    )
    # the residual stream: float32 weights' dtype, or the bf16 base's
    hidden_bytes = 4 if mode == "full" else 2
    # what gradient checkpointing keeps, at least
    assert parts["activations"] >= layers * tokens * d * hidden_bytes
    # the float32 head's bf16 cast
    assert parts["weight copies"] == (V * d * 2 if mode == "full" else 0)


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_adamws_step_is_seen_with_its_temporaries(measured, mode):
    """AdamW's step on the CPU (one parameter at a time) divides a fresh sqrt of the second moment:
    two temporaries of the largest parameter's size at least, above the weights, gradients and
    state."""
    policy = memory.build_policy("tiny", mode, torch.device("cpu"))
    largest = max(p.numel() * 4 for p in policy.parameters() if p.requires_grad)
    for step in ("small", "large"):
        phase = measured[mode]["steps"][step]["phases"]["optimizer step"]
        assert phase["peak"] - phase["persistent"] >= 2 * largest, step


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_the_prediction_at_a_measured_batch_gives_back_its_measured_peaks(measured, mode):
    result = measured[mode]
    for step in ("small", "large"):
        cfg = config.Config()
        cfg.rl.prompts_per_step = result["steps"][step]["prompts"]
        cfg.rl.responses_per_prompt, cfg.rl.minibatches, cfg.rl.micro_batch = BATCH["n"], 2, 0
        # the cache holds every token but the last
        cfg.task.max_new_tokens = BATCH["new_tokens"] - 1
        predicted = memory.predict(result, cfg, "tiny", BATCH["prompt_tokens"])
        phases = result["steps"][step]["phases"]
        assert not predicted["extrapolated"]
        if step == "large":  # the KV cache is the large step's, as measured
            assert predicted["phases"]["rollout"] == pytest.approx(
                phases["rollout"]["peak"], rel=1e-9
            )
        cfg.task.max_new_tokens += 1  # the log-probs see every response token
        predicted = memory.predict(result, cfg, "tiny", BATCH["prompt_tokens"])
        for name in ("old log-probs", "optimizer step"):
            assert predicted["phases"][name] == pytest.approx(phases[name]["peak"], rel=1e-9), (
                step,
                name,
            )
        # the update's line rises at least as fast as its activations (all alive as its backward
        # begins)
        lines = memory.phase_lines(result)
        if (
            lines["update"]["slope"]
            >= result["parts"]["activations"] / result["steps"]["large"]["micro"]["tokens"]
        ):
            assert predicted["phases"]["update"] == pytest.approx(
                phases["update"]["peak"], rel=1e-9
            ), step
        assert predicted["phases"]["update"] >= phases["update"]["peak"] * (1 - 1e-9), step
    cfg.rl.prompts_per_step *= (
        2  # twice the rows: twice the cache and the activations, the same weights
    )
    doubled = memory.predict(result, cfg, "tiny", BATCH["prompt_tokens"])
    assert doubled["kv"] == pytest.approx(2 * predicted["kv"])
    assert doubled["activations"] == pytest.approx(2 * predicted["activations"])
    assert doubled["fixed"] == predicted["fixed"]


def test_parameters_counted_on_the_meta_device_equal_a_built_model():
    for mode in ("full", "lora"):
        policy = memory.build_policy("tiny", mode, torch.device("cpu"))
        assert memory.count_parameters("tiny", mode) == (
            sum(p.numel() for p in policy.parameters()),
            sum(p.numel() for p in policy.parameters() if p.requires_grad),
        )
    # Qwen2.5-0.5B as its model card counts it
    assert memory.count_parameters("0.5b", "full")[0] == 494_032_768


def test_the_allocation_meter_counts_every_tensor_exactly():
    meter = memory.AllocationMeter(torch.device("cpu"))
    alive_before = torch.ones(1000, 250)  # allocated before the phase: not the phase's
    with meter.phase() as record:
        kept = torch.ones(1000, 250)  # 1,000,000 bytes, kept
        with meter.mark():
            scratch = torch.ones(2000, 250)  # 2,000,000 bytes, freed inside the marked span
            left = torch.ones(500, 250)  # 500,000 bytes the span leaves alive: not its transient
            del scratch
        # its free is unknown to the phase (allocated before it) and changes nothing
        del alive_before
    assert record["peak"] == 3_500_000 and record["transient"] == 2_000_000
    del kept, left


def test_the_resident_meter_sees_the_pages_a_phase_touched():
    meter = memory.ResidentMeter(torch.device("cpu"))
    with meter.phase() as record:
        block = torch.ones(64 * 2**20 // 4)  # 64 MiB, every page written
        del block
    # above the process's start, where the meter began (pages: a little slack)
    assert record["peak"] >= 60 * 2**20


@pytest.mark.parametrize("mode", ["full", "lora"])
def test_an_extrapolation_to_a_deeper_shape_counts_its_weights_exactly(measured, mode, monkeypatch):
    deeper = {**TINY, "num_hidden_layers": 5}
    monkeypatch.setitem(memory.SHAPES, "deeper", deeper)
    cfg = config.Config()
    cfg.rl.responses_per_prompt, cfg.rl.minibatches = BATCH["n"], 2
    predicted = memory.predict(measured[mode], cfg, "deeper", BATCH["prompt_tokens"])
    policy = memory.build_policy("deeper", mode, torch.device("cpu"))
    assert predicted["extrapolated"]
    assert predicted["fixed"]["weights"] == pytest.approx(
        memory.tensor_bytes(policy.parameters()), rel=1e-12
    )
    trained = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    assert predicted["fixed"]["gradients"] == pytest.approx(4 * trained, rel=1e-12)
    assert predicted["kv"] / memory.predict(measured[mode], cfg, "tiny", BATCH["prompt_tokens"])[
        "kv"
    ] == pytest.approx(5 / 2)  # KV bytes per slot scale with the layers
