"""Reference solution of Lab 02: normalization layers.

Every name here is defined by an answer cell of labs/02_normalization.ipynb,
with the same signature and docstring.

Conventions (the same as torch's, so that torch.nn.functional is an exact oracle):
- eps (default 1e-5) is added to the variance inside the square root;
- the variance used to normalize is the biased one (denominator N);
- the running statistics are updated as
  running = (1 - momentum) * running + momentum * batch_statistic, momentum
  0.1 by default, and the running variance uses the unbiased batch variance
  (denominator N - 1).
"""

import numpy as np
import torch


def batchnorm_forward(x, gamma, beta, bn_param):
    """Forward pass of batch normalization on a batch of feature vectors.

    Train mode normalizes each feature (column) with the mean and the biased
    variance of the batch, and updates the running statistics; test mode
    normalizes with the running statistics and changes nothing.

        x_hat = (x - mean) / sqrt(var + eps)
        out = gamma * x_hat + beta

    Inputs:
    - x: array of shape (N, D), float64; N >= 2 in train mode.
    - gamma: scale, array of shape (D,).
    - beta: shift, array of shape (D,).
    - bn_param: dict with the keys
      - "mode": "train" or "test" (required);
      - "eps": constant added to the variance (default 1e-5);
      - "momentum": weight of the new batch in the running statistics
        (default 0.1, torch's convention);
      - "running_mean", "running_var": arrays of shape (D,). When missing they
        are created (zeros and ones, like torch) and stored in bn_param.
      In train mode the running statistics are updated IN PLACE (the arrays in
      bn_param are modified, not replaced):
        running_mean = (1 - momentum) * running_mean + momentum * mean
        running_var = (1 - momentum) * running_var + momentum * var * N / (N - 1)
      (the running variance uses the unbiased batch variance). x, gamma and
      beta are never modified.

    Returns a tuple of:
    - out: array of shape (N, D).
    - cache: what the backward passes need, as a dict (or tuple) of arrays and
      numbers. Both batchnorm_backward and batchnorm_backward_alt take it; the
      cache of test mode is not used.
    """
    mode = bn_param["mode"]
    eps = bn_param.get("eps", 1e-5)
    momentum = bn_param.get("momentum", 0.1)
    n, d = x.shape
    if "running_mean" not in bn_param:
        bn_param["running_mean"] = np.zeros(d, dtype=x.dtype)
    if "running_var" not in bn_param:
        bn_param["running_var"] = np.ones(d, dtype=x.dtype)
    running_mean = bn_param["running_mean"]
    running_var = bn_param["running_var"]

    if mode == "train":
        mu = x.mean(axis=0)
        xc = x - mu
        var = (xc**2).mean(axis=0)
        std = np.sqrt(var + eps)
        inv_std = 1.0 / std
        x_hat = xc * inv_std
        out = gamma * x_hat + beta
        running_mean *= 1 - momentum
        running_mean += momentum * mu
        running_var *= 1 - momentum
        running_var += momentum * var * n / (n - 1)
        cache = {"x_hat": x_hat, "xc": xc, "var": var, "std": std, "inv_std": inv_std,
                 "gamma": gamma, "eps": eps}
    elif mode == "test":
        x_hat = (x - running_mean) / np.sqrt(running_var + eps)
        out = gamma * x_hat + beta
        cache = None
    else:
        raise ValueError(f'bn_param["mode"] must be "train" or "test", got {mode!r}')
    return out, cache


def batchnorm_backward(dout, cache):
    """Backward pass of batch normalization (train mode), through the computation graph.

    Go backwards through the steps of the forward pass one at a time (a
    computation graph on paper helps): out = gamma * x_hat + beta,
    x_hat = xc * inv_std, inv_std = 1 / std, std = sqrt(var + eps),
    var = mean(xc ** 2), xc = x - mu, mu = mean(x).

    Inputs:
    - dout: upstream gradient, array of shape (N, D).
    - cache: the cache returned by batchnorm_forward in train mode.

    Returns a tuple of:
    - dx: gradient with respect to x, shape (N, D).
    - dgamma: gradient with respect to gamma, shape (D,).
    - dbeta: gradient with respect to beta, shape (D,).
    """
    x_hat, xc, var, std, inv_std, gamma, eps = (
        cache[k] for k in ("x_hat", "xc", "var", "std", "inv_std", "gamma", "eps")
    )
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    # x_hat = xc * inv_std
    dxc = dx_hat * inv_std
    dinv_std = (dx_hat * xc).sum(axis=0)
    # inv_std = 1 / std, std = sqrt(var + eps)
    dstd = -dinv_std / std**2
    dvar = dstd * 0.5 / np.sqrt(var + eps)
    # var = mean(xc ** 2)
    dxc = dxc + 2.0 * xc * dvar / n
    # xc = x - mu, mu = mean(x)
    dmu = -dxc.sum(axis=0)
    dx = dxc + dmu / n
    return dx, dgamma, dbeta


