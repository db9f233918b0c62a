"""One poison-rate definition (issue 8, item 6): for every in-tree attack, the crafted data has
``n_adv / |D_tr| = epsilon`` of the *trained* set within rounding (or, for the two paper-000
Sec. 4.1 attacks that add a count to a given clean set, their documented rule), and the
data-free :meth:`poison_counts` the ``poison_rates`` tool uses gives exactly the crafted counts."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import attacks  # noqa: F401  (registers the attacks)
from attacks.patterns import AUX, count_poisons
from benchmark.api import RunContext
from benchmark.data.types import RawDataset, Split
from benchmark.registry import attacks as registry

CIFAR = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _images(n_per: int, channels: int, size: int, g: torch.Generator) -> Split:
    y = torch.arange(10).repeat_interleave(n_per)
    y = y[torch.randperm(len(y), generator=g)]
    return Split(torch.rand(len(y), channels, size, size, generator=g), y)


def cifar(n_per: int = 30, size: int = 32, seed: int = 0) -> RawDataset:
    g = torch.Generator().manual_seed(seed)
    return RawDataset("synthetic-cifar", "image", CIFAR, _images(n_per, 3, size, g), _images(8, 3, size, g))


def mnist_test_only() -> RawDataset:
    g = torch.Generator().manual_seed(1)
    empty = Split(torch.empty(0, 1, 28, 28), torch.empty(0, dtype=torch.long))
    test = Split(torch.rand(300, 1, 28, 28, generator=g), torch.arange(300) % 10)
    return RawDataset("mnist", "image", [str(d) for d in range(10)], empty, test)


def digits() -> RawDataset:
    g = torch.Generator().manual_seed(2)
    return RawDataset("synthetic-digits", "image", [str(d) for d in range(10)],
                      _images(30, 1, 8, g), _images(10, 1, 8, g))


def fsdd() -> RawDataset:
    rng = np.random.default_rng(0)

    def split(n_per: int) -> Split:
        y = np.repeat(np.arange(10), n_per)
        waves = [torch.from_numpy((0.1 * rng.standard_normal(int(rng.integers(1200, 3000)))).astype(np.float32))
                 for _ in y]
        return Split(waves, torch.from_numpy(y))

    return RawDataset("synthetic-fsdd", "audio", [str(d) for d in range(10)], split(20), split(4), sample_rate=8000)


def text(name: str = "synthetic-text") -> RawDataset:
    rng = np.random.default_rng(3)
    words = "good bad film movie plot story dull fine great acting".split()

    def split(n: int) -> Split:
        return Split([" ".join(rng.choice(words, size=int(rng.integers(3, 8)))) for _ in range(n)],
                     torch.arange(n) % 2)

    return RawDataset(name, "text", ["negative", "positive"], split(200), split(40),
                      source={"test_file": "test.tsv"})


def hidden_killer() -> RawDataset:
    """Paraphrases of every third training row and of every negative test sentence, in order."""
    data = text("sst2-syntactic")
    rows = set(range(0, 200, 3))
    train = [("when it was , " + x) if i in rows else x for i, x in enumerate(data.train.inputs)]
    y = torch.tensor([1 if i in rows else int(v) for i, v in enumerate(data.train.labels)])
    neg = ["when it was , " + x for x, v in zip(data.test.inputs, data.test.labels) if v == 0]
    return RawDataset("sst2-hidden-killer", "text", data.classes, Split(train, y),
                      Split(neg, torch.ones(len(neg), dtype=torch.long)))


TINY_INPUT_AWARE = dict(gen_channels=(4,), classifier_width=4, mask_steps=1, gen_steps=1, batch_size=8,
                        gen_n_images=40, use_cache=False)

#: attack -> (data, extra datasets, params, rule).  rule "train": eps = n_adv / |D_tr| with eps the
#: configured ``epsilon``; "added": ``n_adv`` (or ``adv_fraction * |D_cl|``) added to the clean set.
CASES = {
    "badnets": (cifar, {}, {"epsilon": 0.1}, "train"),
    "weber-backdoor": (cifar, {}, {"n_adv": None, "epsilon": 0.1}, "train"),
    "spectral-pixel": (cifar, {}, {"epsilon": 0.05}, "train"),
    "spectral-pixel/n_train": (cifar, {}, {"epsilon": 0.07, "n_train": 150}, "train"),
    "composite": (cifar, {}, {"epsilon": 0.02, "benign_ratio": 2.0}, "train"),
    "input-aware": (lambda: cifar(n_per=8, size=8), {}, {"epsilon": 0.1, **TINY_INPUT_AWARE}, "train"),
    "semantic": (cifar, {}, {"epsilon": 0.03}, "train"),
    "semantic/n_train": (cifar, {}, {"epsilon": 0.05, "n_train": 100}, "train"),
    "speech-noise-burst": (fsdd, {}, {"epsilon": 0.05}, "train"),
    "cifar-mnist-joint": (cifar, {"mnist": mnist_test_only}, {"n_adv": 10}, "added"),
    "inverted-digit": (digits, {}, {"adv_fraction": 0.05, "n_targets": 5}, "added"),
    "clean-pair": (cifar, {}, {"classes": (0, 2), "n_train": 30}, "none"),
    "text-insert": (text, {}, {"epsilon": 0.1}, "train"),
    "text-insert/n_train": (text, {}, {"epsilon": 0.05, "n_train": 120, "n_triggers": 2}, "train"),
    "text-duplicate": (text, {}, {"epsilon": 0.1}, "train"),
    "text-delete": (text, {}, {"epsilon": 0.2}, "train"),
    "text-semantic": (text, {}, {"epsilon": 0.1}, "train"),
    "text-syntactic": (lambda: text("sst2-syntactic"), {"sst2-hidden-killer": hidden_killer}, {"epsilon": 0.1}, "train"),
}


def test_every_in_tree_attack_has_a_poison_rate_case():
    in_tree = {e.name for e in registry.entries() if e.obj.__module__.startswith("attacks.")}
    assert in_tree == {name.split("/")[0] for name in CASES}, "add a case for every attack"
    for name in in_tree:
        assert registry.get(name).epsilon_definition, name


@pytest.mark.parametrize("case", sorted(CASES))
def test_crafted_poison_rate_matches_the_definition(case):
    make, extra, params, rule = CASES[case]
    if case == "text-semantic" and not Path("/usr/share/wordnet/data.noun").is_file():
        pytest.skip("WordNet 3.0 is absent: apt-get install wordnet-base (.ci/run installs it)")
    data = make()
    attack = registry.get(case.split("/")[0])(**params)
    context = RunContext(cache_dir=None, device="cpu", extra={k: f() for k, f in extra.items()})
    d = attack.craft(data, np.random.default_rng(0), context)
    n_train = len(d.train)
    n_aux = int((d.info["kind"] == AUX).sum()) if "kind" in d.info else 0
    if rule == "train":
        eps = params["epsilon"]
        assert d.n_adv == count_poisons(eps, None, n_train)  # round(eps * |D_tr|)
        assert abs(d.n_adv / n_train - eps) <= 0.5 / n_train
        assert "n_train" not in params or n_train == params["n_train"]
    elif rule == "none":  # no attack: D_adv and the targets are empty
        assert d.n_adv == 0 and len(d.targets) == 0 and n_train == params["n_train"]
    else:  # paper 000 Sec. 4.1: a count added to the clean set
        n_clean = n_train - d.n_adv
        want = params["n_adv"] if "n_adv" in params else round(params["adv_fraction"] * n_clean)
        assert d.n_adv == want and n_train == n_clean + want
    # the data-free count the poison_rates tool uses is exactly what craft produced
    sizes = torch.bincount(data.train.labels, minlength=data.num_classes).tolist()
    counts = attack.poison_counts(sizes)
    assert (counts.n_train, counts.n_adv, counts.n_aux) == (n_train, d.n_adv, n_aux)
    assert counts.epsilon == pytest.approx(d.n_adv / n_train)
