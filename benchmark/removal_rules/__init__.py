"""Removal rules (a registered kind): one score per training example -> a removal mask.

* ``threshold``: remove every example whose score is >= ``zeta`` (paper 000 Alg. 3, line 6,
  applied to anomaly scores sigma),
* ``top-k``: remove the ``k`` highest-scored examples, or ``factor * eps N`` of them when
  ``k`` is None (paper 001 Sec. 4.1 removes 1.5 eps N, which needs the poisoning budget),
* ``top-percent``: remove the top ``p`` percent (paper 000 Sec. 4.5, Fig. 4),
* ``random``: remove ``k`` examples (or ``budget`` of them) uniformly at random (the control).

Ties at a cut are broken by example index (stable sort), so masks are deterministic.
"""
from benchmark.removal_rules import random, threshold, top_k, top_percent  # noqa: F401  (registration)
