"""One trial's data flow: load raw data -> attack -> featurize -> train (cached) -> attack facts.

Everything random is derived from the trial seed and a component name, so a trial is
reproducible from its config alone.  The trained trajectory is cached under
``<cache_dir>/training/<key>.pt`` (loaded back with ``weights_only=True``), so a run killed
after training does not train again.  The key hashes everything the trajectory was computed
from: the trial config (with its seed), the content of the featurized attacked training set (so
another data root, route or attack output never reuses a model trained on other data) and
:data:`TRAINING_CACHE_VERSION`.  An unreadable cache file is reported and rebuilt.

Attack success has one definition everywhere (:meth:`PreparedTrial.attack_success`): a target
is *eligible* when the attacked model classifies its clean (untriggered) version correctly (the
threat model of paper 000 Sec. 2: the attack flips a correctly classified input; for attacks
without a trigger every target is eligible), and it is a *success* when the model predicts its
adversarial label on the triggered input.  ASR = successes / eligible targets.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from benchmark.api import AttackedData, RunContext
from benchmark.config import build, stable_hash
from benchmark.data.types import RawDataset, Split, content_hash_update
from benchmark.experiment import TrialConfig
from benchmark.metrics import accuracy
from benchmark.models import build_model
from benchmark.registry import attacks, datasets, featurizers
from benchmark.rng import derive_seed, numpy_rng, torch_rng
from benchmark.training import TrainConfig, TrainingRun, num_outputs, predict, predict_logits, train
from benchmark.training.pretrain import PretrainConfig, held_out_index, load_backbone

log = logging.getLogger(__name__)

#: Part of every training-cache key: bump it when the trainer would produce a different
#: trajectory from the same config and data (a code change that matters).
TRAINING_CACHE_VERSION = 3  # 3: keyed by the training hash (protocol excluded)


@dataclass
class Featurized:
    inputs: torch.Tensor
    labels: torch.Tensor


@dataclass
class PreparedTrial:
    tc: TrialConfig
    attacked: AttackedData
    train: Featurized
    test: Featurized
    targets: Featurized  # labels = true labels y_targ
    targets_clean: Featurized | None
    non_targets: Featurized
    model_factory: Callable[[], nn.Module]
    run: TrainingRun
    data_source: dict[str, Any]
    trial_metrics: dict[str, float] = field(default_factory=dict)
    successful_targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    eligible_targets: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    training_cache: dict[str, Any] = field(default_factory=dict)  # key, path, status
    memo: dict = field(default_factory=dict)  # per-trial results methods may share (see FIT)

    @property
    def run_wall_time_s(self) -> float:
        return self.run.wall_time_s

    @property
    def is_adv(self) -> np.ndarray:
        return self.attacked.is_adv.numpy()

    def final_model(self) -> nn.Module:
        model = self.model_factory()
        model.load_state_dict(self.run.final)
        return model.eval()

    def predict(self, inputs: torch.Tensor, params: dict | None = None) -> torch.Tensor:
        model = self.model_factory()
        model.load_state_dict(params if params is not None else self.run.final)
        return predict(predict_logits(model, inputs))

    def attack_success(self, params: dict | None = None) -> tuple[int, int]:
        """``(successes, eligible targets)`` of the model with ``params`` (default: the trained
        model): eligible = the trained (attacked) model classifies the clean version correctly;
        success = an eligible target predicted as its adversarial label (module docstring)."""
        pred = self.predict(self.targets.inputs, params).numpy()
        hits = int(((pred == self.attacked.y_adv.numpy()) & self.eligible_targets).sum())
        return hits, int(self.eligible_targets.sum())


@lru_cache(maxsize=2)  # a decoded CIFAR-10 is ~740 MB of float32
def _load_dataset_cached(name: str, params_key: str, data_root: str, cache_dir: str,
                         download: bool) -> RawDataset:
    import json

    loader = datasets.get(name)
    return loader(data_root=Path(data_root), cache_dir=Path(cache_dir), download=download,
                  **json.loads(params_key))


def load_dataset(name: str, params: dict, data_root: Path, cache_dir: Path, download: bool) -> RawDataset:
    import json

    return _load_dataset_cached(name, json.dumps(params, sort_keys=True), str(data_root),
                                str(cache_dir), download)


def dataset_fingerprint(spec: dict, data_root: Path, cache_dir: Path, download: bool) -> str:
    """Content fingerprint of an experiment's dataset (see :meth:`RawDataset.fingerprint`)."""
    return load_dataset(spec["name"], spec.get("params", {}), data_root, cache_dir, download).fingerprint()


