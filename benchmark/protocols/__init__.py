"""Evaluation protocols (a registered kind: :data:`benchmark.registry.protocols`).  Each module
registers one :class:`benchmark.api.Protocol` named like the file."""
from benchmark.protocols import (adversarial_set, attack_success, filtering, influence_density,  # noqa: F401
                                 mitigation, remove_and_retrain, target_identification,
                                 training_diagnostics)
