import subprocess
import sys
import textwrap

import pytest

from pathlib import Path

from benchmark.api import Defense
from benchmark.registry import ALL, Registry, RegistryError, defenses

REPO = Path(__file__).resolve().parents[1]


def test_register_and_get():
    reg = Registry("things")

    @reg.register("alpha", "the first thing")
    class Alpha:
        pass

    assert reg.get("alpha") is Alpha
    assert reg.entry("alpha").description == "the first thing"
    assert reg.names() == ["alpha"]
    assert "alpha" in reg and len(reg) == 1


def test_duplicate_name_is_an_error():
    reg = Registry("things")
    reg.add("alpha", object)
    with pytest.raises(RegistryError, match="duplicate things name 'alpha'"):
        reg.add("alpha", object)


def test_unknown_name_suggests_close_matches():
    reg = Registry("things")
    reg.add("tracincp", object)
    reg.add("gas", object)
    with pytest.raises(RegistryError) as err:
        reg.get("tracinpc")
    assert "did you mean 'tracincp'" in str(err.value)
    assert "python -m benchmark list things" in str(err.value)


def test_description_defaults_to_docstring_first_line():
    reg = Registry("things")

    class Documented:
        """First line.

        More text."""

    reg.add("doc", Documented)
    assert reg.entry("doc").description == "First line."


def test_one_instance_per_kind():
    assert set(ALL) == {"datasets", "featurizers", "models", "attacks", "defenses",
                        "target_rankers", "protocols", "removal_rules", "suites"}
    assert "gas" in defenses and "tracincp" in defenses


def test_registry_checks_the_contract_class():
    reg = Registry("things", Defense)

    class NotADefense:
        pass

    with pytest.raises(RegistryError, match="must be a subclass of benchmark.api.defense.Defense"):
        reg.add("bad", NotADefense)
    with pytest.raises(RegistryError, match="must be callable"):
        Registry("builders").add("bad", 42)


def test_every_in_tree_entry_subclasses_its_contract():
    for reg in ALL.values():
        for entry in reg.entries():
            if reg.base is not None:
                assert issubclass(entry.obj, reg.base), (reg.kind, entry.name)
            else:
                assert callable(entry.obj), (reg.kind, entry.name)


def test_registered_names_match_file_names():
    """A file is named after what it registers (a family file after its family)."""
    families = {"tracin": "tracin", "tracin-renorm": "tracin", "tracin-l": "tracin", "tracincp": "tracin",
                "gas": "tracin", "gas-l": "tracin", "if": "influence_functions", "if-renorm": "influence_functions",
                "if-l": "influence_functions", "rp": "representer_point", "rp-renorm": "representer_point",
                "max-knn": "knn", "min-knn": "knn", "most-certain": "certainty", "least-certain": "certainty",
                "sst2-syntactic": "sst2", "weber-backdoor": "weber_backdoor",
                **{f"influence-graph-{v}": "influence_graph" for v in ("greedy", "agglomerative", "gas-greedy",
                                                                       "gas-agglomerative")}}
    for kind in ("attacks", "defenses", "target_rankers", "protocols", "removal_rules", "models"):
        for entry in ALL[kind].entries():
            if entry.origin != "in-tree" or not entry.obj.__module__.startswith(
                    ("attacks.", "defenses.", "baselines.", "benchmark.")):
                continue  # plugins, and entries that other tests register
            stem = entry.obj.__module__.rsplit(".", 1)[-1]
            assert stem == families.get(entry.name, entry.name.replace("-", "_")), (kind, entry.name, stem)


PLUGIN_PYPROJECT = """
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "tsa-plugin-demo"
version = "0.0.1"

[project.entry-points."benchmark.defenses"]
demo-loss = "tsa_plugin_demo:LossDefense"

[project.entry-points."benchmark.target_rankers"]
demo-ranker = "tsa_plugin_demo:LossRanker"

[project.entry-points."benchmark.removal_rules"]
demo-top1 = "tsa_plugin_demo:TopOne"

[project.entry-points."benchmark.protocols"]
demo-protocol = "tsa_plugin_demo:RemovedAdversarial"

[project.entry-points."benchmark.suites"]
demo-suite = "tsa_plugin_demo:demo_suite"
"""