def featurize(spec: dict | None, split: Split, sample_rate: int | None) -> Featurized:
    if spec is None:
        if not isinstance(split.inputs, torch.Tensor):
            raise ValueError("non-tensor raw inputs need a featurizer in the experiment config")
        return Featurized(split.inputs.float(), split.labels)
    feat = featurizers.get(spec["name"])(**spec.get("params", {}))
    if len(split) == 0:
        return Featurized(torch.empty(0), split.labels)
    return Featurized(feat(split.inputs, sample_rate=sample_rate), split.labels)


def make_model_factory(spec: dict, input_shape: tuple[int, ...], n_out: int) -> Callable[[], nn.Module]:
    name, params = spec["name"], spec.get("params", {})
    built = build_model(name, input_shape, n_out, params)  # validate parameters once, eagerly

    def factory() -> nn.Module:
        return build_model(name, input_shape, n_out, params)

    # a pretrained model's file content (hf-text): part of the training cache key
    factory.pretrained_fingerprint = getattr(built, "pretrained_fingerprint", None)  # type: ignore[attr-defined]
    return factory


@contextlib.contextmanager
def seeded(seed: int):
    """Seed torch's global generator (model initialisation) without leaking the state."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def prepare_trial(tc: TrialConfig, data_root: Path, cache_dir: Path, download: bool = False,
                  progress: Callable[[int, int], None] | None = None, device: str = "cpu",
                  probe_steps: int | None = None) -> PreparedTrial:
    """Load, attack, featurize and train (or load the cached training) for one trial config.

    ``probe_steps`` (``run --dry-run --probe``): a probe of the config, not a trial -- the
    training set is cut to ``probe_steps`` batches (D_adv first, up to half of it), training is one
    epoch of them with one checkpoint and no dropped last batch (a retraining on fewer examples
    than a batch still runs), nothing is cached; data loading, the attack and the model are the config's own."""
    cfg = tc.values
    ds_spec, atk_spec = cfg["dataset"], cfg["attack"]
    raw = load_dataset(ds_spec["name"], ds_spec.get("params", {}), data_root, cache_dir, download)

    attack_cls = attacks.get(atk_spec["name"])
    attack = attack_cls(**atk_spec.get("params", {}))
    attack.check_dataset(raw)
    extra = {n: load_dataset(n, {}, data_root, cache_dir, download) for n in attack_cls.extra_datasets}
    context = RunContext(cache_dir=Path(cache_dir), device=device, extra=extra)
    attacked = attack.craft(raw, numpy_rng(tc.seed, "attack"), context)

    fspec = cfg.get("featurizer")
    sr = attacked.sample_rate
    train_f = featurize(fspec, attacked.train, sr)
    test_f = featurize(fspec, attacked.test, sr)
    targets_f = featurize(fspec, attacked.targets, sr)
    targets_clean_f = featurize(fspec, attacked.targets_clean, sr) if attacked.targets_clean is not None else None
    non_targets_f = featurize(fspec, attacked.non_targets, sr)

    n_out = num_outputs(attacked.num_classes)
    input_shape = tuple(train_f.inputs.shape[1:])
    factory = make_model_factory(cfg["model"], input_shape, n_out)
    train_cfg = build(TrainConfig, cfg["train"], what="train")

    if probe_steps is not None:
        attacked, train_f = _probe_subset(attacked, train_f, probe_steps * train_cfg.batch_size)
        # a protocol may retrain on fewer examples than a batch (remove-and-retrain removes 1.5 x
        # the probe's D_adv): the probe keeps a last partial batch instead of dropping it
        train_cfg = dataclasses.replace(train_cfg, epochs=1, checkpoints_per_epoch=1, drop_last=False)
    key = training_cache_key(tc, train_f, getattr(factory, "pretrained_fingerprint", None))
    cache_path = Path(cache_dir) / "training" / f"{key}.pt"
    run, status = (_load_training(cache_path), "hit") if probe_steps is None else (None, "probe")
    if run is None:
        status = "rebuilt" if cache_path.exists() else "miss"
        with seeded(derive_seed(tc.seed, "init")):
            model = factory()
        if cfg.get("pretrain"):
            load_backbone(model, pretrained_backbone(tc, raw, attacked, input_shape, train_cfg, cache_dir,
                                                     probe_steps))
        run = train(model, train_f.inputs, train_f.labels, train_cfg,
                    generator=torch_rng(tc.seed, "batches"), progress=progress)
        if probe_steps is None:
            run.save(cache_path)

    prepared = PreparedTrial(
        tc=tc, attacked=attacked, train=train_f, test=test_f, targets=targets_f,
        targets_clean=targets_clean_f, non_targets=non_targets_f, model_factory=factory, run=run,
        data_source={"dataset": ds_spec["name"], **raw.source, "data_fingerprint": raw.fingerprint(),
                     "attacked_data_hash": _attacked_hash(attacked),
                     **_pretrained_source(cfg["model"], factory)},
        training_cache={"key": key, "status": status},
    )
    _attack_facts(prepared)
    return prepared