def batchnorm_backward_alt(dout, cache):
    """Backward pass of batch normalization (train mode), in simplified closed form.

    Work out dL/dx on paper first; it fits in one line:
        dx = gamma / (N * sqrt(var + eps)) * (N * dout - sum(dout) - x_hat * sum(dout * x_hat))
    with the sums over the batch axis. Same inputs and outputs as
    batchnorm_backward, and the same results up to rounding.

    Inputs:
    - dout: upstream gradient, array of shape (N, D).
    - cache: the cache returned by batchnorm_forward in train mode.

    Returns a tuple of:
    - dx: gradient with respect to x, shape (N, D).
    - dgamma: gradient with respect to gamma, shape (D,).
    - dbeta: gradient with respect to beta, shape (D,).
    """
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    n = dout.shape[0]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx = (gamma * inv_std / n) * (n * dout - dbeta - x_hat * dgamma)
    return dx, dgamma, dbeta


def layernorm_forward(x, gamma, beta, ln_param):
    """Forward pass of layer normalization: each sample normalized over its features.

        x_hat[i] = (x[i] - mean(x[i])) / sqrt(var(x[i]) + eps)
        out = gamma * x_hat + beta

    The statistics of row i use only row i (biased variance), so the result is
    the same in train and test mode and works for a batch of one.

    Inputs:
    - x: array of shape (N, D), float64; any N >= 1.
    - gamma: scale, array of shape (D,).
    - beta: shift, array of shape (D,).
    - ln_param: dict; "eps" (default 1e-5) is the constant added to the
      variance. Nothing is stored in it.

    Returns a tuple of:
    - out: array of shape (N, D).
    - cache: what layernorm_backward needs (a dict or tuple of arrays and numbers).
    """
    eps = ln_param.get("eps", 1e-5)
    mu = x.mean(axis=1, keepdims=True)
    xc = x - mu
    var = (xc**2).mean(axis=1, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = xc * inv_std
    out = gamma * x_hat + beta
    return out, {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma}


def layernorm_backward(dout, cache):
    """Backward pass of layer normalization.

    Inputs:
    - dout: upstream gradient, array of shape (N, D).
    - cache: the cache returned by layernorm_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, shape (N, D).
    - dgamma: gradient with respect to gamma, shape (D,).
    - dbeta: gradient with respect to beta, shape (D,).
    """
    x_hat, inv_std, gamma = cache["x_hat"], cache["inv_std"], cache["gamma"]
    d = dout.shape[1]
    dbeta = dout.sum(axis=0)
    dgamma = (dout * x_hat).sum(axis=0)
    dx_hat = dout * gamma
    # batch norm's closed form, with the roles of the two axes swapped
    dx = (inv_std / d) * (
        d * dx_hat
        - dx_hat.sum(axis=1, keepdims=True)
        - x_hat * (dx_hat * x_hat).sum(axis=1, keepdims=True)
    )
    return dx, dgamma, dbeta


def spatial_batchnorm_forward(x, gamma, beta, bn_param):
    """Forward pass of spatial batch normalization (batch norm for convolutions).

    One mean and one variance per channel, over the batch and all positions:
    channel c is normalized with the statistics of x[:, c, :, :], its N * H * W
    values. gamma, beta and the running statistics have one value per channel.
    Reuse batchnorm_forward: move the channel axis last and see the tensor as
    N * H * W vectors of C features.

    Inputs:
    - x: array of shape (N, C, H, W), float64.
    - gamma: scale, array of shape (C,).
    - beta: shift, array of shape (C,).
    - bn_param: dict as for batchnorm_forward ("mode", "eps", "momentum",
      "running_mean" and "running_var" of shape (C,), created when missing and
      updated in place in train mode; the unbiased variance uses N * H * W - 1).

    Returns a tuple of:
    - out: array of shape (N, C, H, W).
    - cache: what spatial_batchnorm_backward needs.
    """
    n, c, h, w = x.shape
    flat = x.transpose(0, 2, 3, 1).reshape(-1, c)
    out, cache = batchnorm_forward(flat, gamma, beta, bn_param)
    return out.reshape(n, h, w, c).transpose(0, 3, 1, 2), cache


def spatial_batchnorm_backward(dout, cache):
    """Backward pass of spatial batch normalization (train mode).

    Inputs:
    - dout: upstream gradient, array of shape (N, C, H, W).
    - cache: the cache returned by spatial_batchnorm_forward in train mode.

    Returns a tuple of:
    - dx: gradient with respect to x, shape (N, C, H, W).
    - dgamma: gradient with respect to gamma, shape (C,).
    - dbeta: gradient with respect to beta, shape (C,).
    """
    n, c, h, w = dout.shape
    flat = dout.transpose(0, 2, 3, 1).reshape(-1, c)
    dx, dgamma, dbeta = batchnorm_backward_alt(flat, cache)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), dgamma, dbeta


