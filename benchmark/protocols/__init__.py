"""Evaluation protocols (a registered kind: :data:`benchmark.registry.protocols`).  Each module
registers one :class:`benchmark.api.Protocol` named like the file."""
from benchmark.protocols import (adversarial_set, attack_success, filtering, mitigation,  # noqa: F401
                                 target_identification)