PLUGIN_MODULE = '''
"""A demo plugin distribution: one defense, ranker, removal rule, protocol and suite."""
from dataclasses import dataclass

import numpy as np

from benchmark.api import Defense, MethodResult, NoParams, Protocol, RemovalRule, TargetRanker
from benchmark.experiment import Experiment, MethodSpec, Suite
from benchmark.registry import removal_rules
from benchmark.training.losses import per_example_loss


class LossDefense(Defense):
    """Demo plugin: final-model training loss as the suspicion score."""

    Config = NoParams
    requires = frozenset({"model"})

    def score(self, evidence):
        model = evidence.model()
        return per_example_loss(model(evidence.train_inputs), evidence.train_labels).detach().numpy()


class LossRanker(TargetRanker):
    """Demo plugin: loss w.r.t. the predicted label, highest first."""

    Config = NoParams
    requires = frozenset({"model", "queries"})

    def rank(self, evidence):
        x, y = evidence.queries()
        return per_example_loss(evidence.model()(x), y).detach().numpy()


class TopOne(RemovalRule):
    """Demo plugin: remove the single highest score."""

    Config = NoParams

    def select(self, scores, rng, budget=None):
        mask = np.zeros(len(scores), dtype=bool)
        mask[int(np.argmax(scores))] = True
        return mask


@dataclass(frozen=True)
class RemovedParams:
    removal: str = "demo-top1"


class RemovedAdversarial(Protocol):
    """Demo plugin: is the example the removal rule picks adversarial?"""

    Params = RemovedParams

    def setup(self, trial, rng):
        return {}

    def evaluate(self, trial, state, method, rng):
        from benchmark.protocols.common import build_removal, make_evidence

        ev = make_evidence(trial, method.requires, rng)
        mask = build_removal(self.params.removal, "demo").select(method.score(ev), rng)
        return MethodResult({"pct_adv_removed": 100.0 * float(trial.is_adv[mask].mean())}, None, sorted(ev.granted))


def demo_suite():
    from benchmark.suites.quick import TOY_CONFIG

    cfg = {**TOY_CONFIG, "protocol": {"name": "demo-protocol", "params": {}}}
    return Suite("demo-suite", 1, "demo", (Experiment("demo", "demo", cfg, (MethodSpec("loss", "demo-loss"),)),))
'''


def _run(args, env, cwd):
    out = subprocess.run([sys.executable, "-m", "benchmark", *args], env=env, capture_output=True, text=True, cwd=cwd)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_plugin_distribution_is_discovered(tmp_path):
    """Build and install a tiny plugin distribution with a defense, a ranker, a removal rule, a
    protocol and a suite; `list` shows each, and runs use them by name."""
    src = tmp_path / "src"
    (src / "tsa_plugin_demo").mkdir(parents=True)
    (src / "pyproject.toml").write_text(textwrap.dedent(PLUGIN_PYPROJECT))
    (src / "tsa_plugin_demo" / "__init__.py").write_text(PLUGIN_MODULE)
    target = tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-index",
                    "--no-build-isolation", "--target", str(target), str(src)], check=True)
    import os

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(target), str(REPO)]))
    for kind, name, desc in (("defenses", "demo-loss", "Demo plugin: final-model training loss"),
                             ("target_rankers", "demo-ranker", "Demo plugin: loss w.r.t."),
                             ("removal_rules", "demo-top1", "Demo plugin: remove the single"),
                             ("protocols", "demo-protocol", "Demo plugin: is the example")):
        line = next(l for l in _run(["list", kind], env, tmp_path).splitlines() if name in l)
        assert desc in line and "[plugin:tsa-plugin-demo]" in line
    common = ["--no-progress", "--scale", "smoke", "--trials", "1", "--cache-dir", str(tmp_path / "cache")]
    out = _run(["run", *common, "--defense", "demo-loss", "--method", "demo-loss",
                "--output-dir", str(tmp_path / "runs")], env, tmp_path)
    assert "demo-loss" in out and "auprc" in out
    out = _run(["run", *common, "--experiment", "target-identification", "--ranker", "demo-ranker",
                "--method", "demo-ranker", "--output-dir", str(tmp_path / "runs2")], env, tmp_path)
    assert "demo-ranker" in out and "target_rank" in out
    out = _run(["run", *common, "--suite", "demo-suite", "--output-dir", str(tmp_path / "runs3")], env, tmp_path)
    assert "pct_adv_removed" in out and "loss" in out
