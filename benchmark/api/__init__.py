"""The contracts every plugin implements, in one layer below the plugins.

``attacks/``, ``defenses/``, ``baselines/`` and the protocols and removal rules import these
classes (and only harness modules below them); the harness reaches concrete plugins only through
:mod:`benchmark.registry`.  The layering is checked by the import-linter contracts in
``pyproject.toml``.
"""
from benchmark.api.attack import Attack, AttackedData, RunContext
from benchmark.api.defense import Defense, NoParams
from benchmark.api.evidence import NEEDS, ORACLE_NEEDS, Evidence, MissingEvidence
from benchmark.api.protocol import MethodResult, Protocol
from benchmark.api.ranker import TargetRanker
from benchmark.api.removal import RemovalRule

__all__ = ["Attack", "AttackedData", "Defense", "Evidence", "MethodResult", "MissingEvidence", "NEEDS",
           "NoParams", "ORACLE_NEEDS", "Protocol", "RemovalRule", "RunContext", "TargetRanker"]
