"""Conv-weight kernels that skip im2col: per-example gradients through the convolution
weight-gradient kernel, and the kernel identity through the Gram of the input pixels."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from .features import ConvFeature


def grouped_weight_grad(f: ConvFeature) -> torch.Tensor:
    """``(B, P)`` per-example weight gradients: the convolution weight-gradient kernel with one
    group per example (and per group of the layer)."""
    a4, ksz, dil, pad, st = f.geometry()
    b, mod = f.batch, f.mod
    w = mod.weight
    wshape = (w.shape[0], w.shape[1], *ksz)
    g4 = f.g if f.g.dim() == 4 else f.g[:, :, None, :]
    weight = w.detach().reshape(wshape)[None].expand(b, *wshape).flatten(0, 1)
    gw = torch.ops.aten.convolution_backward(
        g4.reshape(1, b * g4.shape[1], *g4.shape[2:]), a4.reshape(1, b * a4.shape[1], *a4.shape[2:]),
        weight, None, list(st), list(pad), list(dil), False, [0, 0], b * mod.groups,
        [False, True, False])[1]
    return gw.reshape(b, -1)


def same_pixels(f1: ConvFeature, f2: ConvFeature) -> bool:
    """Whether the two sides' inputs have the same shape (the pixel Gram needs it)."""
    return tuple(f1.geometry()[0].shape[1:]) == tuple(f2.geometry()[0].shape[1:])


def pixel_gram(f1: ConvFeature, f2: ConvFeature | None, chunk_elems: int) -> torch.Tensor:
    """Kernel identity for conv weights via pixel Grams: ``(B1, B2)`` inner products, or with
    ``f2=None`` the ``(B1,)`` squared norms.  ``sum_{t,s} (a_t . a'_s)(g_t . g'_s)`` where the
    patch products ``a_t . a'_s = sum_kk P[p_kk(t), p_kk(s)]`` are read from the Gram ``P`` of
    zero-padded input pixels through strided views (one per kernel offset ``kk``).  The two
    sides must satisfy :func:`same_pixels`."""
    a4, (kh, kw), (dh, dw), (ph, pw), (sh, sw) = f1.geometry()
    b1, cin, h, w = a4.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    ho, wo = (hp - dh * (kh - 1) - 1) // sh + 1, (wp - dw * (kw - 1) - 1) // sw + 1
    k = f1.mod.groups
    c, do, t, big_l = cin // k, f1.mod.out_channels // k, ho * wo, hp * wp
    p1 = F.pad(a4, (pw, pw, ph, ph)).reshape(b1, k, c, big_l)
    g1 = f1.g.reshape(b1, k, do, t)

    def patch_products(pp: torch.Tensor) -> torch.Tensor:
        """``(..., L, L)`` pixel Gram -> ``(..., T, T)`` patch Gram (sum over kernel offsets)."""
        v = pp.reshape(*pp.shape[:-2], hp, wp, hp, wp)
        acc = None
        for i in range(kh):
            for j in range(kw):
                r = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
                q = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
                part = v[..., r, q, r, q]
                acc = part.clone() if acc is None else acc.add_(part)
        return acc.reshape(*pp.shape[:-2], t, t)

    if f2 is None:
        step = max(1, chunk_elems // max(1, big_l * big_l + 2 * t * t))
        out = []
        for s in range(0, b1, step):
            acc = 0
            for gi in range(k):
                pg = p1[s : s + step, gi]
                aa = patch_products(torch.bmm(pg.transpose(1, 2), pg))
                gg = torch.bmm(g1[s : s + step, gi].transpose(1, 2), g1[s : s + step, gi])
                acc = acc + (aa * gg).sum((-1, -2))
            out.append(acc)
        return torch.cat(out).clamp_min(0)
    a42 = f2.geometry()[0]
    b2 = a42.shape[0]
    p2 = F.pad(a42, (pw, pw, ph, ph)).reshape(b2, k, c, big_l)
    g2 = f2.g.reshape(b2, k, do, t)
    step = max(1, chunk_elems // max(1, b2 * (big_l * big_l + 2 * t * t)))
    out = []
    for s in range(0, b1, step):
        cb = min(step, b1 - s)
        acc = 0
        for gi in range(k):
            q2 = p2[:, gi].permute(1, 0, 2).reshape(c, b2 * big_l)
            pp = torch.matmul(p1[s : s + cb, gi].transpose(1, 2), q2)  # (cb, L, B2*L)
            pp = pp.reshape(cb, big_l, b2, big_l).transpose(1, 2)  # (cb, B2, L, L) view
            aa = patch_products(pp)
            h2 = g2[:, gi].permute(1, 0, 2).reshape(do, b2 * t)
            gg = torch.matmul(g1[s : s + cb, gi].transpose(1, 2), h2)  # (cb, T, B2*T)
            gg = gg.reshape(cb, t, b2, t).transpose(1, 2)
            acc = acc + (aa * gg).sum((-1, -2))
        out.append(acc)
    return torch.cat(out)
