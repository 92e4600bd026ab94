"""adapters/verl_passk.py against the real verl (0.9.1), on the CPU.

A DataProto batch with shuffled uids and groups of unequal size goes through verl's own
compute_advantage (and the v1 trainer's entry point, which delegates to it) with each registered
passk name, configured through verl's own Hydra config and the `+algorithm.passk.k` override a user
writes. Each group must equal advantage.py's estimator on that group, and passk_analytic must equal
brute force over all C(N, k) groups. Runs in the adapters' environment (.ci/venv-adapters,
requirements-adapters.txt): `python -m pytest adapters/tests`.
"""

import itertools
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import advantage

pytest.importorskip("verl", reason="verl is installed by requirements-adapters.txt (.ci/run does)")

from adapters import verl_passk  # noqa: E402  (registers the estimators)
from verl import DataProto  # noqa: E402
from verl.trainer.ppo import core_algos  # noqa: E402
from verl.trainer.ppo.ray_trainer import compute_advantage  # noqa: E402
from verl.trainer.ppo.v1.utils import compute_advantage_for_multi_trajectories  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GROUP_SIZES = {"q-a": 8, "q-b": 5, "q-c": 8, "q-d": 3, "q-e": 6, "q-f": 2}  # q-f: fewer than k = 3
PROMPT_LEN, RESPONSE_LEN, K = 4, 7, 3


def algorithm_config(*overrides):
    """verl's own `algorithm` config (trainer/config/ppo_trainer.yaml) with CLI overrides."""
    from hydra import compose, initialize_config_module

    with initialize_config_module("verl.trainer.config", version_base=None):
        return compose("ppo_trainer", overrides=list(overrides)).algorithm


def make_batch(seed, continuous=False):
    """A DataProto as verl's trainer holds it before advantages: shuffled uids, groups of unequal
    size, right-padded responses of random length, the outcome reward on their last token."""
    generator = torch.Generator().manual_seed(seed)
    uids = np.array([uid for uid, size in GROUP_SIZES.items() for _ in range(size)], dtype=object)
    uids = uids[torch.randperm(len(uids), generator=generator).numpy()]
    batch_size = len(uids)
    lengths = torch.randint(1, RESPONSE_LEN + 1, (batch_size,), generator=generator)  # [B]
    response_mask = (torch.arange(RESPONSE_LEN) < lengths[:, None]).long()  # [B, T]
    if continuous:
        scores = torch.rand(batch_size, generator=generator)  # [B]
    else:
        scores = (torch.rand(batch_size, generator=generator) < 0.3).float()  # [B], 0/1
    token_level_rewards = torch.zeros(batch_size, RESPONSE_LEN)  # [B, T]
    token_level_rewards[torch.arange(batch_size), lengths - 1] = scores
    data = DataProto.from_dict(
        tensors={
            "prompts": torch.randint(0, 50, (batch_size, PROMPT_LEN), generator=generator),
            "responses": torch.randint(0, 50, (batch_size, RESPONSE_LEN), generator=generator),
            "attention_mask": torch.cat(
                [torch.ones(batch_size, PROMPT_LEN, dtype=torch.long), response_mask], dim=1
            ),
            "token_level_rewards": token_level_rewards,
        },
        non_tensors={"uid": uids},
    )
    return data, scores, response_mask


def brute_force_passk(row, k, eps=1e-6):
    """Each response's mean over the C(N, k) groups holding it of the normalised group max."""
    n = len(row)
    groups = list(itertools.combinations(range(n), k))
    group_reward = [max(row[i] for i in group) for group in groups]
    mean = sum(group_reward) / len(groups)
    std = (sum((g - mean) ** 2 for g in group_reward) / len(groups)) ** 0.5
    normalised = [(g - mean) / (std + eps) if std > 0 else 0.0 for g in group_reward]
    return [
        sum(a for a, group in zip(normalised, groups) if i in group)
        / sum(i in group for group in groups)
        for i in range(n)
    ]


@pytest.mark.parametrize("verl_name", sorted(verl_passk.VERL_NAMES))
def test_verl_compute_advantage_equals_passk_per_group(verl_name):
    name = verl_passk.VERL_NAMES[verl_name]
    k = 1 if name == "maxrl" else K  # maxrl ignores k: its config may leave it out (then 1)
    overrides = [f"algorithm.adv_estimator={verl_name}"] + (
        [f"+algorithm.passk.k={K}"] if k == K else []
    )
    config = algorithm_config(*overrides)
    data, scores, response_mask = make_batch(seed=0)
    out = compute_advantage(data, adv_estimator=config.adv_estimator, config=config)
    v1 = compute_advantage_for_multi_trajectories(
        make_batch(seed=0)[0], batch_keys=None, adv_estimator=config.adv_estimator, config=config
    )
    advantages = out.batch["advantages"]  # [B, T]
    torch.testing.assert_close(v1.batch["advantages"], advantages, rtol=0, atol=0)
    torch.testing.assert_close(out.batch["returns"], advantages, rtol=0, atol=0)
    assert (advantages[response_mask == 0] == 0).all()
    estimator = advantage.ESTIMATORS[name]
    some_signal = False
    for uid in GROUP_SIZES:
        rows = np.flatnonzero(data.non_tensor_batch["uid"] == uid)
        per_token = advantages[rows]  # [N, T]
        per_response = per_token[:, 0]  # every response has >= 1 token
        expected = (
            estimator(scores[rows][None].double(), k=k)[0]
            if len(rows) >= k
            else torch.zeros(len(rows))
        )
        torch.testing.assert_close(
            per_response.double(),
            expected.double(),
            rtol=1e-6,
            atol=1e-6,
            msg=f"{verl_name}, group {uid}",
        )
        assert torch.equal(per_token, per_response[:, None] * response_mask[rows])
        if name == "passk_analytic" and len(rows) >= k:
            brute = torch.tensor(brute_force_passk(scores[rows].tolist(), k), dtype=torch.float64)
            torch.testing.assert_close(per_response.double(), brute, rtol=1e-5, atol=1e-6)
        some_signal |= bool(expected.abs().sum() > 0)
    assert some_signal, "the batch must hold groups with signal, or the comparison proves nothing"


