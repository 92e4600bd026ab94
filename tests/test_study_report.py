"""study_report.py: the verdict rule on paired seeds, the power statement, and the training curves averaged over
seeds."""
import pytest

import experiments
import study_report


def test_judge_confirms_refutes_or_cannot_tell_by_the_paired_interval():
    by_arm = {"a": [{"m": v} for v in (0.50, 0.52, 0.51)], "b": [{"m": v} for v in (0.30, 0.31, 0.29)],
              "c": [{"m": v} for v in (0.20, 0.60, 0.40)], "one": [{"m": 0.9}]}
    judged = lambda spec: study_report.judge(study_report.claim_parts(spec, by_arm))
    assert judged([("a", "b", "m")]) == "confirms"
    assert judged([("b", "a", "m")]) == "refutes"
    assert judged([("a", "c", "m")]) == "cannot tell"                     # the interval holds 0
    assert judged([("a", "b", "m"), ("a", "c", "m")]) == "cannot tell"    # every part must confirm
    assert judged([("a", "b", "m"), ("b", "a", "m")]) == "refutes"        # any refuting part refutes
    assert judged([("one", "b", "m")]) == "cannot tell"                   # one seed: no interval
    parts = study_report.claim_parts([("passk_combined", "b", "m")], by_arm, experiments.EXTENDED_ARMS)
    assert study_report.judge(parts) == "cannot tell" and "not run (--extended)" in parts[0]["why"]


def test_curves_average_seeds_at_shared_steps_and_keep_a_resumed_runs_last_value():
    runs = [{"rows": [{"step": 0, "eval/pass@1": 0.1}, {"step": 10, "eval/pass@1": 0.2},
                      {"step": 10, "eval/pass@1": 0.4}]},  # logged twice after a resume: the last counts
            {"rows": [{"step": 0, "eval/pass@1": 0.3}, {"step": 10, "eval/pass@1": 0.6}, {"step": 5, "x": 1.0}]}]
    steps, means = study_report.seed_mean_curve(runs, "eval/pass@1")
    assert steps == [0, 10] and means == pytest.approx([0.2, 0.5])
    assert study_report.smooth([1.0, float("nan"), 3.0, 5.0], 3) == pytest.approx([1.0, 2.0, 4.0, 4.0])


def test_arms_are_paired_by_seed_and_an_interval_holding_zero_states_the_design_power():
    # seed noise shared by both arms (0.2 .. 0.6) swamps Welch's interval; the per-seed differences are all ~ +0.05
    a = [{"seed": s, "m": base + 0.05 + e} for s, base, e in ((2, 0.6, 0.01), (0, 0.2, -0.01), (1, 0.4, 0.0))]
    b = [{"seed": s, "m": base} for s, base in ((0, 0.2), (1, 0.4), (2, 0.6), (3, 0.9))]  # seed 3: no pair
    (part,) = study_report.claim_parts([("a", "b", "m")], {"a": a, "b": b})
    assert part["n_pairs"] == 3 and abs(part["diff"] - 0.05) < 1e-12
    assert part["low"] > 0 and part["welch_low"] < 0  # paired confirms what Welch cannot tell
    assert study_report.judge([part]) == "confirms"
    noisy = [{"seed": s, "m": v} for s, v in ((0, 0.25), (1, 0.35), (2, 0.62))]
    (part,) = study_report.claim_parts([("a", "b", "m")], {"a": noisy, "b": b})
    text = study_report.describe_part(part)
    assert study_report.judge([part]) == "cannot tell" and "paired CI" in text and "Welch" in text
    assert f"no difference larger than {part['half']:.2f} either way" in text

