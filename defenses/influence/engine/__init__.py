"""The shared influence engine: every gradient-similarity estimator is one *score tile*.

A tile is ``(training-side map, query-side map, optional preconditioner, reduction, checkpoint
weights)`` (DESIGN.md, "Core contracts").  :func:`score_matrix` evaluates

    S[i, j] = sum_c  w_c * m_c[i] * live_c[j] * R( phi_c(z_i), P psi_c(z_j) )

for every training example ``i`` and query ``j``, where ``phi``/``psi`` are the two maps at
checkpoint ``c`` (by default the per-example loss gradient, paper 000 Sec. 2), ``P`` an optional
preconditioner (a damped inverse Hessian for influence functions, paper 000 Eq. 1 / paper 001
Eq. 4), ``R`` a reduction (dot, cosine, layerwise cosine, or a cosine that normalises the
training side only, Eq. 9), ``w_c`` the checkpoint weight (``eta_t / b`` for TracIn-style
estimators, Eqs. 4, 5, 11, 12), ``m_c`` an optional per-training-example multiplicity (TracIn's
"example ``i`` was in this interval's batches", Eq. 4) and ``live_c[j] = 0`` when query ``j``'s
gradient is exactly zero at ``c`` (reference code: such a checkpoint is skipped).

How per-example gradients are obtained (no Python loop over examples):

* one batched forward pass in eval mode with forward hooks on the supported modules, which keep
  each module's input ``a``; one ``torch.autograd.grad`` call for the summed per-example scalar
  returns every hooked module's output gradient ``delta``.  The parameters are frozen and the
  graph starts at the hooked outputs, so the batch's weight gradients are never formed.
  Examples are independent in eval mode, so ``delta[i]`` is example ``i``'s own.
* per parameter tensor ("layer"), a rule of the module's type (:data:`RULES`) turns
  ``(a, delta)`` into a *feature*:
  ``Factored`` (Linear weights: ``g_i = sum_t delta_it a_it^T``, positions ``t``),
  ``ConvFeature`` (Conv weights: the same, kept as raw input and output gradient until used),
  ``Indexed`` (Embedding weights), or ``Dense`` (biases, BatchNorm/LayerNorm/GroupNorm
  affine parameters: tiny per-example vectors).
* per layer, the engine either uses the Gram ("kernel") identity
  ``<g_i, g_j> = sum_{t,s} (a_it . a_js)(delta_it . delta_js)`` -- for a Linear layer
  ``(a_i . a_j)(delta_i . delta_j)``, plus ``delta_i . delta_j`` from its bias tensor, i.e. the
  ``(a_i . a_j + 1)(delta_i . delta_j)`` identity -- and its norm counterpart ("ghost norm"
  ``||g_i||^2 = ||a_i||^2 ||delta_i||^2``), or materialises per-example gradients when that is
  cheaper (conv layers with many positions, many queries).  The choice is a cost model
  (``EngineOptions(strategy="auto")``, constants measured on the benchmark CPU) or forced per
  layer.  For conv layers the patch products ``a_it . a_js`` come from im2col or, when
  cheaper, from the Gram of the padded input pixels (summed over kernel offsets;
  ``EngineOptions.pixel_gram``);
  per-example conv gradients come from the convolution weight-gradient kernel with one group per
  example (more than ``EngineOptions.conv_grouped_min_positions`` positions) or from im2col + a
  batched GEMM into a reused buffer (fewer).
* parameters of modules without a rule (or used in a way the hooks cannot see) fall back to
  ``torch.func.vmap(grad(...))``.

Shared passes: :func:`score_matrices` scores several *terms* ``(reduction, use_multiplicity)``
in one pass -- e.g. the six TracIn-family estimators (dot, cosine, layerwise cosine; with or
without TracIn's interval multiplicity) or the three IF variants.  Each training batch's
gradient work is done once per checkpoint and query tile: per layer the raw Gram
``<phi_i, P psi_j>`` and the training squared norm (``tiles.tile_parts``); every reduction is
then an elementwise combination of them (``tiles.combine_tile``), weighted per term.
:func:`score_matrix` is the one-term case, through the same two steps, so each term of a shared
pass is bit-identical to scoring it alone.  Terms with multiplicity score only the credited rows
(non-zero multiplicity), in their own batches beside the all-rows batches of the terms without:
per-example results of batched kernels depend in the last bits on the batch they are computed
in (``EngineOptions.share_multiplicity_batches`` trades this for one set of batches).  The
defenses share a pass within a trial through the trial's memo (``evidence.extras
["influence_memo"]``; ``defenses.influence.tracin``, ``defenses.influence.influence_functions``).

Loop order: checkpoints outermost (each loaded once), then query tiles (query features, norms
and preconditioning are computed once per checkpoint and tile and held), then the row groups
(all rows; the credited rows) and their training batches, each combined into every term it
feeds; memory is bounded by the query-tile and batch sizes (plus one ``(B, M)`` Gram per layer
and one float64 matrix per term).  Scores accumulate in float64; features are computed in the
model's dtype (float32 in production).

Conventions (paper 000 Sec. 2 and the reference code, original_code.md Sec. 2.2-2.3), each an
option where the other choice is plausible:

* gradient of the per-example loss without a weight-decay term (``GradientMap(param_l2=...)``
  adds the reference GAS loop's ``wd * sum_p ||p||^2`` term instead);
* model in eval mode (not an option: in train mode BatchNorm couples the examples of a batch, so
  a per-example gradient is not defined);
* checkpoint weight ``eta_t / b`` (set by the caller, see ``defenses.influence.tracin``);
* a checkpoint is skipped for a query whose gradient is exactly zero (``skip_zero_query``);
* norms clamped at ``MIN_NORM = 1e-8`` (``min_norm``);
* a "layer" of the layerwise reduction is one parameter tensor, and the layerwise cosine is the
  sum (not the mean) of the per-tensor cosines.

Layout: ``outputs`` (per-example scalars), ``features`` (feature types), ``algebra`` (norms,
Grams, materialisation), ``conv_kernels`` (conv kernels without im2col), ``rules/`` (one file
per layer type), ``gradients`` (the hooked pass and the torch.func fallback), ``maps``,
``preconditioners``, ``options`` (also the term type), ``plan`` (strategy and tile size), ``tiles``
(query side, tile parts and their combination per reduction), ``score`` (:func:`score_matrices`,
:func:`score_matrix`).
"""
from __future__ import annotations