def pretrained_backbone(tc: TrialConfig, raw: RawDataset, attacked: AttackedData, input_shape: tuple[int, ...],
                        train_cfg: TrainConfig, cache_dir: Path, probe_steps: int | None = None) -> dict:
    """The final parameters of the network pre-trained on the trial config's ``pretrain`` classes
    (:mod:`benchmark.training.pretrain`), cached under ``<cache_dir>/pretrain/<key>.pt`` by
    everything it was computed from (the pretrain section, model, featurizer, dataset content,
    trainer settings, seed and :data:`TRAINING_CACHE_VERSION`)."""
    cfg = tc.values
    pcfg = build(PretrainConfig, cfg["pretrain"], what="pretrain")
    overlap = sorted({raw.classes[c] for c in pcfg.classes if 0 <= c < len(raw.classes)} & set(attacked.classes))
    if overlap:
        raise ValueError(f"pretrain.classes include the task's classes {overlap}: pre-train on held-out "
                         f"classes only (paper 000 Sec. 4.5)")
    bad = [c for c in pcfg.classes if not 0 <= c < raw.num_classes]
    if bad:
        raise ValueError(f"pretrain.classes {bad} are not labels of dataset {raw.name!r} ({raw.num_classes} classes)")
    pre_train_cfg = build(TrainConfig, {**dataclasses.asdict(train_cfg), **pcfg.train}, what="pretrain.train")
    key = stable_hash({"pretrain": cfg["pretrain"], "model": cfg["model"], "featurizer": cfg.get("featurizer"),
                       "dataset": cfg["dataset"], "data": raw.fingerprint(), "train": dataclasses.asdict(pre_train_cfg),
                       "seed": tc.seed, "version": TRAINING_CACHE_VERSION})
    path = Path(cache_dir) / "pretrain" / f"{key}.pt"
    if probe_steps is None and path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception as exc:  # noqa: BLE001 -- an unreadable cache file is rebuilt
            log.warning("pretrain cache %s unreadable (%s); pre-training again", path, exc)
    idx, labels = held_out_index(raw.train.labels, pcfg, torch_rng(tc.seed, "pretrain-data"))
    if probe_steps is not None:
        idx, labels = idx[: probe_steps * pre_train_cfg.batch_size], labels[: probe_steps * pre_train_cfg.batch_size]
        pre_train_cfg = dataclasses.replace(pre_train_cfg, epochs=1, checkpoints_per_epoch=1)
    feats = featurize(cfg.get("featurizer"), raw.train.subset(idx), raw.sample_rate)
    factory = make_model_factory(cfg["model"], input_shape, num_outputs(len(pcfg.classes)))
    with seeded(derive_seed(tc.seed, "pretrain-init")):
        model = factory()
    run = train(model, feats.inputs, labels, pre_train_cfg, generator=torch_rng(tc.seed, "pretrain-batches"))
    if probe_steps is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        torch.save(run.final, tmp)
        tmp.replace(path)
    return run.final


