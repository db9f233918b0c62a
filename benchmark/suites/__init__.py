"""Registers the in-tree suites.  A suite is registered as a function returning a Suite."""
from benchmark.suites import quick  # noqa: F401
from benchmark.suites import attack_strength  # noqa: F401
from benchmark.suites import paper  # noqa: F401
