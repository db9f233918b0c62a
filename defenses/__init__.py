"""Defenses: per-training-example scorers.  Importing this package registers the in-tree ones."""
from benchmark.registry import defenses
from defenses.influence.simple import SimpleGAS, SimpleTracInCP

defenses.add("tracincp", SimpleTracInCP, "TracInCP (paper 000 Eq. 5): sum over checkpoints of (eta/b) <g_i, g_te>")
defenses.add("gas", SimpleGAS, "GAS = renormalized TracInCP (paper 000 Eq. 12): sum of (eta/b) cos(g_i, g_te)")
