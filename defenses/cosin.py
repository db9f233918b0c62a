"""``cosin``: COSIN, Hammoudeh & Lowd (2021), "Simple, attack-agnostic defense against targeted
training set attacks using cosine similarity" (ICML 2021 UDL workshop) -- paper 001's *COSIN*
baseline (Sec. 4.1).

What the sources say:

* paper 001 Sec. 4.1: "iteratively updating the influence of each data point using cached training
  checkpoints"; Sec. 2: unlike paper 001, COSIN "caches training checkpoints to iteratively update
  the influence", computes *point-wise* (not pair-wise) influence, and requires "a target test
  example as stimuli to compute the influence";
* the reference notes (attacks_datasets.md Sec. 8): "gradient-cosine influence, i.e. the precursor
  of GAS".

The workshop paper's own equation is not recoverable here: it is not among the papers, and its
repository (ZaydH/cosin) holds only a README ("Source code coming soon").  This module therefore
implements the closest *published* form, GAS = renormalized TracInCP (paper 000 Eq. 12, Alg. 1,
the same authors' journal version of the idea):

    COSIN(z_i, z_te) := sum_{t in T} (eta_t / b) cos( grad L(z_i; theta_{t-1}), grad L(z_te; theta_{t-1}) )

over the recorded checkpoints, for a target ``z_te`` with the final model's predicted label.  It
is the ``gas`` tile of :mod:`defenses.influence.tracin` under its own name (same engine pass, same
options; within a trial ``cosin`` and ``gas`` share the pass and their scores are identical).  What
paper 001 fed it: a target (its Sec. 2), so ``cosin`` requires ``queries`` and returns
``(n_train, n_queries)``; the ``remove-and-retrain`` protocol hands it one successful target, as it
does GAS.  Whether the workshop version weighted checkpoints by ``eta_t / b`` is unknown;
``weighting="uniform"`` gives the unweighted sum of cosines.
"""
from __future__ import annotations

from benchmark.registry import defenses
from defenses.influence.tracin import GAS


@defenses.register("cosin", "COSIN (Hammoudeh & Lowd 2021; paper 001's baseline) as its published form GAS "
                            "(paper 000 Eq. 12): sum over checkpoints of (eta/b) cos(g_i, g_te)")
class Cosin(GAS):
    """COSIN (paper 001 Sec. 4.1) = GAS, paper 000 Eq. 12 (module docstring): needs checkpoints and a target."""
