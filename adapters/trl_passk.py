"""TRL's GRPOTrainer with passk's advantages: PasskGRPOTrainer (TRL 1.16.0 has no advantage hook).

TRL's GRPOTrainer computes group-normalised advantages inline in `_generate_and_score_completions`,
from the rewards its `_calculate_rewards` returns (gathered over processes, [B_all, reward funcs]).
This subclass keeps all of that and replaces only the result: it takes the same weighted sum of
the reward functions TRL uses (`rewards_per_func * reward_weights`, summed), splits it into each
prompt's num_generations completions (TRL's RepeatSampler puts them side by side), calls
advantage.py's estimator on each [prompts, num_generations] row set, and hands TRL this
process's slice as "advantages" (the completions table logs the same values). Sampling, the loss,
clipping, KL, vLLM and the optimiser stay TRL's.

    trainer = PasskGRPOTrainer(model=..., reward_funcs=..., args=GRPOConfig(num_generations=8, ...),
                               train_dataset=..., passk_estimator="passk_analytic", passk_k=4)

passk_options passes the estimator's own options (eps, baseline, beta). TRL's `scale_rewards` is
not used (the estimator sets the scale); `multi_objective_aggregation="normalize_then_sum"` is
refused, since its normalised per-function rewards are not the 0/1 scores Pass@k needs. A reward
that is not 0/1 for a binary estimator, or a completion no reward function scored (NaN), is
advantage.py's one-line error with the prompt's index in the batch.
"""

from adapters.grouped import check_settings, grouped_advantages
from trl import GRPOTrainer


class PasskGRPOTrainer(GRPOTrainer):
    def __init__(
        self,
        *args,
        passk_estimator: str = "passk_analytic",
        passk_k: int,
        passk_options=None,
        **kwargs,
    ):
        self.passk_where = f"PasskGRPOTrainer({passk_estimator}, k={passk_k})"
        self.passk_estimator, self.passk_k = passk_estimator, passk_k
        self.passk_options = passk_options or {}
        # before loading
        check_settings(passk_estimator, passk_k, self.passk_options, self.passk_where)
        super().__init__(*args, **kwargs)
        if self.multi_objective_aggregation != "sum_then_normalize":
            raise ValueError(
                f"{self.passk_where} needs multi_objective_aggregation='sum_then_normalize' "
                f"(the rewards must stay the raw scores), got {self.multi_objective_aggregation!r}"
            )
        if not 1 <= passk_k <= self.num_generations:
            raise ValueError(
                f"{self.passk_where}: k must satisfy 1 <= k <= num_generations = "
                f"{self.num_generations}, got {passk_k}"
            )
        self._passk_rewards_per_func = None

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        self._passk_rewards_per_func = rewards_per_func  # [B_all, funcs]
        return rewards_per_func

    def passk_advantages(self, rewards_per_func, num_generations):
        """advantage.py's estimator over each prompt's completions: [B_all, funcs] -> [B_all]."""
        weights = self.reward_weights.to(rewards_per_func.device)
        scores = (rewards_per_func * weights).nansum(dim=1)  # [B_all], TRL's sum
        scores[rewards_per_func.isnan().all(dim=1)] = float("nan")  # unscored: refused
        # prompt index per row
        prompt_of = [row // num_generations for row in range(scores.shape[0])]
        return grouped_advantages(
            self.passk_estimator,
            scores,
            prompt_of,
            k=self.passk_k,
            options=self.passk_options,
            where=self.passk_where,
        )

    def _generate_and_score_completions(self, inputs):
        output = super()._generate_and_score_completions(inputs)
        mode = "train" if self.model.training else "eval"
        num_generations = self.num_generations if mode == "train" else self.num_generations_eval
        advantages = self.passk_advantages(self._passk_rewards_per_func, num_generations)  # [B_all]
        local = output["advantages"].shape[0]  # this process's completions, as TRL slices them
        start = self.accelerator.process_index * local
        output["advantages"] = advantages[start : start + local].to(output["advantages"].dtype)
        logged = self._logs["advantages"]  # TRL logged its own advantages of the whole batch last
        for _ in range(min(len(advantages), len(logged))):
            logged.pop()
        logged.extend(advantages.tolist())
        return output
