"""Reference solution of Lab 04: convolution variants.

Every name here is defined by an answer cell of labs/04_convolutions.ipynb,
with the same signature and docstring.

Convention: like torch and every deep-learning library, "convolution" here is
a cross-correlation: the kernel is NOT flipped,
out[n, f, i, j] = b[f] + sum_{c, k, l} x[n, c, i*s + k*d, j*s + l*d] * w[f, c, k, l].
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from torch import nn


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """Size of the output of a convolution (or pooling) along one dimension.

    Inputs:
    - size: int, the input size along this dimension (H or W).
    - kernel: int, the kernel size along it.
    - stride, padding, dilation: ints; padding is added on BOTH sides.

    Returns:
    - int: floor((size + 2 * padding - dilation * (kernel - 1) - 1) / stride) + 1,
      torch's formula. A dilated kernel spans dilation * (kernel - 1) + 1 pixels.
    """
    span = dilation * (kernel - 1) + 1
    return (size + 2 * padding - span) // stride + 1


def conv2d_forward_naive(x, w, b, conv_param):
    """Forward pass of a 2D convolution (cross-correlation, as in torch), with loops.

    Inputs:
    - x: input of shape (N, C, H, W).
    - w: filters of shape (F, C // groups, HH, WW).
    - b: biases of shape (F,).
    - conv_param: dict with the optional keys
      - "stride" (int, default 1): step between two windows, in both directions;
      - "pad" (int, default 0): zeros added on every side (top, bottom, left, right);
      - "dilation" (int, default 1): spacing between the taps of the kernel;
      - "groups" (int, default 1): C and F are split into `groups` equal groups;
        filter f sees only the input channels of its group
        g = f // (F // groups), that is x[:, g * C // groups : (g + 1) * C // groups].

    Returns a tuple:
    - out: array of shape (N, F, H', W'), where H' = conv_output_size(H, HH, stride,
      pad, dilation) and W' likewise, with
      out[n, f, i, j] = b[f] + sum_{c, k, l} xpad[n, g*Cg + c, i*s + k*d, j*s + l*d] * w[f, c, k, l]
      (Cg = C // groups; no kernel flip).
    - cache: (x, w, b, conv_param), for conv2d_backward_naive.
    """
    stride = conv_param.get("stride", 1)
    pad = conv_param.get("pad", 0)
    dil = conv_param.get("dilation", 1)
    groups = conv_param.get("groups", 1)
    N, C, H, W = x.shape
    F, Cg, HH, WW = w.shape
    Fg = F // groups
    Ho = conv_output_size(H, HH, stride, pad, dil)
    Wo = conv_output_size(W, WW, stride, pad, dil)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, Ho, Wo), dtype=np.result_type(x, w, b))
    for n in range(N):
        for f in range(F):
            g = f // Fg  # the group of filter f: it sees channels g*Cg .. (g+1)*Cg - 1
            for i in range(Ho):
                for j in range(Wo):
                    r, c = i * stride, j * stride
                    window = xp[n, g * Cg : (g + 1) * Cg, r : r + dil * (HH - 1) + 1 : dil,
                                c : c + dil * (WW - 1) + 1 : dil]
                    out[n, f, i, j] = np.sum(window * w[f]) + b[f]
    return out, (x, w, b, conv_param)


def conv2d_backward_naive(dout, cache):
    """Backward pass of conv2d_forward_naive, with loops.

    Inputs:
    - dout: upstream gradient, shape (N, F, H', W').
    - cache: the cache returned by conv2d_forward_naive, (x, w, b, conv_param).

    Returns a tuple:
    - dx: gradient with respect to x, shape (N, C, H, W).
    - dw: gradient with respect to w, shape (F, C // groups, HH, WW)
      (summed over the batch).
    - db: gradient with respect to b, shape (F,).
    """
    x, w, b, conv_param = cache
    stride = conv_param.get("stride", 1)
    pad = conv_param.get("pad", 0)
    dil = conv_param.get("dilation", 1)
    groups = conv_param.get("groups", 1)
    N, C, H, W = x.shape
    F, Cg, HH, WW = w.shape
    Fg = F // groups
    _, _, Ho, Wo = dout.shape
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp = np.zeros_like(xp, dtype=np.result_type(x, dout))
    dw = np.zeros_like(w, dtype=np.result_type(w, dout))
    db = dout.sum(axis=(0, 2, 3))
    for n in range(N):
        for f in range(F):
            g = f // Fg
            for i in range(Ho):
                for j in range(Wo):
                    r, c = i * stride, j * stride
                    window = (n, slice(g * Cg, (g + 1) * Cg),
                              slice(r, r + dil * (HH - 1) + 1, dil),
                              slice(c, c + dil * (WW - 1) + 1, dil))
                    dw[f] += dout[n, f, i, j] * xp[window]
                    dxp[window] += dout[n, f, i, j] * w[f]
    dx = dxp[:, :, pad : pad + H, pad : pad + W]
    return dx, dw, db


def conv2d_forward_fast(x, w, b, conv_param):
    """Forward pass of a 2D convolution, vectorized (im2col + one matrix product per group).

    Same inputs, conventions and output as conv2d_forward_naive (stride, pad,
    dilation, groups), without a Python loop over pixels: take all the windows
    at once with numpy.lib.stride_tricks.sliding_window_view (or as_strided),
    lay them out as a matrix (one row per output pixel, one column per
    (channel, kernel tap)), and multiply by the matrix of the filters, once per
    group (a batched np.matmul or one einsum over the groups is fine).

    Returns a tuple:
    - out: array of shape (N, F, H', W').
    - cache: whatever conv2d_backward_fast needs (for example x, w, b,
      conv_param and the window matrix).
    """
    stride = conv_param.get("stride", 1)
    pad = conv_param.get("pad", 0)
    dil = conv_param.get("dilation", 1)
    groups = conv_param.get("groups", 1)
    N, C, H, W = x.shape
    F, Cg, HH, WW = w.shape
    Fg = F // groups
    Ho = conv_output_size(H, HH, stride, pad, dil)
    Wo = conv_output_size(W, WW, stride, pad, dil)
    # Channels last (N, H, W, C): each window row is then one contiguous run of WW * C
    # numbers, which makes the im2col copy fast.
    xp = np.pad(x.transpose(0, 2, 3, 1), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    span_h, span_w = dil * (HH - 1) + 1, dil * (WW - 1) + 1
    win = sliding_window_view(xp, (span_h, span_w), axis=(1, 2))  # (N, ., ., C, span_h, span_w)
    win = win[:, : (Ho - 1) * stride + 1 : stride, : (Wo - 1) * stride + 1 : stride]
    win = win[..., ::dil, ::dil]
    win = win.reshape(N, Ho, Wo, groups, Cg, HH, WW)
    # cols[g, (n, i, j), (k, l, c)]: one row per output pixel, one column per tap.
    cols = win.transpose(3, 0, 1, 2, 5, 6, 4).reshape(groups, N * Ho * Wo, HH * WW * Cg)
    wmat = w.reshape(groups, Fg, Cg, HH, WW).transpose(0, 3, 4, 2, 1).reshape(groups, -1, Fg)
    out = np.matmul(cols, wmat)  # (groups, N*Ho*Wo, Fg)
    out = out.reshape(groups, N, Ho, Wo, Fg).transpose(1, 0, 4, 2, 3).reshape(N, F, Ho, Wo)
    out = out + b[None, :, None, None]
    return out, (x, w, b, conv_param, cols)


def conv2d_backward_fast(dout, cache):
    """Backward pass of conv2d_forward_fast, vectorized.

    Inputs:
    - dout: upstream gradient, shape (N, F, H', W').
    - cache: the cache returned by conv2d_forward_fast.

    Returns a tuple (dx, dw, db) of the shapes of x, w and b. No Python loop
    over pixels (a loop over the HH * WW kernel taps, to add the window
    gradients back into dx, "col2im", is fine).
    """
    x, w, b, conv_param, cols = cache
    stride = conv_param.get("stride", 1)
    pad = conv_param.get("pad", 0)
    dil = conv_param.get("dilation", 1)
    groups = conv_param.get("groups", 1)
    N, C, H, W = x.shape
    F, Cg, HH, WW = w.shape
    Fg = F // groups
    _, _, Ho, Wo = dout.shape
    db = dout.sum(axis=(0, 2, 3))
    # dout as (groups, N*Ho*Wo, Fg), rows in the order of cols.
    dmat = dout.reshape(N, groups, Fg, Ho, Wo).transpose(1, 0, 3, 4, 2).reshape(groups, -1, Fg)
    dwmat = np.matmul(cols.transpose(0, 2, 1), dmat)  # (groups, HH*WW*Cg, Fg)
    dw = dwmat.reshape(groups, HH, WW, Cg, Fg).transpose(0, 4, 3, 1, 2).reshape(F, Cg, HH, WW)
    wmat = w.reshape(groups, Fg, Cg, HH, WW).transpose(0, 3, 4, 2, 1).reshape(groups, -1, Fg)
    dcols = np.matmul(dmat, wmat.transpose(0, 2, 1))  # (groups, N*Ho*Wo, HH*WW*Cg)
    dcols = dcols.reshape(groups, N, Ho, Wo, HH, WW, Cg).transpose(1, 2, 3, 4, 5, 0, 6)
    dcols = dcols.reshape(N, Ho, Wo, HH, WW, C)
    dxp = np.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=dcols.dtype)
    for k in range(HH):  # col2im: one strided add per kernel tap
        for m in range(WW):
            rows = slice(k * dil, k * dil + (Ho - 1) * stride + 1, stride)
            cols = slice(m * dil, m * dil + (Wo - 1) * stride + 1, stride)
            dxp[:, rows, cols] += dcols[:, :, :, k, m]
    dx = dxp[:, pad : pad + H, pad : pad + W].transpose(0, 3, 1, 2)
    return dx, dw, db


def separable_approximation(kernel):
    """Best rank-1 (separable) approximation of a 2D kernel, by SVD.

    Inputs:
    - kernel: array of shape (K1, K2).

    Returns a tuple:
    - column: array of shape (K1,)
    - row: array of shape (K2,)
      such that np.outer(column, row) is the rank-1 matrix closest to kernel in
      Frobenius norm (Eckart-Young): sqrt(s1) * u1 and sqrt(s1) * v1, from the
      FIRST (largest) singular value s1 and its singular vectors u1, v1. The
      signs of column and row are free (only their product is fixed).
      Filtering with the column (K1 x 1) then the row (1 x K2) costs
      K1 + K2 multiplications per pixel instead of K1 * K2.
    """
    u, s, vt = np.linalg.svd(np.asarray(kernel, dtype=np.float64))
    scale = np.sqrt(s[0])
    return u[:, 0] * scale, vt[0] * scale


def separability_error(kernel):
    """Relative error of the best separable approximation of a 2D kernel.

    Inputs:
    - kernel: array of shape (K1, K2), not all zeros.

    Returns:
    - float: ||kernel - outer(column, row)||_F / ||kernel||_F, with (column, row)
      from separable_approximation; 0 (up to rounding) exactly when the kernel
      is separable (rank 1).
    """
    kernel = np.asarray(kernel, dtype=np.float64)
    column, row = separable_approximation(kernel)
    return float(np.linalg.norm(kernel - np.outer(column, row)) / np.linalg.norm(kernel))


def depthwise_separable_conv2d(x, w_depthwise, w_pointwise, conv_param):
    """Depthwise separable convolution (MobileNet, Xception), without biases.

    Step 1, depthwise: each input channel c is filtered by its own K x K kernel
    w_depthwise[c, 0] (a grouped convolution with groups = C), with the stride,
    pad and dilation of conv_param. Step 2, pointwise: a 1 x 1 convolution
    mixes the C channels into F: out[n, f] = sum_c w_pointwise[f, c, 0, 0] * depth[n, c].

    Inputs:
    - x: array of shape (N, C, H, W).
    - w_depthwise: array of shape (C, 1, K, K) (torch's layout for groups=C).
    - w_pointwise: array of shape (F, C, 1, 1).
    - conv_param: dict with the optional keys "stride", "pad", "dilation", as in
      conv2d_forward_naive ("groups" is ignored).

    Returns:
    - out: array of shape (N, F, H', W') (the output only, no cache).
    """
    C = x.shape[1]
    param = {k: conv_param[k] for k in ("stride", "pad", "dilation") if k in conv_param}
    depth, _ = conv2d_forward_fast(x, w_depthwise, np.zeros(C), {**param, "groups": C})
    return np.einsum("fc,nchw->nfhw", w_pointwise[:, :, 0, 0], depth)


def conv2d_cost(in_channels, out_channels, kernel_size, out_size):
    """Cost of a standard convolution layer, biases not counted.

    Inputs:
    - in_channels: M, the number of input channels.
    - out_channels: N, the number of filters.
    - kernel_size: D_K, an int (a D_K x D_K kernel).
    - out_size: D_F, an int (a D_F x D_F output) or a pair (H', W').

    Returns a tuple of ints:
    - params: D_K * D_K * M * N weights.
    - mult_adds: D_K * D_K * M * N * H' * W' multiply-adds for one image.
    """
    out_h, out_w = (out_size, out_size) if np.ndim(out_size) == 0 else out_size
    params = kernel_size * kernel_size * in_channels * out_channels
    return int(params), int(params * out_h * out_w)


def depthwise_separable_cost(in_channels, out_channels, kernel_size, out_size):
    """Cost of a depthwise separable convolution layer, biases not counted.

    Same inputs as conv2d_cost.

    Returns a tuple of ints:
    - params: D_K * D_K * M (depthwise) + M * N (pointwise) weights.
    - mult_adds: (D_K * D_K * M + M * N) * H' * W' multiply-adds for one image.
    """
    out_h, out_w = (out_size, out_size) if np.ndim(out_size) == 0 else out_size
    params = kernel_size * kernel_size * in_channels + in_channels * out_channels
    return int(params), int(params * out_h * out_w)


def depthwise_separable_ratio(out_channels, kernel_size):
    """Cost of a depthwise separable layer divided by that of a standard one.

    Inputs:
    - out_channels: N, the number of filters.
    - kernel_size: D_K.

    Returns:
    - float: 1 / N + 1 / D_K**2 (Howard et al., 2017), the ratio of both the
      parameters and the multiply-adds of depthwise_separable_cost to those of
      conv2d_cost, whatever M and the output size.
    """
    return 1.0 / out_channels + 1.0 / kernel_size**2


def conv3d_forward_naive(x, w, b, conv_param):
    """Forward pass of a 3D convolution (cross-correlation, as torch.nn.functional.conv3d).

    Inputs:
    - x: input of shape (N, C, D, H, W); for example C imaging modalities
      (MRI T1, T2, ...) of a volume of D slices of H x W voxels.
    - w: filters of shape (F, C, KD, KH, KW).
    - b: biases of shape (F,).
    - conv_param: dict with the optional keys "stride" (int, default 1) and
      "pad" (int, default 0), the same along D, H and W (padding on both sides).

    Returns a tuple:
    - out: array of shape (N, F, D', H', W'), with
      out[n, f, p, i, j] = b[f] + sum_{c, q, k, l} xpad[n, c, p*s + q, i*s + k, j*s + l]
                                                   * w[f, c, q, k, l].
    - cache: (x, w, b, conv_param).
    """
    stride = conv_param.get("stride", 1)
    pad = conv_param.get("pad", 0)
    N, C, D, H, W = x.shape
    F, _, KD, KH, KW = w.shape
    Do = conv_output_size(D, KD, stride, pad)
    Ho = conv_output_size(H, KH, stride, pad)
    Wo = conv_output_size(W, KW, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, Do, Ho, Wo), dtype=np.result_type(x, w, b))
    for p in range(Do):
        for i in range(Ho):
            for j in range(Wo):
                d0, h0, w0 = p * stride, i * stride, j * stride
                window = xp[:, :, d0 : d0 + KD, h0 : h0 + KH, w0 : w0 + KW]
                out[:, :, p, i, j] = np.tensordot(window, w, axes=([1, 2, 3, 4], [1, 2, 3, 4]))
    out += b[None, :, None, None, None]
    return out, (x, w, b, conv_param)


def receptive_field(layers):
    """Receptive field of a stack of convolution (or pooling) layers, along one dimension.

    Inputs:
    - layers: list of (kernel, stride, dilation) tuples of ints, first layer first.

    Returns:
    - int: the number of input pixels (along one dimension) that one output
      pixel of the last layer depends on; 1 for an empty list. Each layer adds
      dilation * (kernel - 1) times the product of the strides of the layers
      before it ("jump" between two neighbouring pixels of its input).
    """
    field, jump = 1, 1
    for kernel, stride, dilation in layers:
        field += dilation * (kernel - 1) * jump
        jump *= stride
    return field


def conv_transpose2d_forward(x, w, b, conv_param):
    """Forward pass of a transposed convolution (torch.nn.functional.conv_transpose2d).

    Each input pixel x[n, c, i, j] adds x[n, c, i, j] * w[c] (a F x HH x WW
    stamp) to the output at rows i*stride .. i*stride + HH - 1 and columns
    j*stride .. j*stride + WW - 1; then `pad` rows and columns are cropped on
    every side. It is the backward pass (dx) of a convolution whose filters
    are w read as (F_conv = C, C_conv = F, HH, WW), with the same stride and pad.

    Inputs:
    - x: input of shape (N, C, H, W).
    - w: filters of shape (C, F, HH, WW) (torch's layout: in_channels first).
    - b: biases of shape (F,).
    - conv_param: dict with the optional keys "stride" (int, default 1) and
      "pad" (int, default 0).

    Returns a tuple:
    - out: array of shape (N, F, H', W') with
      H' = (H - 1) * stride - 2 * pad + HH and W' = (W - 1) * stride - 2 * pad + WW.
    - cache: (x, w, b, conv_param).
    """
    stride = conv_param.get("stride", 1)
    pad = conv_param.get("pad", 0)
    N, C, H, W = x.shape
    _, F, HH, WW = w.shape
    full_h, full_w = (H - 1) * stride + HH, (W - 1) * stride + WW
    full = np.zeros((N, F, full_h, full_w), dtype=np.result_type(x, w, b))
    for k in range(HH):
        for m in range(WW):
            rows = slice(k, k + (H - 1) * stride + 1, stride)
            cols = slice(m, m + (W - 1) * stride + 1, stride)
            full[:, :, rows, cols] += np.einsum("nchw,cf->nfhw", x, w[:, :, k, m])
    out = full[:, :, pad : full_h - pad, pad : full_w - pad] + b[None, :, None, None]
    return out, (x, w, b, conv_param)


class SpatiallySeparableConv2d(nn.Module):
    """A K x K convolution factored into a K x 1 convolution then a 1 x K one.

    - self.vertical: nn.Conv2d(in_ch, out_ch, (k, 1), padding=(k // 2, 0), bias=False),
      a column filter per (output, input) channel pair;
    - self.horizontal: nn.Conv2d(out_ch, out_ch, (1, k), padding=(0, k // 2),
      groups=out_ch, bias=True), one row filter per output channel.

    Every filter of the composition is then separable in space:
    W[f, c] = outer(vertical[f, c], horizontal[f]). Parameters:
    k * in_ch * out_ch + k * out_ch + out_ch (the bias), instead of
    k * k * in_ch * out_ch + out_ch. For odd k the output has the input's
    height and width ("same" padding).
    """

    def __init__(self, in_ch, out_ch, k):
        """Inputs:
        - in_ch, out_ch: numbers of input and output channels.
        - k: the (odd) kernel size.
        """
        super().__init__()
        self.vertical = nn.Conv2d(in_ch, out_ch, (k, 1), padding=(k // 2, 0), bias=False)
        self.horizontal = nn.Conv2d(out_ch, out_ch, (1, k), padding=(0, k // 2), groups=out_ch)

    def forward(self, x):
        """x: tensor (N, in_ch, H, W) -> tensor (N, out_ch, H, W) for odd k."""
        return self.horizontal(self.vertical(x))


class DepthwiseSeparableConv2d(nn.Module):
    """Depthwise separable convolution (MobileNet's building block, without BN/ReLU).

    - self.depthwise: nn.Conv2d(in_ch, in_ch, k, stride=stride, padding=k // 2,
      groups=in_ch, bias=False): one K x K filter per input channel;
    - self.pointwise: nn.Conv2d(in_ch, out_ch, 1, bias=True): a 1 x 1
      convolution that mixes the channels.

    Parameters: k * k * in_ch + in_ch * out_ch + out_ch (the bias), that is
    depthwise_separable_cost(...)[0] + out_ch.
    """

    def __init__(self, in_ch, out_ch, k, stride=1):
        """Inputs:
        - in_ch, out_ch: numbers of input and output channels.
        - k: the (odd) kernel size of the depthwise convolution.
        - stride: its stride.
        """
        super().__init__()
        self.depthwise = nn.Conv2d(in_ch, in_ch, k, stride=stride, padding=k // 2, groups=in_ch,
                                   bias=False)
        self.pointwise = nn.Conv2d(in_ch, out_ch, 1)

    def forward(self, x):
        """x: tensor (N, in_ch, H, W) -> tensor (N, out_ch, H', W'),
        H' = conv_output_size(H, k, stride, k // 2)."""
        return self.pointwise(self.depthwise(x))
