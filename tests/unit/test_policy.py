"""decide(): table-driven cases and properties; policy validation messages."""

from __future__ import annotations

from math import inf, nan

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from flowops.promotion.decide import Candidate, Holder, better_by, decide
from flowops.spec.policy import Improvement, PerClass, RegistryPolicy, Regression, Target, Threshold

CODE = "c0de" * 10
EVAL = "e7a1" * 16  # one evaluation set: the numbers are comparable


def policy(**targets) -> RegistryPolicy:
    return RegistryPolicy(
        model_name="m", primary_metric="val_iou", targets=targets or {"production": Target(improve=Improvement())}
    )


def cand(require_code=True, **metrics) -> Candidate:
    return Candidate("run x", metrics, CODE, CODE if require_code else "0ther" * 8, EVAL)


PROD = Target(
    thresholds=[Threshold(metric="val_iou", min=0.3)],
    improve=Improvement(absolute=0.01, relative=0.05),
    max_regression=[Regression(metric="val_loss", max_absolute=0.1)],
    per_class=PerClass(tolerance=0.02),
)


@pytest.mark.parametrize(
    "metrics, holder, promote, failed",
    [
        # first model ever: absolute checks only
        ({"val_iou": 0.4, "val_loss": 1.0}, None, True, []),
        ({"val_iou": 0.2, "val_loss": 1.0}, None, False, ["val_iou 0.2 fails >= 0.3"]),
        # improvement: needs max(0.01, 5% of 0.5 = 0.025)
        ({"val_iou": 0.53, "val_loss": 1.0}, {"val_iou": 0.5, "val_loss": 1.0}, True, []),
        (
            {"val_iou": 0.52, "val_loss": 1.0},
            {"val_iou": 0.5, "val_loss": 1.0},
            False,
            ["val_iou 0.52 vs 0.5 (v3): better by 0.02, needs >= 0.025"],
        ),
        # secondary regression (val_loss lower is better): worse by 0.2 > 0.1
        (
            {"val_iou": 0.6, "val_loss": 1.2},
            {"val_iou": 0.5, "val_loss": 1.0},
            False,
            ["val_loss 1.2 vs 1: worse by 0.2, allowed worse by 0.1"],
        ),
        # per-class: person dropped by 0.05 > 0.02; background is not a guard
        (
            {"val_iou": 0.6, "val_loss": 1.0, "val_iou.person": 0.45, "val_iou.background": 0.1},
            {"val_iou": 0.5, "val_loss": 1.0, "val_iou.person": 0.5, "val_iou.background": 0.9},
            False,
            ["over the 0.02 tolerance: person dropped 0.05"],
        ),
        # missing metrics fail a check with an explanation, never an exception
        (
            {"val_loss": 1.0},
            {"val_iou": 0.5, "val_loss": 1.0},
            False,
            ["val_iou is missing from the run", "val_iou is missing from the run"],
        ),
        (
            {"val_iou": 0.6, "val_loss": 1.0},
            {"val_iou": 0.5, "val_loss": 1.0, "val_iou.dog": 0.3},
            False,
            ["val_iou.dog is missing from the run"],
        ),
        # NaN passes no comparison: not a threshold, not the improvement, not the per-class guard
        (
            {"val_iou": nan, "val_loss": 1.0, "val_iou.person": nan},
            {"val_iou": 0.5, "val_loss": 1.0, "val_iou.person": 0.5},
            False,
            [
                "val_iou is nan in the run: not a number that can be compared",
                "val_iou is nan in the run: not a number that can be compared",
                "val_iou.person is nan in the run: not a number that can be compared",
            ],
        ),
        (
            {"val_iou": 0.6, "val_loss": 1.0, "val_iou.person": 0.6},
            {"val_iou": 0.5, "val_loss": inf, "val_iou.person": nan},
            False,
            [
                "val_loss is inf in v3: not a number that can be compared",
                "val_iou.person is nan in v3: not a number that can be compared",
            ],
        ),
    ],
)
def test_decide_table(metrics, holder, promote, failed):
    holders = {"production": Holder("3", holder, EVAL) if holder is not None else None}
    decision = decide(cand(**metrics), holders, policy(production=PROD)).targets["production"]
    assert decision.promote is promote
    assert [c.detail for c in decision.checks if not c.passed] == failed


