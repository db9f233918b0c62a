"""Defenses: per-training-example scorers.  Importing this package registers the in-tree ones:
the TracIn family (:mod:`defenses.influence.tracin`), influence functions
(:mod:`defenses.influence.influence_functions`), representer point
(:mod:`defenses.influence.representer_point`), paper 001's baselines ``spectral-signatures`` (its
PCA), ``activation-clustering`` (its Clustering), ``spectre`` (its SPECTRA) and ``cosin``, paper
001's NLP baselines ``onion`` (ONION, with the offline WordNet Kneser-Ney LM of
:mod:`defenses.ngram_lm`) and ``bertscore`` (masked-LM word suspicion), paper
000's ``deep-knn``, the trivial baselines ``input-norm``, ``loss`` and ``grad-norm``, and the
``random`` / ``none`` controls."""
from defenses import grad_norm, input_norm, loss, none, random  # noqa: F401  (imported for registration)
from defenses.influence import influence_functions, influence_graph, representer_point, tracin  # noqa: F401
from defenses import activation_clustering, cosin, deep_knn, spectral_signatures, spectre  # noqa: F401
from defenses import bertscore, onion  # noqa: F401
