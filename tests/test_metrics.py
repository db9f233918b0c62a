import numpy as np
import pytest

from benchmark.metrics import (MetricError, accuracy, attack_success_rate, auprc,
                               paired_difference, removal_percentages, summarize, target_rank)


def test_auprc_hand_computed():
    # ranking: pos, neg, pos, neg -> precision at the two positives: 1/1, 2/3 -> AP = (1 + 2/3) / 2
    y = np.array([1, 0, 1, 0], dtype=bool)
    s = np.array([0.9, 0.8, 0.7, 0.1])
    assert auprc(y, s) == pytest.approx((1 + 2 / 3) / 2)
    assert auprc(y, np.array([0.9, 0.1, 0.8, 0.2])) == pytest.approx(1.0)


def test_auprc_ties_are_order_independent():
    y = np.array([1, 0, 0, 1], dtype=bool)
    s = np.array([0.5, 0.5, 0.5, 0.1])
    # the tied block {0,1,2} holds 1 positive among 3: precision 1/3 at recall 1/2,
    # then 2/4 at recall 1 -> AP = 0.5 * 1/3 + 0.5 * 2/4
    assert auprc(y, s) == pytest.approx(0.5 / 3 + 0.5 * 0.5)
    assert auprc(y[::-1], s[::-1]) == pytest.approx(auprc(y, s))


def test_auprc_rejects_bad_input():
    with pytest.raises(MetricError, match="non-finite"):
        auprc(np.array([1, 0], dtype=bool), np.array([np.nan, 0.0]))
    with pytest.raises(MetricError, match="without positive"):
        auprc(np.array([0, 0], dtype=bool), np.array([1.0, 0.0]))
    with pytest.raises(MetricError, match="expected 2 scores"):
        auprc(np.array([1, 0], dtype=bool), np.array([1.0]))


def test_target_rank():
    is_t = np.array([0, 1, 0, 0], dtype=bool)
    assert target_rank(is_t, np.array([0.1, 0.9, 0.5, 0.2])) == 1
    assert target_rank(is_t, np.array([0.95, 0.9, 0.99, 0.2])) == 3
    assert target_rank(is_t, np.array([0.9, 0.9, 0.1, 0.2])) == 1.5  # tie: expected rank


def test_accuracy_asr_and_removal():
    assert accuracy(np.array([1, 0, 1]), np.array([1, 1, 1])) == pytest.approx(2 / 3)
    assert attack_success_rate(np.array([2, 2, 1]), np.array([2, 2, 2])) == pytest.approx(2 / 3)
    removed = np.array([1, 1, 0, 1, 0, 0], dtype=bool)
    is_adv = np.array([1, 1, 1, 0, 0, 0], dtype=bool)
    assert removal_percentages(removed, is_adv) == pytest.approx((200 / 3, 100 / 3))


def test_summaries_and_confidence_intervals():
    s = summarize([1.0, 2.0, 3.0, 4.0])
    assert s.mean == 2.5 and s.std == pytest.approx(np.std([1, 2, 3, 4], ddof=1))
    # t_{0.975, 3} = 3.182446305284263
    half = 3.182446305284263 * s.std / 2
    assert (s.ci_low, s.ci_high) == pytest.approx((2.5 - half, 2.5 + half))
    assert summarize([]).n == 0 and summarize([5.0]).std == 0.0
    d = paired_difference([1.0, 2.0, 3.0], [0.5, 1.0, 2.5])
    assert d.mean == pytest.approx(np.mean([0.5, 1.0, 0.5]))
