"""Per-example gradients of one checkpoint's model, one batched pass: forward hooks on the
modules with a rule, one ``torch.autograd.grad`` to their outputs, then the rules; parameters
without a rule go through ``torch.func.vmap(grad(...))``."""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from .algebra import cat_positions
from .features import Dense, Feature
from .rules import RuleFn, rule_for


class BoundGradientMap:
    """:class:`~.maps.GradientMap` bound to a model: ``(x, y) -> {parameter name: feature}``."""

    def __init__(self, model: nn.Module, names: list[str], fn: Callable, param_l2: float,
                 use_func: bool) -> None:
        self.model = model.eval()
        self.names = names
        self.fn = fn
        params = dict(model.named_parameters())
        self.shapes = {n: params[n].shape for n in names}
        wanted = set(names)
        # Every parameter is frozen: the graph starts at the hooked modules' outputs, so the
        # backward pass computes output gradients only, never the batch's weight gradients
        # (autograd.grad w.r.t. intermediate outputs does not prune them).  The torch.func
        # fallback passes its parameters explicitly and is unaffected.
        if getattr(model, "_influence_trainable", None) is None:
            model._influence_trainable = [n for n, p in model.named_parameters() if p.requires_grad]
        for p in model.parameters():
            p.requires_grad_(False)
        self.shift = ({n: (2 * param_l2) * params[n].detach().reshape(-1) for n in names}
                      if param_l2 else None)
        # assign rules; a parameter claimed twice (tied weights) goes to the fallback
        owner: dict[int, list[tuple[str, str, str]]] = {}
        id_to_name = {id(p): n for n, p in model.named_parameters()}
        self.hooked: dict[str, tuple[nn.Module, RuleFn, dict[str, str]]] = {}
        if not use_func:
            for mname, mod in model.named_modules():
                rule = rule_for(mod)
                local = dict(mod.named_parameters(recurse=False))
                if rule is None or not local or set(local) - {"weight", "bias"}:
                    continue
                for lname, p in local.items():
                    owner.setdefault(id(p), []).append((mname, lname, id_to_name.get(id(p), "")))
        claimed: set[str] = set()
        for pid, owners in owner.items():
            if len(owners) != 1:
                continue
            mname, lname, full = owners[0]
            if full not in wanted:
                continue
            mod = model.get_submodule(mname)
            if mname not in self.hooked:
                self.hooked[mname] = (mod, rule_for(mod), {})
            self.hooked[mname][2][lname] = full
            claimed.add(full)
        self.fallback = [n for n in names if n not in claimed]
        self._needs_clone: set[str] | None = None  # learned on the first batch
        self._loop_fallback = False  # True once vmap failed on this model (then a per-example loop)

    # -- hooks path -----------------------------------------------------------------------
    def _hooked_pass(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Feature]:
        records: dict[str, list] = {m: [] for m in self.hooked}
        first = self._needs_clone is None
        clones: dict[str, list[torch.Tensor]] = {m: [] for m in self.hooked}

        def make_hook(mname: str):
            def hook(mod, inputs, out):
                new = None
                if not out.requires_grad:  # the graph starts here
                    out = new = out.detach().requires_grad_(True)
                records[mname].append((inputs[0].detach(), out))
                if first or mname in self._needs_clone:
                    c = out.clone()  # an in-place op downstream must not alter `out`
                    clones[mname].append(c)
                    return c
                return new
            return hook

        handles = [mod.register_forward_hook(make_hook(m)) for m, (mod, _, _) in self.hooked.items()]
        try:
            with torch.enable_grad():
                logits = self.model(x)
                s = self.fn(logits, y)
        finally:
            for h in handles:
                h.remove()
        if not s.requires_grad:
            raise RuntimeError("the per-example scalar does not depend on any hooked module's output")
        if s.shape != (len(y),):
            raise ValueError(f"the output function returned shape {tuple(s.shape)}; it must return "
                             f"one scalar per example, shape ({len(y)},)")
        if first:
            self._needs_clone = {m for m, cs in clones.items() if any(c._version > 0 for c in cs)}
        # parameters used without calling the module, or called on an input shared by the whole
        # batch (e.g. a position embedding of a (1, L) buffer, broadcast over the examples: its
        # output gradient is already summed over them): torch.func handles them per example
        silent = [m for m, recs in records.items()
                  if not recs or any(a.shape[:1] != (len(y),) or o.shape[:1] != (len(y),) for a, o in recs)]
        if silent:
            for m in silent:
                self.fallback += list(self.hooked.pop(m)[2].values())
            self.fallback = [n for n in self.names if n in set(self.fallback)]
        outs = [o for m in self.hooked for (_, o) in records[m]]
        grads = torch.autograd.grad(s.sum(), outs, allow_unused=True) if outs else ()
        feats: dict[str, Feature] = {}
        gi = iter(grads)
        for m, (mod, rule, local) in self.hooked.items():
            per_call: dict[str, list[Feature]] = {}
            for a, o in records[m]:
                d = next(gi)
                d = torch.zeros_like(o) if d is None else d.detach()
                for lname, f in rule(mod, a, d, set(local)).items():
                    per_call.setdefault(lname, []).append(f)
            for lname, fs in per_call.items():
                feats[local[lname]] = cat_positions(fs)
        return feats

    # -- torch.func fallback --------------------------------------------------------------
    def _func_pass(self, x: torch.Tensor, y: torch.Tensor, chunk: int = 64) -> dict[str, Feature]:
        params = {n: p.detach() for n, p in self.model.named_parameters()}
        buffers = dict(self.model.named_buffers())
        sub = {n: params[n] for n in self.fallback}
        fn = self.fn

        def one(p_sub, xi, yi):
            out = functional_call(self.model, ({**params, **p_sub}, buffers), (xi.unsqueeze(0),))
            return fn(out, yi.unsqueeze(0)).sum()

        g_fn = vmap(grad(one), in_dims=(None, 0, 0))
        if not self._loop_fallback:
            try:
                parts = [g_fn(sub, x[i : i + chunk], y[i : i + chunk]) for i in range(0, len(y), chunk)]
                return {n: Dense(torch.cat([p[n] for p in parts]).reshape(len(y), -1)) for n in self.fallback}
            except RuntimeError as exc:  # data-dependent control flow (e.g. Hugging Face mask checks)
                if "vmap" not in str(exc):
                    raise
                self._loop_fallback = True
        # one autograd call per example: slower, the same gradients
        rows = []
        for i in range(len(y)):
            p_sub = {n: t.clone().requires_grad_(True) for n, t in sub.items()}
            g = torch.autograd.grad(one(p_sub, x[i], y[i]), list(p_sub.values()), allow_unused=True)
            rows.append([torch.zeros_like(t) if gi is None else gi for gi, t in zip(g, p_sub.values())])
        return {n: Dense(torch.stack([r[k] for r in rows]).reshape(len(y), -1)) for k, n in enumerate(sub)}

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, Feature]:
        feats = self._hooked_pass(x, y) if self.hooked else {}
        if self.fallback:
            feats.update(self._func_pass(x, y))
        return feats