def test_pkpo_takes_continuous_scores_and_its_baseline_option():
    config = algorithm_config(
        "algorithm.adv_estimator=passk_pkpo",
        "+algorithm.passk.k=2",
        "+algorithm.passk.baseline=false",
    )
    data, scores, _ = make_batch(seed=11, continuous=True)
    advantages = compute_advantage(data, adv_estimator="passk_pkpo", config=config).batch[
        "advantages"
    ]
    for uid in GROUP_SIZES:
        rows = np.flatnonzero(data.non_tensor_batch["uid"] == uid)
        expected = advantage.pkpo(scores[rows][None].double(), k=2, baseline=False)[0]
        got = advantages[rows, 0]
        torch.testing.assert_close(got.double(), expected, rtol=1e-6, atol=1e-6)


def one_line_error(verl_name, data, config) -> str:
    with pytest.raises(ValueError) as error:
        compute_advantage(data, adv_estimator=verl_name, config=config)
    message = str(error.value)
    assert "\n" not in message
    return message


def test_a_non_binary_score_is_refused_naming_estimator_group_and_value():
    data, _, response_mask = make_batch(seed=3)
    bad_row = int(np.flatnonzero(data.non_tensor_batch["uid"] == "q-c")[2])
    last = int(response_mask[bad_row].sum()) - 1
    data.batch["token_level_rewards"][bad_row, last] = 0.5
    config = algorithm_config("algorithm.adv_estimator=passk_analytic", "+algorithm.passk.k=3")
    message = one_line_error("passk_analytic", data, config)
    assert "passk_analytic" in message and "'q-c'" in message and "0.5" in message


def test_missing_k_and_unknown_options_are_one_line_errors():
    data = make_batch(seed=5)[0]
    message = one_line_error(
        "passk_combined", data, algorithm_config("algorithm.adv_estimator=passk_combined")
    )
    assert "passk_combined needs k" in message and "+algorithm.passk.k=" in message
    config = algorithm_config(
        "algorithm.adv_estimator=passk_analytic",
        "+algorithm.passk.k=3",
        "+algorithm.passk.beta=2.0",
    )
    assert "passk_analytic has no option beta (it takes: eps)" in one_line_error(
        "passk_analytic", data, config
    )
    config = algorithm_config("algorithm.adv_estimator=passk_analytic", "+algorithm.passk.k=9")
    assert "k=9 but the largest group has 8 responses" in one_line_error(
        "passk_analytic", data, config
    )


def test_verl_use_external_modules_registers_the_estimators_in_a_fresh_process():
    """As in verl's Ray TaskRunner: `import verl` imports VERL_USE_EXTERNAL_MODULES' modules."""
    code = (
        "from verl.trainer.ppo import core_algos; "
        "print(sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if n.startswith('passk_')))"
    )
    env = dict(os.environ, VERL_USE_EXTERNAL_MODULES="adapters.verl_passk", PYTHONPATH=REPO)
    result = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code],
        capture_output=True,
        text=True,
        env=env,
        cwd="/",
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(sorted(verl_passk.VERL_NAMES))


def test_registering_twice_is_harmless_and_verl_returns_our_functions():
    verl_passk.register()
    for verl_name in verl_passk.VERL_NAMES:
        assert core_algos.get_adv_estimator_fn(verl_name).passk_name == verl_name


def test_a_ray_worker_started_with_verls_runtime_env_variables_has_the_estimators():
    """verl computes advantages in a Ray actor (TaskRunnerV1): the docs' env variables must register
    the estimators there. The multi-node form: passed as Ray's runtime_env env_vars."""
    import ray

    env_vars = {"VERL_USE_EXTERNAL_MODULES": "adapters.verl_passk", "PYTHONPATH": REPO}
    ray.init(
        num_cpus=1, include_dashboard=False, log_to_driver=False, runtime_env={"env_vars": env_vars}
    )
    try:

        def registered():
            from verl.trainer.ppo import core_algos

            return sorted(n for n in core_algos.ADV_ESTIMATOR_REGISTRY if n.startswith("passk_"))

        assert ray.get(ray.remote(registered).remote(), timeout=300) == sorted(
            verl_passk.VERL_NAMES
        )
    finally:
        ray.shutdown()
