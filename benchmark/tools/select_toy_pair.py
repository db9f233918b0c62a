"""Choose the clean digit pair of the ``quick`` toy by paper 000 Sec. 4.1's own criterion.

The paper picked frog vs airplane because, among the 45 CIFAR-10 pairs, a model trained on the
clean pair alone classified the MNIST test 0s closest to random (47.5% vs the ideal 50%).  This
tool does the same on the digits: for every pair of digits other than the adversarial digit,
train the toy's model on the clean pair only (several seeds) and measure how often the inverted
adversarial digits are predicted as the pair's second class.  No defense is run.

    python -m benchmark.tools.select_toy_pair > results/calibration/quick_toy_pair.json
"""
from __future__ import annotations

import itertools
import json
import sys

import numpy as np
import torch

from benchmark.config import build, unwrap
from benchmark.data.digits import load_digits
from benchmark.models import build_model
from benchmark.rng import torch_rng
from benchmark.suites.quick import TOY_CONFIG
from benchmark.training import TrainConfig, predict, predict_logits, train


def main(seeds: int = 5) -> dict:
    torch.set_num_threads(1)
    cfg = unwrap(TOY_CONFIG)
    adv = cfg["attack"]["params"]["adv_digit"]
    data = load_digits()
    inverted = 1.0 - torch.cat([data.train.inputs[data.train.labels == adv],
                                data.test.inputs[data.test.labels == adv]])
    train_cfg = build(TrainConfig, cfg["train"])
    rows = []
    digits = [d for d in range(10) if d != adv]
    for a, b in itertools.combinations(digits, 2):
        keep = (data.train.labels == a) | (data.train.labels == b)
        x, y = data.train.inputs[keep], (data.train.labels[keep] == b).long()
        keep_t = (data.test.labels == a) | (data.test.labels == b)
        xt, yt = data.test.inputs[keep_t], (data.test.labels[keep_t] == b).long()
        rates, accs = [], []
        for s in range(seeds):
            torch.manual_seed(s)
            model = build_model(cfg["model"]["name"], tuple(x.shape[1:]), 1, cfg["model"]["params"])
            run = train(model, x, y, train_cfg, generator=torch_rng("select-toy-pair", a, b, s))
            model.load_state_dict(run.final)
            rates.append(float(predict(predict_logits(model, inverted)).float().mean()))
            accs.append(float((predict(predict_logits(model, xt)) == yt).float().mean()))
        rows.append({"pair": [a, b], "inverted_predicted_as_second": float(np.mean(rates)),
                     "clean_accuracy": float(np.mean(accs))})
    best = min(rows, key=lambda r: abs(r["inverted_predicted_as_second"] - 0.5))
    return {"command": "python -m benchmark.tools.select_toy_pair", "adv_digit": adv, "seeds": seeds,
            "criterion": "paper 000 Sec. 4.1: clean-only model's rate on the adversarial digit closest to 50%",
            "selected": best, "pairs": rows}


if __name__ == "__main__":
    json.dump(main(), sys.stdout, indent=1)
    sys.stdout.write("\n")
