"""adapters/trl_passk.py against the real TRL (GRPOTrainer, 1.16.0), on the CPU, offline.

A tiny random Qwen2 and a tokenizer trained on a few strings, saved to tmp and loaded back by TRL
from the folder, run a real training step with PasskGRPOTrainer. The advantages its loss received
(recorded in compute_loss, after TRL's shuffle) must equal advantage.py's estimator over each
prompt's num_generations rewards, as the reward function returned them; the step must change the
weights. A non-binary reward is a one-line error naming estimator and value. Runs in the adapters'
environment (.ci/venv-adapters): `python -m pytest adapters/tests`.
"""

import math
from collections import Counter

import pytest
import torch

import advantage

pytest.importorskip("trl", reason="trl is installed by requirements-adapters.txt (.ci/run does)")

import transformers  # noqa: E402
from datasets import Dataset  # noqa: E402

# noqa: E402
from tokenizers import Tokenizer, decoders, models as bpe_models, pre_tokenizers, trainers
from trl import GRPOConfig  # noqa: E402

from adapters.trl_passk import PasskGRPOTrainer  # noqa: E402

TEXTS = [
    "What is 7 + 5?",
    "Solve for x: 2x + 3 = 11.",
    "2^10?",
    "The answer is \\boxed{12}.",
    "Count the vowels in banana.",
    "Name a prime above 20.",
]
NUM_GENERATIONS, K = 4, 2
transformers.logging.set_verbosity_error()


@pytest.fixture(scope="module")
def tiny_qwen(tmp_path_factory):
    """A folder with a random 2-layer Qwen2 and a byte-level BPE tokenizer, for from_pretrained."""
    bpe = Tokenizer(bpe_models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        TEXTS,
        trainers.BpeTrainer(
            vocab_size=300,
            special_tokens=["<|endoftext|>", "<|im_end|>"],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=bpe, eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    config = transformers.Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        tie_word_embeddings=True,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    folder = str(tmp_path_factory.mktemp("qwen"))
    transformers.AutoModelForCausalLM.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


class RecordingTrainer(PasskGRPOTrainer):
    """Records the advantages each loss computation received, keyed by their completion."""

    used = []

    def compute_loss(self, model, inputs, *args, **kwargs):
        for ids, mask, value in zip(
            inputs["completion_ids"], inputs["completion_mask"], inputs["advantages"]
        ):
            self.used.append((tuple(ids[mask.bool()].tolist()), float(value)))
        return super().compute_loss(model, inputs, *args, **kwargs)


def make_trainer(folder, tmp_path, reward, **passk):
    args = GRPOConfig(
        output_dir=str(tmp_path / "out"),
        use_cpu=True,
        report_to="none",
        save_strategy="no",
        max_steps=1,
        per_device_train_batch_size=2 * NUM_GENERATIONS,
        num_generations=NUM_GENERATIONS,
        max_completion_length=6,
        learning_rate=1e-2,
        logging_steps=1,
        seed=0,
        bf16=False,
        dataloader_num_workers=0,
        disable_tqdm=True,
    )
    dataset = Dataset.from_dict({"prompt": TEXTS})
    RecordingTrainer.used = []
    return RecordingTrainer(
        model=folder, reward_funcs=reward, args=args, train_dataset=dataset, **passk
    )


def parity_reward(recorded):
    """1 for a completion whose token ids sum to an even number, else 0: mixed within groups."""

    def reward(prompts, completions, completion_ids, **unused):
        scores = [float(sum(ids) % 2 == 0) for ids in completion_ids]
        recorded.append((list(prompts), [tuple(ids) for ids in completion_ids], scores))
        return scores

    return reward


@pytest.mark.parametrize("estimator", ["passk_analytic", "pkpo"])
def test_a_grpo_trainer_step_uses_passks_advantages(tiny_qwen, tmp_path, estimator):
    recorded = []
    trainer = make_trainer(
        tiny_qwen, tmp_path, parity_reward(recorded), passk_estimator=estimator, passk_k=K
    )
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()
    ((prompts, completions, scores),) = recorded  # one generation batch, scored once
    for start in range(
        0, len(prompts), NUM_GENERATIONS
    ):  # TRL puts a prompt's completions side by side
        assert len(set(prompts[start : start + NUM_GENERATIONS])) == 1
    rewards = torch.tensor(scores).view(-1, NUM_GENERATIONS)  # [prompts, G]
    expected = advantage.ESTIMATORS[estimator](rewards, k=K).flatten()  # [B]
    assert expected.abs().sum() > 0, "no group with signal: the comparison would prove nothing"
    assert not torch.allclose(expected, advantage.grpo(rewards).flatten()), (
        "passk must differ from TRL's own"
    )
    used = sorted((key, round(value, 5)) for key, value in RecordingTrainer.used)
    wanted = sorted((key, round(value, 5)) for key, value in zip(completions, expected.tolist()))
    assert Counter(used) == Counter(wanted)
    assert any(not torch.equal(a, b) for a, b in zip(before, trainer.model.parameters())), (
        "the step changed nothing"
    )
    assert all(math.isfinite(p.sum().item()) for p in trainer.model.parameters())


def test_a_non_binary_reward_is_a_one_line_error_naming_estimator_and_value(tiny_qwen, tmp_path):
    def half_reward(completion_ids, **unused):
        return [0.5 if row == 5 else 1.0 for row in range(len(completion_ids))]

    trainer = make_trainer(
        tiny_qwen, tmp_path, half_reward, passk_estimator="passk_combined", passk_k=K
    )
    with pytest.raises(ValueError) as error:
        trainer.train()
    message = str(error.value)
    assert (
        "\n" not in message
        and "passk_combined" in message
        and "0.5" in message
        and "group 1" in message
    )


def test_k_above_num_generations_is_refused(tiny_qwen, tmp_path):
    with pytest.raises(ValueError, match=r"k must satisfy 1 <= k <= num_generations = 4, got 5"):
        make_trainer(tiny_qwen, tmp_path, parity_reward([]), passk_k=5)


def test_unknown_estimators_and_options_are_refused_before_the_model_loads(tmp_path):
    with pytest.raises(ValueError, match=r"unknown passk estimator 'passk_typo'"):
        make_trainer(
            "no/such/model", tmp_path, parity_reward([]), passk_estimator="passk_typo", passk_k=2
        )
    with pytest.raises(ValueError, match=r"pkpo has no option eps \(it takes: baseline\)"):
        make_trainer(
            "no/such/model",
            tmp_path,
            parity_reward([]),
            passk_estimator="pkpo",
            passk_k=2,
            passk_options={"eps": 1e-6},
        )
    with pytest.raises(
        ValueError, match=r"entropy_adaptive needs prompt_entropy, which the engine"
    ):
        make_trainer(
            "no/such/model",
            tmp_path,
            parity_reward([]),
            passk_estimator="entropy_adaptive",
            passk_k=2,
        )
