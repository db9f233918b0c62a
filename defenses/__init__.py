"""Defenses: per-training-example scorers.  Importing this package registers the in-tree ones."""
from benchmark.registry import defenses
from defenses.influence import dynamic as _dyn, static as _sta

defenses.add("tracin", _dyn.TracIn, "TracIn (paper 000 Eq. 4): (eta/b) <g_i, g_te> at the intervals whose batches held z_i")
defenses.add("tracin-renorm", _dyn.TracInRenorm, "Renormalized TracIn (paper 000 Eq. 11): Eq. 4 with gradient cosines")
defenses.add("tracin-l", _dyn.TracInL, "Layerwise renormalized TracIn (paper 000 Sec. 4.4): per-tensor cosines, summed")
defenses.add("tracincp", _dyn.TracInCP, "TracInCP (paper 000 Eq. 5): sum over checkpoints of (eta/b) <g_i, g_te>")
defenses.add("gas", _dyn.GAS, "GAS = renormalized TracInCP (paper 000 Eq. 12, Alg. 1): sum of (eta/b) cos(g_i, g_te)")
defenses.add("gas-l", _dyn.GASL, "GAS-L (paper 000 Sec. 4.4): GAS with per-parameter-tensor cosines, summed")
defenses.add("if", _sta.InfluenceFunctions, "Influence functions (paper 000 Eq. 1): (1/n) g_te^T (H + damping I)^-1 g_i")
defenses.add("if-renorm", _sta.InfluenceFunctionsRenorm, "Renormalized influence functions (paper 000 Eq. 9): g_i / ||g_i||")
defenses.add("if-l", _sta.InfluenceFunctionsL, "Layerwise renormalized influence functions (paper 000 Eq. 9 per parameter tensor)")
defenses.add("rp", _sta.RepresenterPoint, "Representer point (paper 000 Eq. 2): -(1/2 lambda n) dL_i/da <f_i, f_te>")
defenses.add("rp-renorm", _sta.RepresenterPointRenorm, "Renormalized representer point (paper 000 Eq. 10): sgn(dL_i/da)")

from defenses.random_scores import NoDefense, RandomScores  # noqa: E402

defenses.add("random", RandomScores, "Uniformly random scores: the control for removal protocols")
defenses.add("none", NoDefense, "No defense: measures the attack alone (attack-success protocol)")
