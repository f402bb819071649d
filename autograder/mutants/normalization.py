"""Seeded student bugs for Lab 02 (normalization layers).

Each is a mistake seen in real submissions or one step away from one. The
selfcheck proves that the hidden checks catch every one of them.
"""

import numpy as np
import torch

from autograder.mutants import mutant
from solutions.normalization import (
    BatchNorm2d,
    batchnorm_backward,
    batchnorm_backward_alt,
    batchnorm_forward,
    spatial_groupnorm_backward,
)


@mutant("batchnorm_forward normalizes with the sample variance (ddof=1)",
        replaces="batchnorm_forward")
def batchnorm_forward_sample_var(x, gamma, beta, bn_param, _ref=batchnorm_forward):
    out, cache = _ref(x, gamma, beta, bn_param)
    if bn_param["mode"] == "train":
        eps = bn_param.get("eps", 1e-5)
        x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0, ddof=1) + eps)
        out = gamma * x_hat + beta
    return out, cache


@mutant("batchnorm_forward's momentum is reversed (it weights the old running statistics)",
        replaces="batchnorm_forward")
def batchnorm_forward_momentum_reversed(x, gamma, beta, bn_param, _ref=batchnorm_forward):
    bn_param.setdefault("running_mean", np.zeros(x.shape[1]))
    bn_param.setdefault("running_var", np.ones(x.shape[1]))
    before = bn_param["running_mean"].copy(), bn_param["running_var"].copy()
    out, cache = _ref(x, gamma, beta, bn_param)
    if bn_param["mode"] == "train":
        m = bn_param.get("momentum", 0.1)
        n = x.shape[0]
        bn_param["running_mean"][...] = m * before[0] + (1 - m) * x.mean(axis=0)
        bn_param["running_var"][...] = m * before[1] + (1 - m) * x.var(axis=0) * n / (n - 1)
    return out, cache


@mutant("batchnorm_forward uses the batch statistics in test mode too",
        replaces="batchnorm_forward")
def batchnorm_forward_test_uses_batch(x, gamma, beta, bn_param, _ref=batchnorm_forward):
    eps = bn_param.get("eps", 1e-5)
    if bn_param["mode"] == "test":
        x_hat = (x - x.mean(axis=0)) / np.sqrt(x.var(axis=0) + eps)
        return gamma * x_hat + beta, None
    return _ref(x, gamma, beta, bn_param)


@mutant("batchnorm_forward computes new running statistics but never stores them in bn_param",
        replaces="batchnorm_forward")
def batchnorm_forward_stats_not_stored(x, gamma, beta, bn_param, _ref=batchnorm_forward):
    return _ref(x, gamma, beta, dict(bn_param))


@mutant("batchnorm_forward replaces the running-statistics arrays instead of updating them "
        "in place", replaces="batchnorm_forward")
def batchnorm_forward_stats_replaced(x, gamma, beta, bn_param, _ref=batchnorm_forward):
    for key in ("running_mean", "running_var"):
        if key in bn_param:
            bn_param[key] = bn_param[key].copy()
    return _ref(x, gamma, beta, bn_param)


@mutant("batchnorm_forward's running variance is the biased batch variance",
        replaces="batchnorm_forward")
def batchnorm_forward_biased_running_var(x, gamma, beta, bn_param, _ref=batchnorm_forward):
    bn_param.setdefault("running_var", np.ones(x.shape[1]))
    before = bn_param["running_var"].copy()
    out, cache = _ref(x, gamma, beta, bn_param)
    if bn_param["mode"] == "train":
        m = bn_param.get("momentum", 0.1)
        bn_param["running_var"][...] = (1 - m) * before + m * x.var(axis=0)
    return out, cache


@mutant("batchnorm_forward adds eps outside the square root: (x - mu) / (sqrt(var) + eps)",
        replaces="batchnorm_forward")
def batchnorm_forward_eps_outside(x, gamma, beta, bn_param, _ref=batchnorm_forward):
    out, cache = _ref(x, gamma, beta, bn_param)
    if bn_param["mode"] == "train":
        eps = bn_param.get("eps", 1e-5)
        out = gamma * (x - x.mean(axis=0)) / (np.sqrt(x.var(axis=0)) + eps) + beta
    return out, cache


@mutant("batchnorm_backward sums dgamma over the feature axis instead of the batch axis",
        replaces="batchnorm_backward")
def batchnorm_backward_dgamma_axis(dout, cache, _ref=batchnorm_backward):
    dx, _, dbeta = _ref(dout, cache)
    return dx, (dout * cache["x_hat"]).sum(axis=1), dbeta


