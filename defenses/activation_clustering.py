"""``activation-clustering``: Chen et al. (2018), "Detecting backdoor attacks on deep neural networks
by activation clustering", Sec. 3 -- paper 001's *Clustering* baseline (Sec. 4.1).

Per *assigned* label class: the last hidden layer's activations (the penultimate features),
reduced to ``nb_dims = 10`` dimensions (FastICA in Chen et al.; ``reduce="pca"`` is ART
``ActivationDefence``'s class default), split by 2-means; one cluster is declared poisonous by
``analysis``:

* ``"smaller"`` (default): the smaller cluster of every class (ART's default; the fair
  re-implementation of Hayase's / Sun's "Clustering", whose ``kmeans_filters.jl`` orients the
  clusters with the ground truth);
* ``"relative-size"``: the smaller cluster if it holds less than ``size_threshold = 0.35`` of the
  class (ART ``ClusteringAnalyzer.analyze_by_relative_size``; fractions rounded to 2 decimals as
  ART does);
* ``"silhouette"``: as ``relative-size`` and additionally the class's silhouette score on the
  reduced activations (rounded to 4 decimals as ART does) above ``silhouette_threshold = 0.1``
  (ART ``analyze_by_silhouette_score``).

As in ART, a class with at most ``nb_dims`` feature dimensions is clustered without reduction.

A property of the FastICA default worth knowing (measured, tests): ICA sources have unit variance,
and the between-cluster scatter of any 2-cluster split is rank one, so the correct split of a
mean-shifted sub-population beats a split of pure Gaussian noise by at most ``1 - 2/pi`` of one
of the ``nb_dims`` unit variances.  At 10 dimensions the right partition is the 2-means optimum
by about 1 % of the objective on planted synthetic poisons, and k-means with 10 restarts finds it
for only some seeds (1 to 5 of 10 in our runs); PCA (variances kept) and FastICA at 3 dimensions
find it for every seed.  Hayase's "Clustering" (which paper 001 most likely ran) uses PCA to 100
dimensions.

Per-example score (ours, so that AUPRC is defined): with ``P`` the smaller cluster of the class
(the only one any analysis can flag), ``C`` the other, centres ``c_P``, ``c_C`` in the reduced
space and ``f_i`` the fraction of the class in example ``i``'s cluster,

    score_i = 1[i in a flagged cluster] + (1 - f_i) (1 + t_i) / 2,
    t_i = (||z_i - c_C|| - ||z_i - c_P||) / ||c_P - c_C||  in [-1, 1],

so the flagged examples rank first (the flagged set is exactly the method's), smaller clusters
are favoured across classes (Chen et al.'s premise: the poison is the small cluster), and within
a cluster the examples deeper on ``P``'s side of the boundary rank higher.  Both terms are
scale-free.  A class with fewer than 2 examples, or whose 2-means finds one cluster, flags
nothing and scores 0 throughout.

Every random component (FastICA, k-means) is seeded from ``rng`` (``evidence.rng``), two seeds
drawn per class in label order whatever the options.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.cluster import KMeans
from sklearn.decomposition import PCA, FastICA
from sklearn.metrics import silhouette_score

from benchmark.api import Defense, Evidence
from benchmark.config import ConfigError
from benchmark.features import check_features, class_indices, penultimate_features
from benchmark.registry import defenses

REDUCTIONS = ("fastica", "pca")
ANALYSES = ("smaller", "relative-size", "silhouette")
RANK_REL_TOL = 1e-10  # ours: singular values below this fraction of the largest count as zero


@dataclass
class ActivationClusteringConfig:
    reduce: str = "fastica"  # paper: Chen et al. Sec. 3 (ICA); "pca": ART ActivationDefence's class default
    nb_dims: int = 10  # paper: Chen et al. Sec. 3 / ART
    analysis: str = "smaller"  # reference-code: ART default; fair version of Hayase's kmeans filter (notes)
    size_threshold: float = 0.35  # reference-code: ART ClusteringAnalyzer
    silhouette_threshold: float = 0.1  # reference-code: ART ClusteringAnalyzer
    n_init: int = 10  # ours: k-means restarts (sklearn's default before 1.4, when ART's code was written)
    ica_max_iter: int = 1000  # reference-code: ART reduce_dimensionality
    ica_tol: float = 0.005  # reference-code: ART reduce_dimensionality
    batch_size: int = 512  # ours (forward passes; no effect on the scores)

    def __post_init__(self) -> None:
        if self.reduce not in REDUCTIONS:
            raise ConfigError(f"reduce must be one of {REDUCTIONS}, got {self.reduce!r}")
        if self.analysis not in ANALYSES:
            raise ConfigError(f"analysis must be one of {ANALYSES}, got {self.analysis!r}")
        if self.nb_dims < 1:
            raise ConfigError(f"nb_dims must be >= 1, got {self.nb_dims}")
        if not 0.0 < self.size_threshold <= 0.5:
            raise ConfigError(f"size_threshold must be in (0, 0.5], got {self.size_threshold}")
        if not -1.0 <= self.silhouette_threshold <= 1.0:
            raise ConfigError(f"silhouette_threshold must be in [-1, 1], got {self.silhouette_threshold}")
        if self.n_init < 1 or self.ica_max_iter < 1 or self.batch_size < 1:
            raise ConfigError("n_init, ica_max_iter and batch_size must be >= 1")
        if self.ica_tol <= 0:
            raise ConfigError(f"ica_tol must be > 0, got {self.ica_tol}")


@dataclass
class ClassClustering:
    """One class's 2-means result: reduced activations, cluster of each example, the smaller
    cluster ``small`` (first on a tie, as ART's ``argmin``) and whether it is flagged."""

    reduced: np.ndarray
    clusters: np.ndarray
    small: int
    flagged: bool


def reduce_class(x: np.ndarray, nb_dims: int, reduce: str, seed: int, max_iter: int = 1000,
                 tol: float = 0.005) -> np.ndarray:
    """Chen et al.'s reduction of one class's activations to ``nb_dims`` (none when ``x`` has at
    most ``nb_dims`` columns, as ART).  Ours: at most as many components as the centred class
    has non-negligible singular values (``1e-10`` of the largest), so that dead (constant) units
    cannot make FastICA's whitening divide by zero."""
    if x.shape[1] <= nb_dims:
        return x
    sv = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    rank = int(np.sum(sv > RANK_REL_TOL * sv[0])) if len(sv) and sv[0] > 0 else 0
    n_comp = max(1, min(nb_dims, len(x), rank))
    if reduce == "fastica":
        ica = FastICA(n_components=n_comp, max_iter=max_iter, tol=tol, random_state=seed)
        with np.errstate(divide="ignore", invalid="ignore"):  # components past n_comp are dropped
            return ica.fit_transform(x)
    return PCA(n_components=n_comp, random_state=seed).fit_transform(x)


def cluster_class(x: np.ndarray, seeds: tuple[int, int], c: ActivationClusteringConfig) -> ClassClustering:
    """Reduce, 2-means and analyse one class (module docstring)."""
    if len(x) < 2:
        return ClassClustering(x, np.zeros(len(x), dtype=np.int64), 0, False)
    z = reduce_class(x, c.nb_dims, c.reduce, seeds[0], c.ica_max_iter, c.ica_tol)
    clusters = KMeans(n_clusters=2, n_init=c.n_init, random_state=seeds[1]).fit_predict(z)
    sizes = np.bincount(clusters, minlength=2)
    small = int(np.argmin(sizes))
    if sizes.min() == 0:
        return ClassClustering(z, clusters, small, False)
    if c.analysis == "smaller":
        flagged = True
    else:
        flagged = bool(np.round(sizes[small] / sizes.sum(), 2) < round(c.size_threshold, 2))
        if flagged and c.analysis == "silhouette":
            flagged = bool(round(float(silhouette_score(z, clusters)), 4) > round(c.silhouette_threshold, 4))
    return ClassClustering(z, clusters, small, flagged)


def class_scores(cc: ClassClustering) -> np.ndarray:
    """``1[flagged cluster] + (1 - f) (1 + t) / 2`` for one class (module docstring)."""
    z, cl = cc.reduced, cc.clusters
    n = len(cl)
    sizes = np.bincount(cl, minlength=2)
    if n < 2 or sizes.min() == 0:
        return np.zeros(n)
    c_p = z[cl == cc.small].mean(axis=0)
    c_c = z[cl != cc.small].mean(axis=0)
    gap = float(np.linalg.norm(c_p - c_c))
    t = np.zeros(n)
    if gap > 0:
        t = np.clip((np.linalg.norm(z - c_c, axis=1) - np.linalg.norm(z - c_p, axis=1)) / gap, -1.0, 1.0)
    frac = sizes[cl] / n
    return (cl == cc.small) * float(cc.flagged) + (1.0 - frac) * (1.0 + t) / 2.0


def cluster_classes(features: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                    config: ActivationClusteringConfig | None = None) -> dict[int, tuple[np.ndarray, ClassClustering]]:
    """``{label: (indices, ClassClustering)}`` for every class present, seeded from ``rng``."""
    c = config if config is not None else ActivationClusteringConfig()
    x, y = check_features(features, labels)
    out = {}
    for label, idx in class_indices(y).items():
        seeds = tuple(int(s) for s in rng.integers(0, 2**31 - 1, size=2))
        out[label] = (idx, cluster_class(x[idx], seeds, c))  # type: ignore[arg-type]
    return out


def flagged_from_features(features: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                          config: ActivationClusteringConfig | None = None) -> np.ndarray:
    """``(N,)`` boolean: the examples in a cluster the analysis declared poisonous."""
    out = np.zeros(len(labels), dtype=bool)
    for idx, cc in cluster_classes(features, labels, rng, config).values():
        out[idx] = cc.flagged & (cc.clusters == cc.small)
    return out


def scores_from_features(features: np.ndarray, labels: np.ndarray, rng: np.random.Generator,
                         config: ActivationClusteringConfig | None = None) -> np.ndarray:
    """``(N,)`` activation-clustering scores (module docstring)."""
    s = np.zeros(len(labels))
    for idx, cc in cluster_classes(features, labels, rng, config).values():
        s[idx] = class_scores(cc)
    return s


@defenses.register("activation-clustering", "Activation clustering (Chen et al. 2018; paper 001's Clustering): "
                                            "per-class FastICA-10 + 2-means, smaller cluster flagged")
class ActivationClustering(Defense):
    """Chen et al. (2018) Sec. 3 on the final model's penultimate features, per assigned class."""

    Config = ActivationClusteringConfig
    requires = frozenset({"model"})

    def score(self, evidence: Evidence) -> np.ndarray:
        c = self.config
        f = penultimate_features(evidence.model(), evidence.train_inputs, c.batch_size).numpy()
        return scores_from_features(f, evidence.train_labels.numpy(), evidence.rng, c)
