"""passk's estimators in verl's advantage registry (verl.trainer.ppo.core_algos, verl 0.9.1).

Importing this module registers, under verl's `algorithm.adv_estimator`:
  passk_analytic   Alg. 3 / Eq. 11-15, the closed-form Pass@k advantage
  passk_combined   Eq. 18;  passk_exceeding  Eq. 17;  passk_full  Alg. 1 (disjoint groups of k)
  passk_pkpo       PKPO (Walder & Karkhanis 2025), binary or continuous rewards
  passk_maxrl      MaxRL (Tajwar et al. 2026), when advantage.py has it
Each is advantage.py's estimator, called per prompt group. verl calls a registered estimator as
    fn(token_level_rewards [B, T], response_mask [B, T], config=<algorithm config>, index=<uids>)
(verl.trainer.ppo.ray_trainer.compute_advantage) and takes back (advantages, returns), both [B, T];
for outcome rewards, as verl's own grpo does, both are the response's advantage on its tokens.

k and the estimator's options come from the algorithm config's `passk` entry, set on verl's
command line as `+algorithm.passk.k=4` (and e.g. `+algorithm.passk.baseline=false` for pkpo).
The score of a response is the sum of its token-level rewards, i.e. the outcome reward verl's reward
loop puts at the last response token. Keep `algorithm.use_kl_in_reward=False` with the binary
estimators (a KL penalty in the reward makes the scores non-binary, which they refuse; use the
actor's KL loss instead). Groups are the uids, in any order and of any size (see grouped.py).

verl runs the trainer in a Ray actor, so this module must be imported in that process: set
VERL_USE_EXTERNAL_MODULES=adapters.verl_passk (verl's own hook: `import verl` imports the listed
modules in every process) with the passk checkout on PYTHONPATH. docs/engines.md has the command.
"""

import inspect

import advantage
from adapters.grouped import check_settings, grouped_advantages
from verl.trainer.ppo import core_algos

# verl name -> advantage.py name; maxrl only where advantage.py has it
VERL_NAMES = {
    "passk_analytic": "passk_analytic",
    "passk_combined": "passk_combined",
    "passk_exceeding": "passk_exceeding",
    "passk_full": "passk_full",
    "passk_pkpo": "pkpo",
}
if "maxrl" in advantage.ESTIMATORS:
    VERL_NAMES["passk_maxrl"] = "maxrl"


def settings_of(config, verl_name: str) -> tuple:
    """(k, options) from the algorithm config's `passk` entry; one line of error without k."""
    name = VERL_NAMES[verl_name]
    passk = config.get("passk", None) if config is not None else None
    passk = dict(passk) if passk is not None else {}
    k_default = inspect.signature(advantage.ESTIMATORS[name]).parameters["k"].default
    if "k" not in passk and k_default is inspect.Parameter.empty:
        raise ValueError(
            f"algorithm.adv_estimator={verl_name} needs k: add +algorithm.passk.k=4 "
            f"(any k <= actor_rollout_ref.rollout.n) to verl's command line"
        )
    k = passk.pop("k", k_default)
    check_settings(name, k, passk, f"algorithm.adv_estimator={verl_name}")
    return k, passk


def make_estimator(verl_name: str):
    """verl's estimator signature around advantage.ESTIMATORS[VERL_NAMES[verl_name]]."""
    name = VERL_NAMES[verl_name]

    def compute(token_level_rewards, response_mask, config=None, index=None, **unused):
        k, options = settings_of(config, verl_name)
        if index is None:
            raise ValueError(f"{verl_name} needs the prompt uids (data.non_tensor_batch['uid'])")
        scores = token_level_rewards.sum(dim=-1)  # [B]: the outcome reward
        # [B]
        per_response = grouped_advantages(
            name, scores, index, k=k, options=options, where=f"algorithm.adv_estimator={verl_name}"
        )
        advantages = per_response[:, None].to(token_level_rewards.dtype) * response_mask  # [B, T]
        return advantages, advantages

    compute.__name__ = f"compute_{verl_name}_outcome_advantage"
    compute.passk_name = verl_name
    return compute


def register():
    """Register every VERL_NAMES estimator with verl; importing this module twice is harmless."""
    for verl_name in VERL_NAMES:
        registered = core_algos.ADV_ESTIMATOR_REGISTRY.get(verl_name)
        if getattr(registered, "passk_name", None) != verl_name:
            core_algos.register_adv_est(verl_name)(make_estimator(verl_name))


register()
