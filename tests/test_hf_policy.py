"""Hugging Face models in passk's loop, offline: tiny random Qwen2 and Llama models and a locally
trained tokenizer, saved to a temp dir and loaded through the path a user's model takes (model.hf).

Checked against transformers itself: greedy decoding equals `generate` (dynamic, static and
compiled caches), per-token log-probs equal the model's own forward log_softmax, two real RL
steps change the weights, checkpoints reload with `from_pretrained`, padded vocabulary ids are
never sampled, and bad input is a one-line error that names it.
"""

import dataclasses
import json
import os
from itertools import combinations

import pytest
import torch
import transformers
from tokenizers import Tokenizer, decoders, models as bpe_models, pre_tokenizers, trainers

import checkpoint
import build
import config
import optim
import eval as evaluation
import tasks
import ppo
import train
from hf_policy import load_hf
from hf_tokenizer import HFTokenizer
from rollout import generate, left_pad

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(REPO, "data", "math_sample.jsonl")
TINY = os.path.join(REPO, "configs", "tiny.yaml")
CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
PROMPTS = ["What is 7 + 5?", "Solve for x: 2x + 3 = 11, and then tell me why.", "2^10?"]
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Matrices this small run fastest on one thread (no OpenMP hand-offs), above all on a busy
    machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def train_tokenizer(chat_template):
    """A byte-level BPE trained on the sample problems, wrapped as a transformers fast tokenizer."""
    bpe = Tokenizer(bpe_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    with open(SAMPLE) as f:
        texts = [json.loads(line)["prompt"] for line in f] + ["The answer is \\boxed{12}."]
    bpe.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        chat_template=chat_template,
    )