def test_require_same_code():
    d = decide(cand(require_code=False, val_iou=0.9), {"production": None}, policy()).targets["production"]
    assert not d.promote
    assert (
        d.checks[0].detail
        == "trained on code tree c0dec0dec0de, merged code is 0ther0ther0t: retrain on the merged code"
    )
    off = RegistryPolicy(model_name="m", require_same_code=False)
    assert decide(cand(require_code=False, val_iou=0.9), {}, off).targets["production"].promote


def test_equal_candidate_is_not_an_improvement():
    d = decide(cand(val_iou=0.5), {"production": Holder("1", {"val_iou": 0.5}, EVAL)}, policy()).targets["production"]
    assert not d.promote
    assert d.checks[-1].detail == "val_iou 0.5 vs 0.5 (v1): not better by 0, needs > 0"


def test_every_target_is_decided_and_summarised():
    p = policy(staging=Target(thresholds=[Threshold(metric="val_iou", min=0.1)]), production=PROD)
    d = decide(
        cand(val_iou=0.2, val_loss=1.0),
        {"staging": None, "production": Holder("2", {"val_iou": 0.5, "val_loss": 1.0}, EVAL)},
        p,
    )
    assert d.targets["staging"].promote and not d.targets["production"].promote
    assert d.targets["staging"].summary() == "staging: promote (was unset)"
    assert d.targets["production"].summary().startswith("production: keep 2: val_iou 0.2 fails >= 0.3; ")


# --- properties ---------------------------------------------------------------------------