def spatial_groupnorm_forward(x, gamma, beta, G, gn_param):
    """Forward pass of group normalization (Wu and He, 2018).

    The C channels of each sample are split into G groups of C // G
    consecutive channels (group g holds channels g * C // G to
    (g + 1) * C // G - 1); each group of each sample is normalized with its own
    mean and biased variance, over its C // G * H * W values. Then every
    channel has its own gamma and beta. G = 1 is layer normalization over
    (C, H, W); G = C is instance normalization. No running statistics: train
    and test are the same.

    Inputs:
    - x: array of shape (N, C, H, W), float64.
    - gamma: scale, array of shape (C,).
    - beta: shift, array of shape (C,).
    - G: int, number of groups; it must divide C (else ValueError).
    - gn_param: dict; "eps" (default 1e-5). Nothing is stored in it.

    Returns a tuple of:
    - out: array of shape (N, C, H, W).
    - cache: what spatial_groupnorm_backward needs.
    """
    eps = gn_param.get("eps", 1e-5)
    n, c, h, w = x.shape
    if G <= 0 or c % G != 0:
        raise ValueError(f"the number of groups G={G} must divide the number of channels C={c}")
    xg = x.reshape(n, G, -1)
    mu = xg.mean(axis=2, keepdims=True)
    xc = xg - mu
    var = (xc**2).mean(axis=2, keepdims=True)
    inv_std = 1.0 / np.sqrt(var + eps)
    x_hat = (xc * inv_std).reshape(n, c, h, w)
    out = gamma[None, :, None, None] * x_hat + beta[None, :, None, None]
    return out, {"x_hat": x_hat, "inv_std": inv_std, "gamma": gamma, "G": G}


def spatial_groupnorm_backward(dout, cache):
    """Backward pass of group normalization.

    Inputs:
    - dout: upstream gradient, array of shape (N, C, H, W).
    - cache: the cache returned by spatial_groupnorm_forward.

    Returns a tuple of:
    - dx: gradient with respect to x, shape (N, C, H, W).
    - dgamma: gradient with respect to gamma, shape (C,).
    - dbeta: gradient with respect to beta, shape (C,).
    """
    x_hat, inv_std, gamma, G = cache["x_hat"], cache["inv_std"], cache["gamma"], cache["G"]
    n, c, h, w = dout.shape
    dbeta = dout.sum(axis=(0, 2, 3))
    dgamma = (dout * x_hat).sum(axis=(0, 2, 3))
    dxh = (dout * gamma[None, :, None, None]).reshape(n, G, -1)
    xh = x_hat.reshape(n, G, -1)
    m = xh.shape[2]
    dx = (inv_std / m) * (
        m * dxh - dxh.sum(axis=2, keepdims=True) - xh * (dxh * xh).sum(axis=2, keepdims=True)
    )
    return dx.reshape(n, c, h, w), dgamma, dbeta


class BatchNorm2d(torch.nn.Module):
    """Batch normalization for (N, C, H, W) tensors, written with tensor operations.

    The same computation as spatial_batchnorm_forward, as a torch module:
    autograd does the backward pass. It matches torch.nn.BatchNorm2d(C, eps,
    momentum) in train and eval mode: outputs, running statistics and
    gradients.

    Attributes:
    - weight: torch.nn.Parameter of shape (C,), gamma, initialized to ones.
    - bias: torch.nn.Parameter of shape (C,), beta, initialized to zeros.
    - running_mean, running_var: buffers of shape (C,) (register_buffer),
      initialized to zeros and ones; updated in train mode only (in place,
      without autograd), with torch's convention: momentum weights the new
      batch, and the running variance uses the unbiased batch variance.
    - eps, momentum: floats.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        """Inputs:
        - num_features: int, the number of channels C.
        - eps: float, added to the variance inside the square root.
        - momentum: float, weight of the new batch in the running statistics.
        """
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.momentum = momentum
        self.weight = torch.nn.Parameter(torch.ones(num_features))
        self.bias = torch.nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))
        self.register_buffer("running_var", torch.ones(num_features))

    def forward(self, x):
        """Inputs:
        - x: tensor of shape (N, C, H, W) (N * H * W >= 2 in train mode).

        Returns:
        - out: tensor of shape (N, C, H, W). In train mode (self.training) it
          uses the batch statistics and updates the running ones; in eval mode
          it uses the running statistics.
        """
        if self.training:
            mean = x.mean(dim=(0, 2, 3))
            var = x.var(dim=(0, 2, 3), unbiased=False)
            count = x.numel() // x.shape[1]
            with torch.no_grad():
                self.running_mean.mul_(1 - self.momentum).add_(self.momentum * mean)
                self.running_var.mul_(1 - self.momentum).add_(
                    self.momentum * var * count / (count - 1)
                )
        else:
            mean, var = self.running_mean, self.running_var
        x_hat = (x - mean[None, :, None, None]) / torch.sqrt(var[None, :, None, None] + self.eps)
        return self.weight[None, :, None, None] * x_hat + self.bias[None, :, None, None]
