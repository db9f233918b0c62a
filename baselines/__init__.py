"""Target-identification rankers (paper 000 Sec. 5 and 6.3).  Importing this package registers
the in-tree ones in :data:`benchmark.registry.target_rankers`: ``fit`` (FIT, Alg. 2) and its
baselines ``max-knn`` / ``min-knn``, ``most-certain`` / ``least-certain`` and ``random``."""
from baselines import certainty, fit, knn, random  # noqa: F401  (imported for registration)
