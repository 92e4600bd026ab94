"""passk's estimators over a flat batch of responses grouped by an id, as verl and TRL hand it over.

An engine gives one score per response, [B], and a group id per response (verl: the prompt's uid,
in any order; TRL: each run of num_generations rows). `grouped_advantages` gathers each group's
scores into a row, stacks the groups of equal size into [G_s, N_s] and calls advantage.py's
estimator once per size, so groups of unequal size (verl filters, agent loops drop rollouts) are
each scored over their own N. The estimators themselves are advantage.py's, unchanged.

Choices:
- A group with fewer than k responses has no Pass@k estimate from its samples: its advantages are
  0, like a row without signal. If every group is smaller than k, that is a one-line error.
- A bad reward (not 0/1 for a binary estimator, NaN) is advantage.py's one-line error, with the
  group's id and its rows in front, so the offending rollout can be found.
- `options` are the estimator's own keyword arguments (eps, baseline, beta); unknown names are
  refused with the list of those it takes.
"""

import inspect

import torch

import advantage

ENGINE_SUPPLIED = {"k", "prompt_entropy", "generator", "f"}  # not settable from an engine's config


def estimator_options(name: str) -> set:
    """The keyword options of advantage.py's estimator `name` an engine's config may set."""
    if name not in advantage.ESTIMATORS:
        raise ValueError(
            f"unknown passk estimator {name!r}; known: {', '.join(advantage.ESTIMATORS)}"
        )
    parameters = inspect.signature(advantage.ESTIMATORS[name]).parameters.values()
    keyword_only = {p.name for p in parameters if p.kind is inspect.Parameter.KEYWORD_ONLY}
    return keyword_only - ENGINE_SUPPLIED


def check_settings(name: str, k, options: dict, where: str):
    """One-line errors for a bad k, an estimator an engine cannot call, or an unknown option."""
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"{where}: k must be a positive integer, got {k!r}")
    allowed = estimator_options(name)  # first: an unknown name is its own one-line error
    parameters = inspect.signature(advantage.ESTIMATORS[name]).parameters.values()
    needed = [p.name for p in parameters if p.default is inspect.Parameter.empty]
    extra = [p for p in needed if p not in ("rewards", "k")]  # entropy_adaptive's prompt_entropy
    if extra:
        raise ValueError(
            f"{where}: {name} needs {', '.join(extra)}, which the engine does not pass"
        )
    unknown = sorted(set(options) - allowed)
    if unknown:
        takes = ", ".join(sorted(allowed)) or "none"
        raise ValueError(f"{where}: {name} has no option {', '.join(unknown)} (it takes: {takes})")


def groups_of(group_ids) -> dict:
    """{group id: [row, ...]} in order of first appearance; rows keep their batch order."""
    members = {}
    for row, group_id in enumerate(group_ids):
        members.setdefault(group_id, []).append(row)
    return members


def grouped_advantages(name: str, scores, group_ids, *, k: int, options=None, where=None):
    """advantage.ESTIMATORS[name] over each group of `scores` [B]; returns advantages [B].

    group_ids: B hashable ids (a list, or a numpy array of uids). Groups of the same size are
    scored together as one [G_s, N_s] tensor; groups with fewer than k responses get 0.
    """
    options, where = options or {}, where or name
    check_settings(name, k, options, where)
    if scores.dim() != 1 or len(group_ids) != scores.shape[0]:
        raise ValueError(
            f"{where}: scores must be [B] with one group id each, got {tuple(scores.shape)} "
            f"scores and {len(group_ids)} ids"
        )
    estimator = advantage.ESTIMATORS[name]
    members = groups_of(group_ids.tolist() if hasattr(group_ids, "tolist") else group_ids)
    if not members:
        return scores.new_zeros(0)
    by_size = {}
    for group_id, rows in members.items():
        by_size.setdefault(len(rows), []).append(group_id)
    if max(by_size) < k:
        raise ValueError(
            f"{where}: k={k} but the largest group has {max(by_size)} responses; "
            f"sample at least k responses per prompt"
        )
    out_dtype = torch.float64 if scores.dtype == torch.float64 else torch.float32
    result = torch.zeros(scores.shape[0], dtype=out_dtype, device=scores.device)  # [B]
    for size, ids in sorted(by_size.items()):
        if size < k:
            continue
        rows = torch.tensor([members[i] for i in ids], device=scores.device)  # [G_s, N_s]
        try:
            result[rows] = estimator(scores[rows], k=k, **options).to(out_dtype)
        except ValueError:
            _raise_for_first_bad_group(estimator, scores, members, ids, k, options, where)
            raise
    return result


def _raise_for_first_bad_group(estimator, scores, members, ids, k, options, where):
    """Score the groups one by one to name the first that the estimator refuses."""
    for group_id in ids:
        try:
            estimator(scores[members[group_id]][None], k=k, **options)
        except ValueError as error:
            rows = members[group_id]
            raise ValueError(f"{where}, group {group_id!r} (rows {rows}): {error}") from None