from .algebra import cat_batch, dot_dense, gram, materialise, sq_norms
from .features import ConvFeature, Dense, Factored, Feature, Indexed, Workspace
from .gradients import BoundGradientMap
from .maps import (BoundMap, BoundRepresentationMap, FeatureMap, GradientMap, RepresentationMap,
                   as_map, resolve_params)
from .options import MIN_NORM, REDUCTIONS, EngineOptions, StateDict, Term, WeightedCheckpoint
from .outputs import OUTPUT_FUNCTIONS, gold_logit, gold_prob, output_function
from .preconditioners import FunctionPreconditioner, MatrixPreconditioner, Preconditioner
from .rules import RULES, RuleFn, rule_for
from .score import score_matrices, score_matrix

__all__ = [
    "BoundGradientMap", "BoundMap", "BoundRepresentationMap", "ConvFeature", "Dense", "EngineOptions",
    "Factored", "Feature", "FeatureMap", "FunctionPreconditioner", "GradientMap", "Indexed",
    "MIN_NORM", "MatrixPreconditioner", "OUTPUT_FUNCTIONS", "Preconditioner", "REDUCTIONS", "RULES",
    "RepresentationMap", "RuleFn", "StateDict", "WeightedCheckpoint", "Workspace", "as_map",
    "cat_batch", "dot_dense", "gold_logit", "gold_prob", "gram", "materialise", "output_function",
    "resolve_params", "rule_for", "score_matrices", "score_matrix", "sq_norms", "Term",
]
