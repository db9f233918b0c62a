"""Evaluation protocols.  Each module has ``Params`` (a dataclass), ``setup(prepared, params,
rng) -> state | None`` (None: the attack did not succeed in this trial, so there is nothing to
defend) and ``evaluate(prepared, state, method, rng) -> MethodResult``."""
from __future__ import annotations

from types import ModuleType

from benchmark.protocols import (adversarial_set, attack_success, filtering, mitigation,
                                 target_identification)

PROTOCOLS: dict[str, ModuleType] = {
    "attack-success": attack_success,
    "adversarial-set": adversarial_set,
    "target-identification": target_identification,
    "mitigation": mitigation,
    "filtering": filtering,
}


def get_protocol(name: str) -> ModuleType:
    import difflib

    if name not in PROTOCOLS:
        close = difflib.get_close_matches(name, list(PROTOCOLS), n=2)
        raise ValueError(f"unknown protocol {name!r}" + (f"; did you mean {close}?" if close else "")
                         + f" Known: {sorted(PROTOCOLS)}")
    return PROTOCOLS[name]