@pytest.fixture(scope="session")
def hf_dirs(tmp_path_factory):
    """{'qwen': folder, 'llama': folder}: an instruct-like Qwen2 (chat template, tied, embedding
    padded to a
    multiple of 64 as Qwen's is) and a base-like Llama (no chat template, untied, 2*d padded
    rows)."""
    root = tmp_path_factory.mktemp("hf")
    dirs = {}
    for name, template in (("qwen", CHATML), ("llama", None)):
        hf_tokenizer = train_tokenizer(template)
        V = len(hf_tokenizer)
        common = dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=512,
            initializer_range=0.2,
        )
        if name == "qwen":
            model_config = transformers.Qwen2Config(
                vocab_size=64 * -(-V // 64) + 64, tie_word_embeddings=True, **common
            )
        else:
            model_config = transformers.LlamaConfig(
                vocab_size=V + 64, tie_word_embeddings=False, **common
            )
        torch.manual_seed(0)
        model = transformers.AutoModelForCausalLM.from_config(model_config)
        dirs[name] = str(root / name)
        model.save_pretrained(dirs[name])
        hf_tokenizer.save_pretrained(dirs[name])
    return dirs


def load(hf_dirs, name, **options):
    policy, tokenizer = load_hf(hf_dirs[name], "cpu", chat=name == "qwen", **options)
    return policy.eval(), tokenizer


def hf_greedy(policy, tokenizer, prompts, max_new_tokens):
    """transformers' own generate on the same left-padded batch, padded ids suppressed as passk
    masks them."""
    ids, mask = left_pad(prompts, tokenizer.pad_id, "cpu")
    out = policy.model.generate(
        input_ids=ids,
        attention_mask=mask,
        do_sample=False,
        max_new_tokens=max_new_tokens,
        eos_token_id=tokenizer.eos_ids,
        pad_token_id=tokenizer.pad_id,
        suppress_tokens=list(range(tokenizer.vocab_size, policy.lm_head.weight.shape[0])),
    )
    return out[:, ids.shape[1] :]


# ----------------------------------------------------------------------------- sampling


@pytest.mark.parametrize(
    "name, decode",
    [("qwen", "dynamic"), ("qwen", "static"), ("llama", "dynamic"), ("llama", "static")],
)
def test_greedy_sampler_equals_transformers_generate(hf_dirs, name, decode):
    policy, tokenizer = load(hf_dirs, name, decode=decode)
    prompts = [tokenizer.encode_prompt(p) for p in PROMPTS]
    # different lengths: left padding is exercised
    assert len({len(p) for p in prompts}) == len(prompts)
    rollout = generate(
        policy,
        prompts,
        n=2,
        max_new_tokens=12,
        eos_ids=tokenizer.eos_ids,
        pad_id=tokenizer.pad_id,
        valid_vocab=tokenizer.vocab_size,
        seeds=[0, 1, 2],
        temperature=0.0,
    )
    expected = hf_greedy(policy, tokenizer, prompts, 12)  # [B, 12]
    for row in range(len(prompts) * 2):
        length = int(rollout.response_mask[row].sum())
        assert rollout.tokens[row, :length].tolist() == expected[row // 2, :length].tolist(), row
    # not one repeated token
    assert len(set(rollout.tokens[rollout.response_mask.bool()].tolist())) > 3


def test_static_cache_under_bf16_autocast_equals_dynamic(hf_dirs):
    """model.dtype bfloat16 (CPU autocast here, as on CUDA): RoPE leaves keys float32 while values
    are bf16,
    so the static cache must keep each tensor's own dtype (it failed in index_copy_ on an H200)."""
    outputs = []
    for decode in ("dynamic", "static"):
        policy, tokenizer = load(hf_dirs, "qwen", decode=decode, dtype="bfloat16")
        prompts = [tokenizer.encode_prompt(p) for p in PROMPTS]
        outputs.append(
            generate(
                policy,
                prompts,
                n=2,
                max_new_tokens=8,
                eos_ids=tokenizer.eos_ids,
                pad_id=tokenizer.pad_id,
                valid_vocab=tokenizer.vocab_size,
                seeds=[0, 1, 2],
                temperature=0.0,
            ).tokens
        )
    assert torch.equal(outputs[0], outputs[1])


def test_compiled_decode_step_equals_eager(hf_dirs):
    """decode: compiled (static cache + torch.compile'd one-token step, inductor) gives the eager
    tokens."""
    prompts_text = PROMPTS[1:]
    outputs = []
    for decode in ("dynamic", "compiled"):
        policy, tokenizer = load(hf_dirs, "llama", decode=decode)
        prompts = [tokenizer.encode_prompt(p) for p in prompts_text]
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


def test_sampling_at_temperature_one_reproduces_by_seed_and_prefill_repeats_rows(hf_dirs):
    policy, tokenizer = load(hf_dirs, "qwen")
    prompts = [tokenizer.encode_prompt(p) for p in PROMPTS]
    options = dict(
        n=4,
        max_new_tokens=10,
        eos_ids=tokenizer.eos_ids,
        pad_id=tokenizer.pad_id,
        valid_vocab=tokenizer.vocab_size,
        temperature=1.0,
    )
    batch = generate(policy, prompts, seeds=[5, 6, 7], **options)
    alone = generate(policy, prompts[2:], seeds=[7], **options)
    assert torch.equal(batch.tokens[8:, : alone.tokens.shape[1]], alone.tokens)
    assert len({tuple(r) for r in alone.tokens.tolist()}) > 1


def test_padded_vocabulary_is_never_sampled(hf_dirs):
    """Rows past len(tokenizer) made to win every argmax: the sampler still never emits them."""
    policy, tokenizer = load(hf_dirs, "llama")
    head = policy.lm_head.weight  # [V + 64, 32], untied
    valid, d = tokenizer.vocab_size, head.shape[1]
    with (
        torch.no_grad()
    ):  # padded rows +-10 e_i: their top logit is 10 max|h_i|, far above any real row's
        head[valid : valid + 2 * d] = 10 * torch.cat([torch.eye(d), -torch.eye(d)])
    prompts = [tokenizer.encode_prompt(p) for p in PROMPTS]
    ids, mask = left_pad(prompts, tokenizer.pad_id, "cpu")
    logits, _ = policy.prefill(ids, mask, 1, 4)
    assert (logits.argmax(-1) >= valid).all()  # unmasked, every row would pick a padded id
    for temperature, top_p in ((0.0, 1.0), (1.0, 1.0), (1.5, 0.9)):
        rollout = generate(
            policy,
            prompts,
            n=8,
            max_new_tokens=16,
            eos_ids=tokenizer.eos_ids,
            pad_id=tokenizer.pad_id,
            valid_vocab=valid,
            seeds=[1, 2, 3],
            temperature=temperature,
            top_p=top_p,
        )
        assert rollout.tokens.max() < valid
    assert tokenizer.vocab_size == len(tokenizer.hf) < head.shape[0]


# ----------------------------------------------------------------------------- log-probs


def response_batch(tokenizer, group_size):
    """Left-padded prompts, each repeated group_size times, followed by right-padded responses."""
    torch.manual_seed(1)
    prompts = [tokenizer.encode_prompt(p) for p in PROMPTS for _ in range(group_size)]
    prompt_ids, prompt_mask = left_pad(prompts, tokenizer.pad_id, "cpu")
    R, L = len(prompts), 6
    responses = torch.randint(3, tokenizer.vocab_size, (R, L))
    lengths = torch.tensor([6, 2, 4, 5, 1, 3][:R] * (R // 6 + 1))[:R]
    response_mask = (torch.arange(L)[None] < lengths[:, None]).float()  # [R, L]
    responses = responses.masked_fill(response_mask == 0, tokenizer.pad_id)
    return (
        torch.cat([prompt_ids, responses], 1),
        torch.cat([prompt_mask, response_mask.long()], 1),
        response_mask,
    )


@pytest.mark.parametrize(
    "name, group_size, fused",
    [("qwen", 1, True), ("qwen", 2, True), ("llama", 1, False), ("llama", 2, True)],
)
def test_logprobs_equal_the_models_own_log_softmax(hf_dirs, name, group_size, fused):
    policy, tokenizer = load(hf_dirs, name)
    input_ids, attention_mask, response_mask = response_batch(tokenizer, group_size)
    L, valid = response_mask.shape[1], tokenizer.vocab_size
    logp, entropy = policy(
        input_ids,
        attention_mask,
        response_mask,
        temperature=0.7,
        valid_vocab=valid,
        return_entropy=True,
        fused=fused,
        group_size=group_size,
    )
    with torch.no_grad():
        positions = (attention_mask.cumsum(1) - 1).clamp(min=0)
        logits = policy.model(
            input_ids=input_ids, attention_mask=attention_mask, position_ids=positions
        ).logits
    reference = (logits[:, -L - 1 : -1, :valid].double() / 0.7).log_softmax(-1)  # [R, L, valid]
    expected = reference.gather(-1, input_ids[:, -L:, None])[..., 0] * response_mask
    expected_entropy = -(reference.exp() * reference).sum(-1) * response_mask
    torch.testing.assert_close(logp.double(), expected, atol=2e-5, rtol=0)
    torch.testing.assert_close(entropy.double(), expected_entropy, atol=2e-5, rtol=0)
    (logp.sum() + entropy.sum()).backward()  # gradients reach the float32 master weights
    assert policy.lm_head.weight.grad is not None and policy.lm_head.weight.grad.abs().sum() > 0
    assert all(p.grad is None or torch.isfinite(p.grad).all() for p in policy.parameters())


def test_bfloat16_autocast_keeps_float32_weights_and_stays_close(hf_dirs):
    policy, tokenizer = load(hf_dirs, "qwen", dtype="bfloat16")
    reference, _ = load(hf_dirs, "qwen")
    input_ids, attention_mask, response_mask = response_batch(tokenizer, 1)
    logp, _ = policy(input_ids, attention_mask, response_mask, valid_vocab=tokenizer.vocab_size)
    expected, _ = reference(
        input_ids, attention_mask, response_mask, valid_vocab=tokenizer.vocab_size
    )
    assert all(p.dtype == torch.float32 for p in policy.parameters())
    assert logp.dtype == torch.float32
    torch.testing.assert_close(logp, expected, atol=0.1, rtol=0.05)
    assert not torch.equal(logp, expected)  # bf16 compute did happen


# ----------------------------------------------------------------------------- the RL loop and
# checkpoints


def math_config(tmp_path, hf_dir, *overrides):
    cfg, _ = build.parse_config(
        [
            "--config",
            TINY,
            "--run.out_dir",
            str(tmp_path),
            "--model.hf",
            hf_dir,
            "--model.chat",
            "true",
            "--task.name",
            "math",
            "--task.train_file",
            SAMPLE,
            "--task.n_heldout",
            "8",
            "--task.max_new_tokens",
            "12",
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
            "--rl.kl_coef",
            "0.1",
            "--reward.workers",
            "0",
            *overrides,
        ]
    )
    return cfg


def test_two_rl_steps_change_the_weights_and_the_checkpoint_reloads(hf_dirs, tmp_path, monkeypatch):
    # a random model never solves a problem: rewards alternating over responses give the advantages
    # a signal
    monkeypatch.setattr(
        ppo.reward,
        "score_batch",
        lambda task, texts, golds, **_: [i % 2 * 1.0 for i in range(len(texts))],
    )
    cfg = math_config(tmp_path, hf_dirs["qwen"])
    device = torch.device("cpu")
    task = build.build_task(cfg)
    policy, tokenizer = build.build_policy(cfg, device)
    reference = build.build_policy(cfg, device)[0]  # as train.train builds it when kl_coef > 0
    reference.load_state_dict(policy.state_dict())
    reference.requires_grad_(False).eval()
    before = {n: p.detach().clone() for n, p in policy.named_parameters()}
    optimizer = optim.make_optimizer(policy, cfg.rl.lr, 0.0)
    for step in range(2):
        metrics = train.rl_step(step, cfg, policy, reference, optimizer, task, tokenizer, device)
        assert metrics["train/skipped_updates"] == 0 and metrics["train/adv_abs"] > 0
    assert metrics["train/kl_ref"] > 0
    changed = [n for n, p in policy.named_parameters() if not torch.equal(p, before[n])]
    assert len(changed) == len(before), set(before) - set(changed)

    saved = checkpoint.save_checkpoint(
        tmp_path / "run", 2, policy, {"step": 2}, dataclasses.asdict(cfg)
    )
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(saved, dtype=torch.float32)
    for name, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, policy.model.state_dict()[name]), name
    _, loaded_policy, loaded_tokenizer, _ = build.load_for_eval(str(tmp_path / "run"))
    assert loaded_tokenizer.encode_prompt(PROMPTS[0]) == tokenizer.encode_prompt(PROMPTS[0])
    fresh, _ = load(hf_dirs, "qwen")
    fresh.load_weights(saved)  # the warm start's reload path
    for name, tensor in fresh.state_dict().items():
        assert torch.equal(tensor, loaded_policy.state_dict()[name]), name


def test_eval_cli_writes_a_passk_table_with_intervals_and_a_plot(hf_dirs, tmp_path):
    rows = evaluation.main(
        [
            "--model",
            hf_dirs["qwen"],
            "--chat",
            "--data",
            SAMPLE,
            "--problems",
            "3",
            "--n",
            "4",
            "--max-new-tokens",
            "6",
            "--out",
            str(tmp_path),
            "--batch",
            "2",
        ]
    )
    assert [r["k"] for r in rows] == [1, 2, 3, 4]
    assert all(r["low"] <= r["pass@k"] <= r["high"] for r in rows)
    for name in ("passk.md", "passk.json", "passk_curve.png"):
        assert (tmp_path / name).exists()
    assert "| 4 |" in (tmp_path / "passk.md").read_text()


def test_pass_at_k_intervals_against_brute_force():
    correct, n = [0, 1, 3, 4, 2], 4
    rows = evaluation.pass_at_k_intervals(correct, n, n_boot=4000)
    assert [r["k"] for r in rows] == [1, 2, 3, 4]
    for row in rows:
        k = row["k"]
        # brute force: the share of k-subsets of the n samples holding a correct one, averaged over
        # problems
        exact = sum(
            sum(any(i < c for i in subset) for subset in combinations(range(n), k))
            / len(list(combinations(range(n), k)))
            for c in correct
        ) / len(correct)
        assert row["pass@k"] == pytest.approx(exact)
        assert row["low"] < row["pass@k"] < row["high"]
    same = evaluation.pass_at_k_intervals([2, 2, 2], 4)
    # no spread between problems: no interval
    assert all(r["low"] == r["pass@k"] == r["high"] for r in same)


# ----------------------------------------------------------------------------- tokenizer and math
# data


def test_tokenizer_wrapper_chat_template_eos_and_decode(hf_dirs):
    _, tokenizer = load(hf_dirs, "qwen")
    ids = tokenizer.encode_prompt("What is 7 + 5?")
    assert (
        tokenizer.hf.decode(ids)
        == "<|im_start|>user\nWhat is 7 + 5?<|im_end|>\n<|im_start|>assistant\n"
    )
    im_end = tokenizer.hf.convert_tokens_to_ids("<|im_end|>")
    assert tokenizer.eos_ids[0] == im_end  # eos_token first: it ends warm-start demonstrations
    assert tokenizer.hf.convert_tokens_to_ids("<|endoftext|>") in tokenizer.eos_ids
    answer = tokenizer.encode("The answer is \\boxed{12}.")
    assert (
        tokenizer.decode(answer + [im_end] + tokenizer.encode(" junk"))
        == "The answer is \\boxed{12}."
    )
    with_system = HFTokenizer(tokenizer.hf, chat=True, system_prompt="Be brief.")
    assert tokenizer.hf.decode(with_system.encode_prompt("hi")).startswith(
        "<|im_start|>system\nBe brief.<|im_end|>"
    )
    plain = HFTokenizer(tokenizer.hf)
    assert plain.encode_prompt("What is 7 + 5?") == tokenizer.encode("What is 7 + 5?")
    tokenizer.hf.pad_token = None
    assert HFTokenizer(tokenizer.hf).pad_id == tokenizer.eos_ids[0]  # falls back to an EOS id


def test_math_task_templates_splits_and_determinism(tmp_path):
    task = tasks.MathTask(SAMPLE, seed=3, n_heldout=8, template="gsm8k")
    assert task.name == "math" and len(task.heldout) == 8
    assert not task.heldout_prompts & {p.prompt for p in task.train}
    assert all("\\boxed{}" in p.prompt and p.demo is None for p in task.heldout)
    again = tasks.MathTask(SAMPLE, seed=3, n_heldout=8, template="gsm8k")
    batches = [
        [p.prompt for p in t.train_batch("rl", step, 16)] for t in (task, again) for step in (0, 5)
    ]
    assert batches[:2] == batches[2:] and batches[0] != batches[1]
    # 40 = len(train)
    epoch = [p.prompt for step in range(5) for p in task.train_batch("rl", step, 8)]
    # each epoch visits every problem once
    assert sorted(epoch) == sorted(p.prompt for p in task.train)
    # GSM8K's own field names and its "reasoning #### answer" format
    mapped = tmp_path / "gsm8k.jsonl"
    mapped.write_text(
        "".join(
            json.dumps({"question": f"{i}+2?", "solution": f"{i}+2={i + 2} #### {i + 2}"}) + "\n"
            for i in range(4)
        )
    )
    with_test_file = tasks.MathTask(
        str(mapped),
        str(mapped),
        n_heldout=1,
        prompt_field="question",
        answer_field="solution",
        template="plain",
    )
    assert [(p.prompt, p.gold) for p in with_test_file.heldout] == [("0+2?", "2")]
    assert [p.prompt for p in with_test_file.train] == ["1+2?", "2+2?", "3+2?"]
    parquet = tmp_path / "math.parquet"
    import pyarrow
    import pyarrow.parquet

    pyarrow.parquet.write_table(
        pyarrow.table({"prompt": ["1+1?", "3*3?"], "answer": ["2", "9"]}), parquet
    )
    assert [p.gold for p in tasks.load_math_problems(str(parquet))] == ["2", "9"]


# ----------------------------------------------------------------------------- one-line errors


def cli_error(*args) -> str:
    """What `python train.py ARGS` prints when it exits with an error (train.main, in this
    process)."""
    with pytest.raises(SystemExit) as exit_info:
        train.main(list(args))
    return str(exit_info.value.code)


def test_a_missing_model_path_is_a_one_line_error():
    assert (
        cli_error("--config", TINY, "--model.hf", "/nonexistent/model")
        == "error: model.hf: no model folder at /nonexistent/model"
    )
    with pytest.raises(ValueError, match="no model folder at ./missing/model"):
        load_hf("./missing/model", "cpu")


def test_data_errors_name_the_file_line_and_field(tmp_path):
    no_answer = tmp_path / "no_answer.jsonl"
    no_answer.write_text(json.dumps({"prompt": "1+1?", "solution": "2"}) + "\n")
    message = cli_error(
        "--config",
        TINY,
        "--task.name",
        "math",
        "--task.train_file",
        str(no_answer),
        "--sft.steps",
        "0",
        "--run.out_dir",
        str(tmp_path),
    )
    assert len(message.splitlines()) == 1 and f"{no_answer}:1" in message
    assert "'answer'" in message and "task.answer_field" in message
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"prompt": "1+1?", "answer": "2"}\n\n{"prompt": "2+2?", "answer": \n')
    with pytest.raises(ValueError, match=f"{broken}:3: not valid JSON"):
        tasks.load_math_problems(str(broken))
    with pytest.raises(config.ConfigError, match="sft.steps: 0"):
        build.parse_config(["--config", TINY, "--task.name", "math", "--task.train_file", SAMPLE])


def test_bad_bytes_odd_answers_and_overlong_prompts_are_refused_with_file_and_line(
    hf_dirs, tmp_path
):
    latin = tmp_path / "latin1.jsonl"
    latin.write_bytes(b'{"prompt": "1+1?", "answer": "2"}\n{"prompt": "caf\xe9?", "answer": "3"}\n')
    with pytest.raises(ValueError, match=f"{latin}:2: not UTF-8 text"):
        tasks.load_math_problems(str(latin))
    for answer in (True, [1, 2], {"a": 1}, None):
        odd = tmp_path / "odd.jsonl"
        odd.write_text(json.dumps({"prompt": "1+1?", "answer": answer}) + "\n")
        with pytest.raises(
            ValueError, match=f"{odd}:1: 'answer' must be non-empty text or a number"
        ):
            tasks.load_math_problems(str(odd))
    numbers = tmp_path / "numbers.jsonl"
    numbers.write_text(json.dumps({"prompt": "1+1?", "answer": 2}) + "\n")
    assert tasks.load_math_problems(str(numbers))[0].gold == "2"
    # the tiny Qwen has 512 positions; a 6,000-word prompt cannot fit
    long = tmp_path / "long.jsonl"
    long.write_text(
        "".join(
            json.dumps(
                {"prompt": f"{i}+1?" + " and" * (6000 if i == 3 else 1), "answer": str(i + 1)}
            )
            + "\n"
            for i in range(12)
        )
    )
    cfg = math_config(tmp_path, hf_dirs["qwen"], "--task.train_file", str(long))
    policy, tokenizer = build.build_policy(cfg, torch.device("cpu"))
    with pytest.raises(
        config.ConfigError,
        match=f"{long}:4: the prompt is [0-9]+ tokens, more than the 500 the "
        f"model's 512 positions leave",
    ):
        build.check_prompt_lengths(cfg, build.build_task(cfg), tokenizer, policy.context_length)


def test_chat_formatting_without_a_chat_template_is_a_one_line_error(hf_dirs, tmp_path):
    cfg = math_config(tmp_path, hf_dirs["llama"])  # the base-like model's tokenizer has no template
    with pytest.raises(config.ConfigError) as error:
        build.build_policy(cfg, torch.device("cpu"))
    message = str(error.value)
    assert (
        len(message.splitlines()) == 1
        and "no chat template" in message
        and hf_dirs["llama"] in message
    )


@pytest.mark.parametrize("config_file", ["math_qwen05b.yaml", "math_qwen7b.yaml"])
def test_math_configs_parse_and_follow_the_paper(config_file):
    cfg, _ = build.parse_config(["--config", os.path.join(REPO, "configs", config_file)])
    assert (
        cfg.task.name == "math" and cfg.model.hf.startswith("Qwen/Qwen2.5-") and cfg.sft.steps == 0
    )
    assert (cfg.rl.eps_low, cfg.rl.eps_high, cfg.rl.kl_coef, cfg.rl.temperature, cfg.rl.lr) == (
        0.2,
        0.28,
        0.0,
        1.0,
        1e-6,
    )
    assert cfg.eval.top_p == 0.95 and cfg.rl.advantage == "passk_analytic"
    if (
        config_file == "math_qwen7b.yaml"
    ):  # prompt batch 128, 32 rollouts, mini-batch of 32 prompts' worth
        assert (cfg.rl.prompts_per_step, cfg.rl.responses_per_prompt, cfg.rl.minibatches) == (
            128,
            32,
            4,
        )
