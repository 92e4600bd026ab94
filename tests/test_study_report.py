"""study_report.py: the verdict rule and the training curves averaged over seeds."""
import pytest

import experiments
import study_report


def test_judge_confirms_refutes_or_cannot_tell_by_the_welch_interval():
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