values = st.floats(min_value=-5, max_value=5, allow_nan=False)
gains = st.floats(min_value=0, max_value=2, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(
    iou=values, loss=values, pc=values, h_iou=values, h_loss=values, h_pc=values, d_iou=gains, d_loss=gains, d_pc=gains
)
def test_better_on_every_metric_never_decides_worse(iou, loss, pc, h_iou, h_loss, h_pc, d_iou, d_loss, d_pc):
    p = policy(production=PROD)
    holder = {"production": Holder("1", {"val_iou": h_iou, "val_loss": h_loss, "val_iou.cat": h_pc}, EVAL)}
    worse = decide(cand(val_iou=iou, val_loss=loss, **{"val_iou.cat": pc}), holder, p).targets["production"]
    better = decide(cand(val_iou=iou + d_iou, val_loss=loss - d_loss, **{"val_iou.cat": pc + d_pc}), holder, p).targets[
        "production"
    ]
    assert better.promote or not worse.promote
    assert sum(c.passed for c in better.checks) >= sum(c.passed for c in worse.checks)


@settings(max_examples=200, deadline=None)
@given(holder=values, delta=st.floats(min_value=0.001, max_value=3), relative=st.floats(min_value=0, max_value=1))
def test_direction_is_honoured(holder, delta, relative):
    for direction, sign in (("max", 1), ("min", -1)):
        p = RegistryPolicy(
            model_name="m",
            primary_metric="score",
            metrics={"score": direction},
            require_same_code=False,
            targets={"production": Target(improve=Improvement(relative=relative))},
        )
        h = {"production": Holder("1", {"score": holder}, EVAL)}
        assert (
            not decide(Candidate("c", {"score": holder - sign * delta}, eval_set=EVAL), h, p)
            .targets["production"]
            .promote
        )
        promoted = (
            decide(Candidate("c", {"score": holder + sign * delta}, eval_set=EVAL), h, p).targets["production"].promote
        )
        actual = sign * ((holder + sign * delta) - holder)
        assert promoted == (actual > 0 and actual >= relative * abs(holder))


@settings(max_examples=200, deadline=None)
@given(holder=st.sampled_from([0.0, -0.0, -1.0, -1e-9, -3.5]), relative=st.floats(min_value=0, max_value=1), gain=gains)
def test_relative_margins_with_zero_and_negative_baselines(holder, relative, gain):
    p = RegistryPolicy(
        model_name="m",
        primary_metric="score",
        metrics={"score": "max"},
        require_same_code=False,
        targets={"production": Target(improve=Improvement(relative=relative))},
    )
    d = decide(
        Candidate("c", {"score": holder + gain}, eval_set=EVAL), {"production": Holder("1", {"score": holder}, EVAL)}, p
    ).targets["production"]
    need = relative * abs(holder)  # never negative: a negative baseline cannot lower the bar
    actual = (holder + gain) - holder  # the gain as floating point sees it
    assert d.promote == (actual > 0 and actual >= need)


def test_better_by():
    assert better_by(0.6, 0.5, "max") == pytest.approx(0.1)
    assert better_by(0.4, 0.5, "min") == pytest.approx(0.1)


def test_regression_check_says_better_or_unchanged_when_nothing_got_worse():
    def detail(loss):
        d = decide(
            cand(val_iou=0.6, val_loss=loss),
            {"production": Holder("3", {"val_iou": 0.5, "val_loss": 1.0}, EVAL)},
            policy(production=PROD),
        )
        return next(c.detail for c in d.targets["production"].checks if c.name == "val_loss regression")

    assert detail(0.8) == "val_loss 0.8 vs 1: better by 0.2, allowed worse by 0.1"
    assert detail(1.0) == "val_loss 1 vs 1: unchanged, allowed worse by 0.1"


def _confident(confidence=0.95):
    return policy(production=Target(improve=Improvement(absolute=0.01, confidence=confidence)))


def test_numbers_from_different_evaluation_data_are_not_compared():
    holder = {"production": Holder("3", {"val_iou": 0.2}, "0ther" * 16)}
    d = decide(cand(val_iou=0.9), holder, policy()).targets["production"]
    assert not d.promote
    assert [c.detail for c in d.checks if not c.passed] == [
        f"not comparable: different evaluation data (eval set {EVAL[:12]} vs 0ther0ther0t of v3)"
    ]
    unknown = decide(cand(val_iou=0.9), {"production": Holder("3", {"val_iou": 0.2})}, policy()).targets["production"]
    assert not unknown.promote and "v3 records no evaluation set" in unknown.checks[-1].detail


def test_with_a_confidence_the_lower_bound_must_clear_the_margin():
    from flowops.evaluation import Interval

    holder = {"production": Holder("3", {"val_iou": 0.5}, EVAL)}

    def judged(low, high):
        given = {("3", "val_iou", 0.95): Interval(0.06, low, high, 0.95, 2000, 40, "val_iou")}
        c = Candidate("run x", {"val_iou": 0.56}, CODE, CODE, EVAL, given)
        return decide(c, holder, _confident()).targets["production"].checks[-1]

    assert judged(0.02, 0.1).passed
    assert "95% interval of the difference [0.02, 0.1]; needs its lower bound > 0.01" in judged(0.02, 0.1).detail
    assert not judged(0.005, 0.1).passed  # better, but not surely by the margin
    check = judged(-0.01, 0.12)
    assert not check.passed and check.detail.endswith(
        "not distinguishable from v3 (95% interval of the difference [-0.01, 0.12] contains 0)"
    )
    none = decide(cand(val_iou=0.9), holder, _confident()).targets["production"].checks[-1]
    assert not none.passed and "no per-example evidence of val_iou from both models" in none.detail


def _lossy(confidence=0.95):
    return RegistryPolicy(
        model_name="m",
        primary_metric="val_loss",
        targets={"production": Target(improve=Improvement(absolute=0.01, confidence=confidence))},
    )


def test_a_lower_is_better_primary_metric_promotes_the_better_and_keeps_out_the_worse():
    """#30: the interval is of val_loss (candidate - holder; below 0 is better), so its upper bound
    decides: a worse candidate's interval lies above 0 and is kept out, whatever val_miou says."""
    from flowops.evaluation import Interval

    holder = {"production": Holder("3", {"val_loss": 0.5}, EVAL)}

    def judged(loss, low, high, metric="val_loss", level=0.95):
        given = {("3", metric, level): Interval(loss - 0.5, low, high, level, 2000, 40, metric, "mean")}
        c = Candidate("run x", {"val_loss": loss, "val_miou": 0.9}, CODE, CODE, EVAL, given)
        return decide(c, holder, _lossy()).targets["production"].checks[-1]

    better = judged(0.3, -0.3, -0.1)
    assert better.passed and better.detail == (
        "val_loss 0.3 vs 0.5 (v3): better by 0.2, 95% interval of the difference [-0.3, -0.1]; "
        "needs its lower bound > 0.01"
    )
    worse = judged(2.0, 1.2, 1.8)
    assert not worse.passed and "not better by -1.5" in worse.detail
    assert not judged(0.3, -0.3, -0.005).passed  # better, but not surely by the margin
    # An interval of another metric, or at another level, is never used for this rule.
    for other in (judged(2.0, 0.1, 0.2, metric="val_miou"), judged(0.3, -0.3, -0.1, level=0.9)):
        assert not other.passed and "no per-example evidence of val_loss" in other.detail


def test_an_interval_of_another_metric_or_level_is_refused_by_name():
    from flowops.evaluation import Interval

    holder = {"production": Holder("3", {"val_loss": 0.5}, EVAL)}
    wrong = Interval(0.1, 0.05, 0.2, 0.95, 2000, 40, "val_miou")
    c = Candidate("run x", {"val_loss": 2.0}, CODE, CODE, EVAL, {("3", "val_loss", 0.95): wrong})
    check = decide(c, holder, _lossy()).targets["production"].checks[-1]
    assert not check.passed
    assert check.detail.endswith("the interval at hand is of val_miou at 95%, the policy asks for val_loss at 95%")


def test_a_category_absent_from_the_truth_is_not_measured_for_either_side():
    """#30: the holder predicted 'bird' somewhere on data with no bird (IoU 0), the candidate never did
    (no IoU at all): not a drop. A holder IoU above 0 means birds are in the truth: then missing fails."""
    p = policy(production=Target(per_class=PerClass(tolerance=0.0)))
    holder = {"production": Holder("1", {"val_iou.dog": 0.5, "val_iou.bird": 0.0}, EVAL)}
    check = decide(cand(**{"val_iou.dog": 0.6}), holder, p).targets["production"].checks[-1]
    assert check.passed and check.detail == "no category dropped (bird: not in the validation truth, not measured)"
    present = {"production": Holder("1", {"val_iou.dog": 0.5, "val_iou.bird": 0.2}, EVAL)}
    check = decide(cand(**{"val_iou.dog": 0.6}), present, p).targets["production"].checks[-1]
    assert not check.passed and check.detail == "val_iou.bird is missing from the run"


def test_per_class_drops_within_the_tolerance_are_named_with_their_size():
    p = policy(production=Target(per_class=PerClass(tolerance=0.1)))
    holder = {"production": Holder("1", {"val_iou.dog": 0.5, "val_iou.cat": 0.4}, EVAL)}
    check = decide(cand(**{"val_iou.dog": 0.468, "val_iou.cat": 0.45}), holder, p).targets["production"].checks[-1]
    assert check.passed and check.detail == "dog dropped 0.032: within the 0.1 tolerance"


def test_a_target_without_comparisons_needs_no_common_evaluation_data():
    p = policy(staging=Target(thresholds=[Threshold(metric="val_iou", min=0.1)]))
    d = decide(cand(val_iou=0.5), {"staging": Holder("3", {"val_iou": 0.2}, "0ther" * 16)}, p).targets["staging"]
    assert d.promote and [c.name for c in d.checks] == ["same code", "val_iou threshold"]
