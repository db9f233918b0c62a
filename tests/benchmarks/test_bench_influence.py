"""Speed and memory of the influence engine on the pinned workload.

Run:  python -m pytest tests/benchmarks/test_bench_influence.py --benchmark-only -s
(the project's pytest config skips benchmarks otherwise: ``addopts = --benchmark-skip``).

Pinned workload (issue 3): ResNet9 of width 16 (BatchNorm in eval mode) on 2,000 CIFAR-10
training images of two classes (airplane, bird: 1,000 each, the first files of each class
folder), batch 128, 10 checkpoints, ``torch.set_num_threads(2)``.  The checkpoints are real:
one epoch of the benchmark trainer (Adam, one-cycle, 10 checkpoints in the epoch) on the same
images.  Queries are CIFAR-10 test images of the same classes, labelled by the final model.

Every check is a ratio measured in one run, so it holds on any machine:

* GAS, all training examples x 1 query   <= 1.5 x the physical floor,
* GAS, all training examples x 100 queries <= 3 x the floor,
  where the floor is one batched forward + backward pass (summed loss, parameter gradients)
  over the same examples at the same checkpoints, in eval mode;
* TracInCP >= 20x faster than captum's TracInCP in its default mode (per-example loop), and no
  slower than captum's ``sample_wise_grads_per_batch=True`` mode, on the same work;
* peak memory (RSS of a fresh process) for 10,000 training examples <= 4 GB.

Timing protocol: each check runs in a fresh process (``OMP_WAIT_POLICY=PASSIVE``: on a shared
machine a descheduled OpenMP thread must not leave its partner spinning; both contestants run
under the same setting).  The two contestants alternate checkpoint by checkpoint (a slow phase
of a shared machine hits both), after one warm-up call each; the ratio is the sum over the 10
checkpoints.  Wall-clock and process CPU time are both recorded (``extra_info`` and stdout);
the assertion uses CPU time (the "cost").

Reduced work where a contestant is very slow (documented deviation): captum's default mode
loops over examples one at a time (~60-70x the floor), so that comparison uses the first 256
training examples and the first 2 checkpoints of the same workload for both contestants.
captum's sample-wise mode supports only Conv2d and Linear layers (it silently leaves BatchNorm
parameters out), so that comparison restricts *both* sides to the conv and linear parameters,
and checks that the two score matrices agree.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _child import in_child

import numpy as np
import pytest
import torch
from torch import nn

from benchmark.data.types import resolve_data_root
from benchmark.models.resnet9 import resnet9
from benchmark.training.losses import per_example_loss, predict
from benchmark.training.trainer import TrainConfig, train
from defenses.influence.engine import WeightedCheckpoint, score_matrix

REPO = Path(__file__).resolve().parents[2]
DATA = resolve_data_root(os.environ.get("BENCHMARK_DATA_ROOT") or (REPO.parent / "shared" / "datasets"))
CIFAR = DATA / "cifar10"
CLASSES = ("airplane", "bird")  # paper 000 Fig. 3's CIFAR-10 pair (ours: any two classes would do)
N_TRAIN, N_TRAIN_MEMORY, BATCH, N_CKPT, WIDTH = 2000, 10_000, 128, 10, 16  # issue 3
ROUNDS = 1  # ours: each checkpoint once per contestant, alternating (10 alternations)

pytestmark = pytest.mark.skipif(not (CIFAR / "train" / CLASSES[0]).is_dir(),
                                reason=f"CIFAR-10 ImageFolder not found under {CIFAR}")


def load_images(split: str, per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``per_class`` JPEGs (sorted names) of each class, float32 N x 3 x 32 x 32 in [0, 1];
    label = index in :data:`CLASSES`."""
    from PIL import Image

    xs, ys = [], []
    for label, cls in enumerate(CLASSES):
        files = sorted((CIFAR / split / cls).glob("*.jpg"))[:per_class]
        if len(files) < per_class:
            raise RuntimeError(f"{CIFAR / split / cls} holds {len(files)} images, need {per_class}")
        for f in files:
            with Image.open(f) as im:
                xs.append(np.asarray(im.convert("RGB"), dtype=np.uint8))
            ys.append(label)
    x = torch.from_numpy(np.stack(xs)).permute(0, 3, 1, 2).float() / 255.0
    return x.contiguous(), torch.tensor(ys)


def factory() -> nn.Module:
    return resnet9((3, 32, 32), 1, width=WIDTH)


