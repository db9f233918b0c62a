"""Reproducibility benchmark for defenses against training-set attacks.

Entry point: ``python -m benchmark`` (see ``benchmark.cli``).
"""
__version__ = "0.1.0"
