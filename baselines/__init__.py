"""Target-identification baselines (paper 000 Sec. 6.3).  Importing this package registers the
in-tree ones in :data:`benchmark.registry.target_rankers`; FIT itself registers from
``defenses.fit``."""
from baselines.base import TargetRanker
from baselines.certainty import LeastCertain, MostCertain
from baselines.knn import MaxKNNDistance, MinKNNDistance
from baselines.random_rank import RandomRanker
from benchmark.registry import target_rankers

target_rankers.add(
    "max-knn", MaxKNNDistance,
    "Largest L2 penultimate-feature distance to the k-th (10th) nearest training example "
    "first (paper 000 Sec. 6.3)")
target_rankers.add(
    "min-knn", MinKNNDistance,
    "Smallest L2 penultimate-feature distance to the k-th (10th) nearest training example "
    "first (paper 000 Sec. 6.3)")
target_rankers.add("most-certain", MostCertain,
                   "Lowest loss w.r.t. the predicted label first (paper 000 Sec. 6.3)")
target_rankers.add("least-certain", LeastCertain,
                   "Highest loss w.r.t. the predicted label first (paper 000 Sec. 6.3)")
target_rankers.add("random", RandomRanker, "Uniformly random scores from the trial's rng")

__all__ = ["LeastCertain", "MaxKNNDistance", "MinKNNDistance", "MostCertain", "RandomRanker",
           "TargetRanker"]