def make_workload(n_train: int, n_ckpt: int = N_CKPT, n_queries: int = 100):
    torch.set_num_threads(2)
    x, y = load_images("train", n_train // 2)
    torch.manual_seed(0)
    init = factory().state_dict()
    model = factory()
    model.load_state_dict(init)
    cfg = TrainConfig(epochs=1, batch_size=BATCH, lr=1e-3, checkpoints_per_epoch=n_ckpt)
    run = train(model, x, y, cfg, torch.Generator().manual_seed(0))
    cks = [WeightedCheckpoint(c.params, c.lr / c.batch_size) for c in run.checkpoints]
    qx, _ = load_images("test", n_queries // 2)
    final = factory()
    final.load_state_dict(run.final)
    with torch.no_grad():
        qy = predict(final.eval()(qx))
    return {"x": x, "y": y, "cks": cks, "qx": qx, "qy": qy}


def floor_pass(ck: WeightedCheckpoint, x: torch.Tensor, y: torch.Tensor) -> None:
    """The physical floor: one batched forward + backward (parameter gradients of the summed
    loss) over the examples at one checkpoint, eval mode."""
    model = factory()
    model.load_state_dict(ck.params)
    model.eval()
    for i in range(0, len(y), BATCH):
        model.zero_grad(set_to_none=True)
        per_example_loss(model(x[i : i + BATCH]), y[i : i + BATCH]).sum().backward()


def timed(fn) -> tuple[float, float]:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - w, time.process_time() - c


def alternate(contestants: dict, checkpoints: list, rounds: int = ROUNDS) -> dict[str, tuple[float, float]]:
    """Best (wall, cpu) per checkpoint per contestant, alternating; summed over checkpoints."""
    best = {k: [[float("inf"), float("inf")] for _ in checkpoints] for k in contestants}
    for _ in range(rounds):
        for i, ck in enumerate(checkpoints):
            for k, fn in contestants.items():
                w, c = timed(lambda: fn(ck))
                best[k][i][0] = min(best[k][i][0], w)
                best[k][i][1] = min(best[k][i][1], c)
    return {k: (sum(b[0] for b in v), sum(b[1] for b in v)) for k, v in best.items()}


def _report(benchmark, name: str, times: dict, num: str, den: str) -> tuple[float, float]:
    wall = times[num][0] / times[den][0]
    cpu = times[num][1] / times[den][1]
    benchmark.extra_info.update({f"{k}_wall_s": v[0] for k, v in times.items()})
    benchmark.extra_info.update({f"{k}_cpu_s": v[1] for k, v in times.items()})
    benchmark.extra_info.update({f"{name}_ratio_cpu": cpu, f"{name}_ratio_wall": wall})
    print(f"\n{name}: " + ", ".join(f"{k} {v[0]:.2f} s wall / {v[1]:.2f} s cpu" for k, v in times.items())
          + f"  ->  ratio {num}/{den}: cpu {cpu:.2f}, wall {wall:.2f}")
    return cpu, wall


def _in_child(benchmark, fn: str, *args) -> dict:
    """``fn(*args)`` of this module in a fresh process (:func:`_child.in_child`)."""
    return in_child(benchmark, "test_bench_influence", fn, *args)


# -- children (each returns {contestant: (wall_s, cpu_s)} plus checks) ----------------------
def gas_vs_floor(n_queries: int) -> dict:
    w = make_workload(N_TRAIN)
    qx, qy = w["qx"][:n_queries], w["qy"][:n_queries]

    def gas(ck):
        return score_matrix(factory, [ck], w["x"], w["y"], qx, qy, reduction="cosine")

    floor_pass(w["cks"][0], w["x"][:256], w["y"][:256])  # warm-up (kernel selection, allocator)
    score_matrix(factory, w["cks"][:1], w["x"][:256], w["y"][:256], qx, qy, reduction="cosine")
    return alternate({"floor": lambda ck: floor_pass(ck, w["x"], w["y"]), "gas": gas}, w["cks"])


def captum_default() -> dict:
    w = make_workload(N_TRAIN)
    x, y, cks = w["x"][:256], w["y"][:256], w["cks"][:2]
    qx, qy = w["qx"][:1], w["qy"][:1]
    theirs_fn = _captum_tracincp(cks, x, y, qx, qy, loss_fn=_Loss("none"))
    ours_fn = lambda: score_matrix(factory, cks, x, y, qx, qy, reduction="dot")  # noqa: E731
    ours_fn()
    t_ours = [timed(ours_fn) for _ in range(3)]
    result = {}
    t_theirs = timed(lambda: result.setdefault("s", theirs_fn()))
    ours = ours_fn()
    err = float((ours - result["s"]).norm() / result["s"].norm())
    return {"captum_default": t_theirs, "ours": (min(t[0] for t in t_ours), min(t[1] for t in t_ours)),
            "rel_err": err}


def captum_sample_wise() -> dict:
    w = make_workload(N_TRAIN)
    layers = [n for n, m in factory().named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    qx, qy = w["qx"][:1], w["qy"][:1]
    results: dict = {}

    def theirs(ck):
        fn = _captum_tracincp([ck], w["x"], w["y"], qx, qy, loss_fn=_Loss("sum"), layers=layers,
                              sample_wise_grads_per_batch=True)
        results.setdefault("theirs", []).append(fn())

    def ours(ck):
        results.setdefault("ours", []).append(
            score_matrix(factory, [ck], w["x"], w["y"], qx, qy, reduction="dot", layers=layers))

    ours(w["cks"][0])
    results.clear()
    times = alternate({"captum_sample_wise": theirs, "ours": ours}, w["cks"], rounds=1)
    a, b = sum(results["ours"]), sum(results["theirs"])
    return {**times, "rel_err": float((a - b).norm() / b.norm())}


# -- tests -----------------------------------------------------------------------------------
def test_bench_gas_one_query(benchmark):
    t = _in_child(benchmark, "gas_vs_floor", 1)
    cpu, _ = _report(benchmark, "gas_1q", t, "gas", "floor")
    assert cpu <= 1.5


def test_bench_gas_hundred_queries(benchmark):
    t = _in_child(benchmark, "gas_vs_floor", 100)
    cpu, _ = _report(benchmark, "gas_100q", t, "gas", "floor")
    assert cpu <= 3.0


class _Loss(nn.Module):
    """The benchmark loss with the ``reduction`` attribute captum inspects."""

    def __init__(self, reduction: str) -> None:
        super().__init__()
        self.reduction = reduction

    def forward(self, logits, labels):
        loss = per_example_loss(logits, labels)
        return loss if self.reduction == "none" else loss.sum()


def _captum_tracincp(cks, x, y, qx, qy, **kwargs):
    import captum.influence as ci

    tmp = tempfile.mkdtemp()
    paths, lrs = [], {}
    for i, ck in enumerate(cks):
        p = os.path.join(tmp, f"ckpt{i}.pt")
        torch.save(ck.params, p)
        paths.append(p)
        lrs[p] = ck.weight

    def load(model, path):
        model.load_state_dict(torch.load(path, weights_only=True))
        model.eval()
        return lrs[path]  # captum multiplies each checkpoint's dot products by this

    model = factory().eval()
    ds = torch.utils.data.TensorDataset(x, y)
    tracin = ci.TracInCP(model, ds, paths, checkpoints_load_func=load, batch_size=BATCH, **kwargs)
    return lambda: tracin.influence((qx, qy)).T.double()


def test_bench_vs_captum_default(benchmark):
    pytest.importorskip("captum.influence")
    t = _in_child(benchmark, "captum_default")
    assert t.pop("rel_err") <= 1e-4  # same work, same numbers
    cpu, _ = _report(benchmark, "captum_default_over_ours", t, "captum_default", "ours")
    assert cpu >= 20.0


def test_bench_vs_captum_sample_wise(benchmark):
    pytest.importorskip("captum.influence")
    t = _in_child(benchmark, "captum_sample_wise")
    assert t.pop("rel_err") <= 1e-4  # same work, same numbers
    cpu, _ = _report(benchmark, "ours_over_captum_sample_wise", t, "ours", "captum_sample_wise")
    assert cpu <= 1.0


_MEMORY_SCRIPT = """
import json, resource, sys, torch
sys.path[:0] = [{repo!r}, {repo!r} + "/tests/benchmarks"]
from test_bench_influence import make_workload, factory
from defenses.influence.engine import score_matrix
w = make_workload({n}, n_ckpt={c}, n_queries=100)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s = score_matrix(factory, w["cks"], w["x"], w["y"], w["qx"], w["qy"], reduction="cosine")
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"peak_kb": peak, "before_kb": before, "shape": list(s.shape)}}))
"""


def test_bench_peak_memory_10k(benchmark):
    """Peak RSS of a fresh process scoring 10,000 training examples x 100 queries (GAS).  One
    checkpoint is loaded at a time, so the peak does not grow with their number: 2 are used."""
    script = _MEMORY_SCRIPT.format(repo=str(REPO), n=N_TRAIN_MEMORY, c=2)
    out = {}

    def run():
        res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=REPO,
                             env={**os.environ, "PYTHONPATH": str(REPO), "OMP_WAIT_POLICY": "PASSIVE"})
        if res.returncode != 0:
            raise RuntimeError(f"benchmark child failed:\n{res.stderr[-4000:]}")
        out["stdout"] = res.stdout

    benchmark.pedantic(run, rounds=1, iterations=1)
    info = json.loads(out["stdout"].strip().splitlines()[-1])
    peak_gb = info["peak_kb"] / 2**20
    benchmark.extra_info.update(peak_rss_gb=peak_gb, rss_before_scoring_gb=info["before_kb"] / 2**20)
    print(f"\npeak RSS for {N_TRAIN_MEMORY} training examples x 100 queries: {peak_gb:.2f} GB "
          f"(before scoring: {info['before_kb'] / 2**20:.2f} GB)")
    assert info["shape"] == [N_TRAIN_MEMORY, 100]
    assert peak_gb <= 4.0
