"""FIT target identification (paper 000 Sec. 5) and the Q_n robust scale (Eq. 13).

Importing this package registers ``fit`` in :data:`benchmark.registry.target_rankers`.
"""
from benchmark.registry import target_rankers
from defenses.fit.fit import (
    FIT,
    FITConfig,
    anomaly_scores,
    final_checkpoint_view,
    rank_within_classes,
    robust_center_scale,
    standardize,
    tail_heaviness,
    tail_heaviness_matrix,
)
from defenses.fit.robust_scale import QN_CONSTANT, kth_pairwise_distance, qn_scale

target_rankers.add(
    "fit",
    FIT,
    "FIT (paper 000 Alg. 2): rank candidates by the kappa-th largest robust anomaly score "
    "(median / Q_n) of their influence vector; estimator is a parameter",
)

__all__ = [
    "FIT",
    "FITConfig",
    "QN_CONSTANT",
    "anomaly_scores",
    "final_checkpoint_view",
    "kth_pairwise_distance",
    "qn_scale",
    "rank_within_classes",
    "robust_center_scale",
    "standardize",
    "tail_heaviness",
    "tail_heaviness_matrix",
]
