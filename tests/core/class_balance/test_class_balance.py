import math

import numpy as np
import pytest

from fer_pipeline.core.class_balance import weights as cb


def test_inverse_frequency_matches_hand_computed_values():
    # N = 100, K = 3: w = 100 / (3 * n)
    weights = cb.inverse_frequency_weights([50, 40, 10])
    assert weights == pytest.approx([100 / 150, 100 / 120, 100 / 30])
    # samples weighted by their class weight average to 1
    assert (weights * np.array([50, 40, 10])).sum() / 100 == pytest.approx(1.0)


def test_effective_number_matches_cui_et_al():
    beta = 0.9
    counts = [1, 2, 10]
    effective = [(1 - beta**n) / (1 - beta) for n in counts]  # 1, 1.9, 6.5132...
    raw = [1 / e for e in effective]
    expected = [r * 3 / sum(raw) for r in raw]
    weights = cb.effective_number_weights(counts, beta)
    assert weights == pytest.approx(expected)
    assert weights.sum() == pytest.approx(3.0)
    assert weights[0] > weights[1] > weights[2]  # rare classes weigh more


def test_effective_number_limits():
    counts = [5, 50, 500]
    assert cb.effective_number_weights(counts, 0.0) == pytest.approx([1, 1, 1])
    near_inverse = cb.effective_number_weights(counts, 0.999999)
    inverse = cb.inverse_frequency_weights(counts)
    assert near_inverse / near_inverse.sum() == pytest.approx(inverse / inverse.sum(), rel=1e-3)


def test_log_priors_and_ratio():
    priors = cb.log_priors([25, 75])
    assert priors == pytest.approx([math.log(0.25), math.log(0.75)])
    assert cb.imbalance_ratio([436, 7215, 1000]) == pytest.approx(7215 / 436)


def test_bad_counts_are_rejected_with_a_message():
    with pytest.raises(ValueError, match="empty classes at indices \\[1\\]"):
        cb.inverse_frequency_weights([3, 0, 2])
    with pytest.raises(ValueError, match="beta"):
        cb.effective_number_weights([1, 2], beta=1.0)
    with pytest.raises(ValueError, match="unknown weighting scheme"):
        cb.class_weights([1, 2], "sqrt")
    with pytest.raises(ValueError, match="labels must lie"):
        cb.class_counts(np.array([0, 7]), num_classes=7)


def test_split_class_table_shares_sum_to_one_per_split():
    labels = np.array([0, 0, 1, 2, 2, 2, 1])
    splits = np.array(["train", "train", "train", "train", "val", "val", "test"])
    rows = cb.split_class_table(labels, splits, ("a", "b", "c"))
    by_split = {}
    for row in rows:
        by_split.setdefault(row["split"], []).append(row)
    assert list(by_split) == ["train", "val", "test"]
    assert [r["count"] for r in by_split["train"]] == [2, 1, 1]
    for split_rows in by_split.values():
        assert sum(r["share"] for r in split_rows) == pytest.approx(1.0)
