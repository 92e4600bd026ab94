"""study_report.py: the verdict rule on paired seeds, the power statement, and the training curves
averaged over
seeds."""

import json

import pytest

import eval as evaluation
import experiments
import study_plan
import study_report


def test_judge_confirms_refutes_or_cannot_tell_by_the_paired_interval():
    by_arm = {
        "a": [{"m": v} for v in (0.50, 0.52, 0.51)],
        "b": [{"m": v} for v in (0.30, 0.31, 0.29)],
        "c": [{"m": v} for v in (0.20, 0.60, 0.40)],
        "one": [{"m": 0.9}],
    }
    judged = lambda spec: study_report.judge(study_report.claim_parts(spec, by_arm))
    assert judged([("a", "b", "m")]) == "confirms"
    assert judged([("b", "a", "m")]) == "refutes"
    assert judged([("a", "c", "m")]) == "cannot tell"  # the interval holds 0
    assert judged([("a", "b", "m"), ("a", "c", "m")]) == "cannot tell"  # every part must confirm
    assert judged([("a", "b", "m"), ("b", "a", "m")]) == "refutes"  # any refuting part refutes
    assert judged([("one", "b", "m")]) == "cannot tell"  # one seed: no interval
    parts = study_report.claim_parts([("passk_combined", "b", "m")], by_arm)
    assert (
        study_report.judge(parts) == "cannot tell" and "passk_combined not run" in parts[0]["why"]
    )


def test_curves_average_seeds_at_shared_steps_and_keep_a_resumed_runs_last_value():
    runs = [
        {
            "rows": [
                {"step": 0, "eval/pass@1": 0.1},
                {"step": 10, "eval/pass@1": 0.2},
                {"step": 10, "eval/pass@1": 0.4},
            ]
        },  # logged twice after a resume: the last counts
        {
            "rows": [
                {"step": 0, "eval/pass@1": 0.3},
                {"step": 10, "eval/pass@1": 0.6},
                {"step": 5, "x": 1.0},
            ]
        },
    ]
    steps, means = study_report.seed_mean_curve(runs, "eval/pass@1")
    assert steps == [0, 10] and means == pytest.approx([0.2, 0.5])
    assert study_report.smooth([1.0, float("nan"), 3.0, 5.0], 3) == pytest.approx(
        [1.0, 2.0, 4.0, 4.0]
    )


def test_arms_are_paired_by_seed_and_an_interval_holding_zero_states_the_design_power():
    # seed noise shared by both arms (0.2 .. 0.6) swamps Welch's interval; the per-seed differences
    # are all ~ +0.05
    a = [
        {"seed": s, "m": base + 0.05 + e}
        for s, base, e in ((2, 0.6, 0.01), (0, 0.2, -0.01), (1, 0.4, 0.0))
    ]
    # seed 3: no pair
    b = [{"seed": s, "m": base} for s, base in ((0, 0.2), (1, 0.4), (2, 0.6), (3, 0.9))]
    (part,) = study_report.claim_parts([("a", "b", "m")], {"a": a, "b": b})
    assert part["n_pairs"] == 3 and abs(part["diff"] - 0.05) < 1e-12
    assert part["low"] > 0 and part["welch_low"] < 0  # paired confirms what Welch cannot tell
    assert study_report.judge([part]) == "confirms"
    noisy = [{"seed": s, "m": v} for s, v in ((0, 0.25), (1, 0.35), (2, 0.62))]
    (part,) = study_report.claim_parts([("a", "b", "m")], {"a": noisy, "b": b})
    text = study_report.describe_part(part)
    assert study_report.judge([part]) == "cannot tell" and "paired CI" in text and "Welch" in text
    assert f"no difference larger than {part['half']:.2f} either way" in text