def _probe_subset(attacked: AttackedData, train_f: Featurized, n: int) -> tuple[AttackedData, Featurized]:
    """The first ``n`` training examples with D_adv first (up to half of them), in original order."""
    is_adv = attacked.is_adv.numpy()
    adv, clean = np.flatnonzero(is_adv), np.flatnonzero(~is_adv)
    n = min(n, len(is_adv))
    k = min(len(adv), n // 2)
    idx = np.sort(np.r_[adv[:k], clean[: n - k]])
    t = torch.as_tensor(idx)
    return (dataclasses.replace(attacked, train=attacked.train.subset(t), is_adv=attacked.is_adv[t]),
            Featurized(train_f.inputs[t], train_f.labels[t]))


def training_cache_key(tc: TrialConfig, train_f: Featurized, pretrained_fingerprint: str | None = None) -> str:
    """What a trained trajectory was computed from: the trial config without its protocol
    (:attr:`TrialConfig.training_hash`) and seed, the featurized training set's content, and the
    trainer's cache version, and a pretrained model's file content (so another model directory
    under the same name is trained anew).  Protocols of one seed group thus share one training per trial."""
    h = hashlib.sha256()
    content_hash_update(h, train_f.inputs)
    content_hash_update(h, train_f.labels)
    key = {"trial": tc.training_hash, "train_data": h.hexdigest(), "version": TRAINING_CACHE_VERSION}
    if pretrained_fingerprint is not None:  # absent for models trained from scratch: old keys stay valid
        key["pretrained"] = pretrained_fingerprint
    return stable_hash(key)


def _load_training(path: Path) -> TrainingRun | None:
    """The cached trajectory, or ``None`` when absent or unreadable (then it is rebuilt)."""
    if not path.is_file():
        return None
    try:
        return TrainingRun.load(path)
    except Exception as exc:  # a torn or foreign file: say which, then rebuild it
        log.warning("training cache file %s is unreadable (%s: %s); retraining and replacing it",
                    path, type(exc).__name__, exc)
        return None


def _pretrained_source(model_spec: dict, factory: Callable[[], nn.Module]) -> dict[str, Any]:
    """A pretrained model's name, where it was loaded from and its files' fingerprint (records)."""
    fp = getattr(factory, "pretrained_fingerprint", None)
    if fp is None:
        return {}
    from benchmark.data import pretrained

    name = model_spec.get("params", {}).get("pretrained", pretrained.OFFLINE_DEFAULT)
    return {"pretrained_model": {"name": name, "fingerprint": fp,
                                 "local_path": pretrained.model_paths().get(name)}}


def _attacked_hash(a: AttackedData) -> str:
    """Fingerprint of the attacked training set (ids of D_adv and label counts)."""
    return stable_hash({"is_adv": a.is_adv.nonzero().ravel().tolist(),
                        "labels": torch.bincount(a.train.labels).tolist(), "n": len(a.train)})


def _attack_facts(p: PreparedTrial) -> None:
    """Clean accuracy, attack success (one definition, module docstring) and which targets
    succeeded (Sec. 2: only successful attacks are analysed)."""
    pred_test = p.predict(p.test.inputs).numpy()
    y_adv = p.attacked.y_adv.numpy()
    # an attack without targets (``clean-pair``) has no attack success to measure
    pred_targets = p.predict(p.targets.inputs).numpy() if len(y_adv) else np.zeros(0, dtype=np.int64)
    if p.targets_clean is not None:
        eligible = p.predict(p.targets_clean.inputs).numpy() == p.targets_clean.labels.numpy()
    else:
        eligible = np.ones(len(y_adv), dtype=bool)
    p.eligible_targets = eligible
    p.successful_targets = np.flatnonzero(eligible & (pred_targets == y_adv))
    n_eligible = int(eligible.sum())
    p.trial_metrics = {
        "clean_accuracy": accuracy(pred_test, p.test.labels.numpy()),
        "asr_no_defense": len(p.successful_targets) / n_eligible if n_eligible else float("nan"),
        "n_train": float(len(p.train.labels)),
        "n_adv": float(p.attacked.n_adv),
        "n_targets": float(len(y_adv)),
        "n_eligible_targets": float(n_eligible),
    }