@mutant("batchnorm_backward forgets the path through the mean (dmu from dxc only, not via var)",
        replaces="batchnorm_backward")
def batchnorm_backward_no_var_path(dout, cache, _ref=batchnorm_backward):
    dx, dgamma, dbeta = _ref(dout, cache)
    dxc = dout * cache["gamma"] * cache["inv_std"]
    return dxc - dxc.mean(axis=0), dgamma, dbeta


@mutant("batchnorm_backward_alt drops the x_hat * sum(dout * x_hat) term",
        replaces="batchnorm_backward_alt")
def batchnorm_backward_alt_missing_term(dout, cache, _ref=batchnorm_backward_alt):
    _, dgamma, dbeta = _ref(dout, cache)
    n = dout.shape[0]
    dx = (cache["gamma"] * cache["inv_std"] / n) * (n * dout - dbeta)
    return dx, dgamma, dbeta


@mutant("layernorm_forward normalizes over the batch axis (axis=0) like batch norm",
        replaces="layernorm_forward")
def layernorm_forward_batch_axis(x, gamma, beta, ln_param):
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    x_hat = (x - mu) / np.sqrt(var + eps)
    return gamma * x_hat + beta, {"x_hat": x_hat, "inv_std": 1 / np.sqrt(var + eps),
                                  "gamma": gamma}


@mutant("layernorm_backward treats the mean and the variance as constants",
        replaces="layernorm_backward")
def layernorm_backward_constant_stats(dout, cache):
    dx = dout * cache["gamma"] * cache["inv_std"]
    return dx, (dout * cache["x_hat"]).sum(axis=0), dout.sum(axis=0)


@mutant("spatial_batchnorm_forward keeps per-position statistics (one mean per C*H*W "
        "activation, the lecture's per-activation variant)", replaces="spatial_batchnorm_forward")
def spatial_batchnorm_forward_per_position(x, gamma, beta, bn_param):
    n, c, h, w = x.shape
    eps = bn_param.get("eps", 1e-5)
    if bn_param["mode"] == "train":
        mu, var = x.mean(axis=0), x.var(axis=0)
        m = bn_param.get("momentum", 0.1)
        bn_param.setdefault("running_mean", np.zeros(c))
        bn_param.setdefault("running_var", np.ones(c))
        rm, rv = bn_param["running_mean"], bn_param["running_var"]
        rm[...] = (1 - m) * rm + m * mu.mean(axis=(1, 2))
        rv[...] = (1 - m) * rv + m * var.mean(axis=(1, 2)) * n / max(n - 1, 1)
        x_hat = (x - mu) / np.sqrt(var + eps)
    else:
        x_hat = ((x - bn_param["running_mean"][None, :, None, None])
                 / np.sqrt(bn_param["running_var"][None, :, None, None] + eps))
    out = gamma[None, :, None, None] * x_hat + beta[None, :, None, None]
    flat_cache = batchnorm_forward(x.transpose(0, 2, 3, 1).reshape(-1, c), gamma, beta,
                                   {"mode": "train"})[1]
    return out, flat_cache


@mutant("spatial_batchnorm_forward reshapes (N, C, H, W) to (-1, C) without moving C last",
        replaces="spatial_batchnorm_forward")
def spatial_batchnorm_forward_bad_reshape(x, gamma, beta, bn_param):
    n, c, h, w = x.shape
    out, cache = batchnorm_forward(x.reshape(-1, c), gamma, beta, bn_param)
    return out.reshape(n, c, h, w), cache


@mutant("spatial_batchnorm_backward reshapes dout to (-1, C) without moving C last",
        replaces="spatial_batchnorm_backward")
def spatial_batchnorm_backward_bad_reshape(dout, cache):
    n, c, h, w = dout.shape
    flat = dout.transpose(0, 2, 3, 1).reshape(-1, c)
    dx, dgamma, dbeta = batchnorm_backward_alt(flat, cache)
    return dx.reshape(n, c, h, w), dgamma, dbeta


@mutant("spatial_groupnorm_forward splits channels into interleaved groups "
        "(reshape (N, C // G, G, ...) instead of (N, G, C // G, ...))",
        replaces="spatial_groupnorm_forward")