def test_a_claim_is_not_run_yet_until_every_arm_has_every_seed_and_then_gets_its_verdict():
    spec = [("a", "b", "m")]
    runs = lambda values: [{"seed": s, "m": v} for s, v in enumerate(values)]
    by_arm = {"a": runs([0.50, 0.52, 0.51, 0.53]), "b": runs([0.30, 0.31, 0.29, 0.30, 0.32, 0.28])}
    line = study_report.verdict_line(1, "a beats b", spec, by_arm, {"a", "b"}, seeds=6)
    assert line.startswith(
        "1. a beats b: **not run yet (a 4 of 6 seeds)**. Provisional, on the seeds run so far:"
    )
    assert "over 4 seeds" in line and "confirms" not in line
    line = study_report.verdict_line(
        5, "c beats b", [("c", "b", "m")], by_arm, {"a", "b", "c"}, seeds=6
    )
    assert line == "5. c beats b: **not run yet (c 0 of 6 seeds)**."
    assert "not in this sweep's arms (c" in study_report.verdict_line(
        5, "x", [("c", "b", "m")], by_arm, {"a", "b"}, 6
    )
    by_arm["a"] += runs([0.5, 0.5, 0.5, 0.5, 0.49, 0.54])[4:]
    line = study_report.verdict_line(1, "a beats b", spec, by_arm, {"a", "b"}, seeds=6)
    assert line.startswith("1. a beats b: **confirms**. a ") and "over 6 seeds" in line
    finding = study_report.verdict_line(
        None,
        "a against b",
        [("a", "b", "m"), ("b", "a", "m")],
        by_arm,
        {"a", "b"},
        seeds=6,
        finding=True,
    )
    assert (
        finding.startswith("a against b: a ")
        and "[a higher]" in finding
        and finding.count("[a higher]") == 2
    )


def test_run_numbers_give_cover_at_tau_from_the_per_maze_counts(tmp_path):
    # 8 mazes, n = 4 samples each: c/n = 0, .25, .25, .5, .5, .75, 1, 1 -> by hand,
    # cover@0.25 = 7/8 (c >= 1), cover@0.5 = 5/8 (c >= 2), cover@0.75 = 3/8 (c >= 3),
    # cover@1 = 2/8 (c = 4)
    correct = [0, 1, 1, 2, 2, 3, 4, 4]
    result = {
        "seed": 0,
        "n_samples": 4,
        "sets": {"in_dist": {"correct": correct}, "larger": {"correct": [0] * 8}},
    }
    (tmp_path / "result.json").write_text(
        json.dumps({"eval": result, "metrics": [{"step": 1, "train/reward": 0.5}]})
    )
    numbers = study_report.run_numbers(str(tmp_path / "result.json"))
    assert evaluation.COVER_TAUS == (0.25, 0.5, 0.75, 1.0)
    assert [numbers[f"in_dist/cover@{tau:g}"] for tau in evaluation.COVER_TAUS] == [
        7 / 8,
        5 / 8,
        3 / 8,
        2 / 8,
    ]
    assert numbers["larger/cover@0.25"] == 0.0
    table = study_report.cover_table({"arm": [numbers, {**numbers, "seed": 1}]}, "in_dist")
    assert "| arm | 2 | 87.5 ± 0.0 | 62.5 ± 0.0 | 37.5 ± 0.0 | 25.0 ± 0.0 |" in table
    # one seed: a bootstrap interval over mazes
    one = study_report.cover_table({"arm": [numbers]}, "in_dist")
    assert "| arm | 1 | 87.5 [" in one


def test_the_study_plans_every_claims_arms_and_maxrl_with_six_seeds():
    assert experiments.SEEDS == 6 and experiments.STEPS == 60
    planned = {*experiments.CORE_ARMS, *experiments.CLAIM_ARMS}
    for _, parts in experiments.CLAIMS + experiments.FINDINGS:
        assert {arm for part in parts for arm in part[:2]} <= planned
    assert study_plan.arm_schedule("maxrl", 60) == [
        {"until_step": 60, "advantage": "maxrl", "k": experiments.K}
    ]
    assert {"in_dist/pass@1", "in_dist/pass@4", "in_dist/pass@16", "in_dist/cover@0.5"} <= {
        part[2] for part in experiments.FINDINGS[0][1]
    }