def spatial_groupnorm_forward_interleaved(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    n, c, h, w = x.shape
    if G <= 0 or c % G != 0:
        raise ValueError("G must divide C")
    xg = x.reshape(n, c // G, G, h * w).transpose(0, 2, 1, 3).reshape(n, G, -1)
    mu = xg.mean(axis=2, keepdims=True)
    var = xg.var(axis=2, keepdims=True)
    inv_std = 1 / np.sqrt(var + eps)
    x_hat = ((xg - mu) * inv_std).reshape(n, G, c // G, h * w).transpose(0, 2, 1, 3)
    x_hat = x_hat.reshape(n, c, h, w)
    out = gamma[None, :, None, None] * x_hat + beta[None, :, None, None]
    return out, {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma, "G": G}


@mutant("spatial_groupnorm_backward returns dgamma and dbeta per group, repeated per channel",
        replaces="spatial_groupnorm_backward")
def spatial_groupnorm_backward_group_dgamma(dout, cache, _ref=spatial_groupnorm_backward):
    dx, dgamma, dbeta = _ref(dout, cache)
    g = cache["G"]
    c = dgamma.shape[0]
    dgamma = np.repeat(dgamma.reshape(g, c // g).sum(axis=1), c // g)
    dbeta = np.repeat(dbeta.reshape(g, c // g).sum(axis=1), c // g)
    return dx, dgamma, dbeta


@mutant("BatchNorm2d keeps updating its running statistics in eval mode", replaces="BatchNorm2d")
class BatchNorm2dUpdatesInEval(BatchNorm2d):
    def forward(self, x):
        if not self.training:
            mean = x.mean(dim=(0, 2, 3))
            count = x.numel() // x.shape[1]
            var = x.var(dim=(0, 2, 3), unbiased=False) * count / max(count - 1, 1)
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(self.momentum * var)
        return super().forward(x)


@mutant("BatchNorm2d's running variance is the biased batch variance", replaces="BatchNorm2d")
class BatchNorm2dBiasedRunningVar(BatchNorm2d):
    def forward(self, x):
        out = super().forward(x)
        if self.training:
            count = x.numel() // x.shape[1]
            var = x.var(dim=(0, 2, 3), unbiased=True)
            with torch.no_grad():  # undo the unbiased part of the update, keep the biased one
                self.running_var.sub_(self.momentum * var).add_(
                    self.momentum * var * (count - 1) / count)
        return out


@mutant("BatchNorm2d lets autograd flow into its running statistics (no torch.no_grad, "
        "buffers replaced by graph tensors)", replaces="BatchNorm2d")
class BatchNorm2dGraphBuffers(BatchNorm2d):
    def forward(self, x):
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            count = x.numel() // x.shape[1]
            self.running_mean = (1 - self.momentum) * self.running_mean + self.momentum * mean
            self.running_var = ((1 - self.momentum) * self.running_var
                                + self.momentum * var * count / (count - 1))
            x_hat = (x - mean[None, :, None, None]) / torch.sqrt(
                var[None, :, None, None] + self.eps)
            return self.weight[None, :, None, None] * x_hat + self.bias[None, :, None, None]
        return super().forward(x)


@mutant("BatchNorm2d's momentum defaults to 0.9 (Keras's convention, the weight of the old "
        "statistics)", replaces="BatchNorm2d")
class BatchNorm2dKerasMomentum(BatchNorm2d):
    def __init__(self, num_features, eps=1e-5, momentum=0.9):
        super().__init__(num_features, eps=eps, momentum=momentum)


@mutant("spatial_groupnorm_forward relies on x.reshape(N, G, -1) to reject a G that does not "
        "divide C", replaces="spatial_groupnorm_forward")
def spatial_groupnorm_forward_reshape_only(x, gamma, beta, G, gn_param):
    eps = gn_param.get("eps", 1e-5)
    n, c, h, w = x.shape
    xg = x.reshape(n, G, -1)
    mu = xg.mean(axis=2, keepdims=True)
    xc = xg - mu
    inv_std = 1.0 / np.sqrt((xc**2).mean(axis=2, keepdims=True) + eps)
    x_hat = (xc * inv_std).reshape(n, c, h, w)
    out = gamma[None, :, None, None] * x_hat + beta[None, :, None, None]
    return out, {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma, "G": G}


@mutant("batchnorm_backward_alt centres dout in place (dout -= dout.mean(axis=0)) to reuse it: "
        "the right gradients, and the caller's dout changed", replaces="batchnorm_backward_alt")
def batchnorm_backward_alt_in_place(dout, cache):
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dout -= dbeta / n
    dx = (gamma * inv_std) * (dout - x_hat * dgamma / n)
    return dx, dgamma, dbeta
