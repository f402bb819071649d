"""Seeded student bugs for Lab 04 (convolution variants).

Each is a mistake seen in real submissions or one step away from one. The
selfcheck proves that the hidden checks catch every one of them.
"""

import numpy as np
from torch import nn

from autograder.mutants import mutant
from solutions.convolutions import (
    DepthwiseSeparableConv2d,
    SpatiallySeparableConv2d,
    conv2d_backward_fast,
    conv2d_backward_naive,
    conv2d_forward_fast,
    conv2d_forward_naive,
    conv_output_size,
    conv_transpose2d_forward,
    separability_error,
)


@mutant("conv_output_size forgets the + 1 (output size off by one)", replaces="conv_output_size")
def conv_output_size_off_by_one(size, kernel, stride=1, padding=0, dilation=1):
    span = dilation * (kernel - 1) + 1
    return (size + 2 * padding - span) // stride


@mutant("conv2d_forward_naive flips the kernel (a true convolution; torch does not flip)",
        replaces="conv2d_forward_naive")
def conv2d_forward_naive_flipped(x, w, b, conv_param, _reference=conv2d_forward_naive):
    out, _ = _reference(x, w[:, :, ::-1, ::-1], b, conv_param)
    return out, (x, w, b, conv_param)


@mutant("conv2d_forward_naive's groups read the channels interleaved (reshape (Cg, G) "
        "instead of (G, Cg)), mixing the groups' channels", replaces="conv2d_forward_naive")
def conv2d_forward_naive_groups_mixed(x, w, b, conv_param, _reference=conv2d_forward_naive):
    groups = conv_param.get("groups", 1)
    n, c, h, wd = x.shape
    mixed = x.reshape(n, c // groups, groups, h, wd).transpose(0, 2, 1, 3, 4).reshape(n, c, h, wd)
    out, _ = _reference(mixed, w, b, conv_param)
    return out, (x, w, b, conv_param)


@mutant("conv2d_forward_fast pads one side only (2 * pad at the top and left, none at the "
        "bottom and right)", replaces="conv2d_forward_fast")
def conv2d_forward_fast_one_side_pad(x, w, b, conv_param, _reference=conv2d_forward_fast):
    pad = conv_param.get("pad", 0)
    xp = np.pad(x, ((0, 0), (0, 0), (2 * pad, 0), (2 * pad, 0)))
    out, cache = _reference(xp, w, b, {**conv_param, "pad": 0})
    return out, (x, w, b, conv_param, cache[4])


@mutant("conv2d_forward_fast applies the dilation to the stride (windows dilation times "
        "farther apart, kernel taps contiguous)", replaces="conv2d_forward_fast")
def conv2d_forward_fast_dilation_as_stride(x, w, b, conv_param, _reference=conv2d_forward_fast):
    stride = conv_param.get("stride", 1) * conv_param.get("dilation", 1)
    return _reference(x, w, b, {**conv_param, "stride": stride, "dilation": 1})


@mutant("conv2d_backward_naive overwrites dw for each image (dw = ... instead of dw += ...): "
        "no sum over the batch", replaces="conv2d_backward_naive")
def conv2d_backward_naive_dw_last_image(dout, cache, _reference=conv2d_backward_naive):
    x, w, b, conv_param = cache
    dx, _, db = _reference(dout, cache)
    _, dw, _ = _reference(dout[-1:], (x[-1:], w, b, conv_param))
    return dx, dw, db


@mutant("conv2d_backward_fast sums db over the wrong axes (1, 2, 3)",
        replaces="conv2d_backward_fast")
def conv2d_backward_fast_db_axes(dout, cache, _reference=conv2d_backward_fast):
    dx, dw, _ = _reference(dout, cache)
    return dx, dw, dout.sum(axis=(1, 2, 3))


@mutant("conv2d_backward_fast's col2im assigns (=) instead of adding (+=): overlapping "
        "windows lose gradient", replaces="conv2d_backward_fast")
def conv2d_backward_fast_col2im_assign(dout, cache):
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
    dmat = dout.reshape(N, groups, Fg, Ho, Wo).transpose(1, 0, 3, 4, 2).reshape(groups, -1, Fg)
    dwmat = np.matmul(cols.transpose(0, 2, 1), dmat)
    dw = dwmat.reshape(groups, HH, WW, Cg, Fg).transpose(0, 4, 3, 1, 2).reshape(F, Cg, HH, WW)
    wmat = w.reshape(groups, Fg, Cg, HH, WW).transpose(0, 3, 4, 2, 1).reshape(groups, -1, Fg)
    dcols = np.matmul(dmat, wmat.transpose(0, 2, 1))
    dcols = dcols.reshape(groups, N, Ho, Wo, HH, WW, Cg).transpose(1, 2, 3, 4, 5, 0, 6)
    dcols = dcols.reshape(N, Ho, Wo, HH, WW, C)
    dxp = np.zeros((N, H + 2 * pad, W + 2 * pad, C), dtype=dcols.dtype)
    for k in range(HH):
        for m in range(WW):
            rows = slice(k * dil, k * dil + (Ho - 1) * stride + 1, stride)
            cols_ = slice(m * dil, m * dil + (Wo - 1) * stride + 1, stride)
            dxp[:, rows, cols_] = dcols[:, :, :, k, m]
    dx = dxp[:, pad : pad + H, pad : pad + W].transpose(0, 3, 1, 2)
    return dx, dw, db


@mutant("separable_approximation uses the second singular value and vectors",
        replaces="separable_approximation")
def separable_approximation_second(kernel):
    u, s, vt = np.linalg.svd(np.asarray(kernel, dtype=np.float64))
    scale = np.sqrt(s[1])
    return u[:, 1] * scale, vt[1] * scale


@mutant("separability_error returns s2 / s1 instead of the relative Frobenius error",
        replaces="separability_error")
def separability_error_ratio(kernel):
    s = np.linalg.svd(np.asarray(kernel, dtype=np.float64), compute_uv=False)
    return float(s[1] / s[0])


@mutant("depthwise_separable_conv2d applies the pointwise 1x1 convolution before the "
        "depthwise one", replaces="depthwise_separable_conv2d")
def depthwise_separable_conv2d_swapped(x, w_depthwise, w_pointwise, conv_param):
    mixed = np.einsum("fc,nchw->nfhw", w_pointwise[:, :, 0, 0], x)
    param = {k: conv_param[k] for k in ("stride", "pad", "dilation") if k in conv_param}
    f = mixed.shape[1]
    out, _ = conv2d_forward_fast(mixed, w_depthwise[:f], np.zeros(f), {**param, "groups": f})
    return out


@mutant("depthwise_separable_conv2d's depthwise step sums over the input channels "
        "(a full convolution with the same kernel for every channel)",
        replaces="depthwise_separable_conv2d")
def depthwise_separable_conv2d_full_depthwise(x, w_depthwise, w_pointwise, conv_param):
    c = x.shape[1]
    full = np.broadcast_to(w_depthwise[:, 0][:, None], (c, c) + w_depthwise.shape[2:])
    param = {k: conv_param[k] for k in ("stride", "pad", "dilation") if k in conv_param}
    depth, _ = conv2d_forward_fast(x, np.ascontiguousarray(full), np.zeros(c), param)
    return np.einsum("fc,nchw->nfhw", w_pointwise[:, :, 0, 0], depth)


@mutant("conv2d_cost forgets the output size in the multiply-adds", replaces="conv2d_cost")
def conv2d_cost_no_output_size(in_channels, out_channels, kernel_size, out_size):
    params = kernel_size * kernel_size * in_channels * out_channels
    return int(params), int(params)


@mutant("depthwise_separable_ratio is inverted (standard / separable)",
        replaces="depthwise_separable_ratio")
def depthwise_separable_ratio_inverted(out_channels, kernel_size):
    return 1.0 / (1.0 / out_channels + 1.0 / kernel_size**2)


@mutant("conv3d_forward_naive pads H and W but not the depth D", replaces="conv3d_forward_naive")
def conv3d_forward_naive_no_depth_pad(x, w, b, conv_param):
    stride = conv_param.get("stride", 1)
    pad = conv_param.get("pad", 0)
    N, C, D, H, W = x.shape
    F, _, KD, KH, KW = w.shape
    Do = conv_output_size(D, KD, stride, 0)
    Ho = conv_output_size(H, KH, stride, pad)
    Wo = conv_output_size(W, KW, stride, pad)
    xp = np.pad(x, ((0, 0), (0, 0), (0, 0), (pad, pad), (pad, pad)))
    out = np.zeros((N, F, Do, Ho, Wo))
    for p in range(Do):
        for i in range(Ho):
            for j in range(Wo):
                d0, h0, w0 = p * stride, i * stride, j * stride
                window = xp[:, :, d0 : d0 + KD, h0 : h0 + KH, w0 : w0 + KW]
                out[:, :, p, i, j] = np.tensordot(window, w, axes=([1, 2, 3, 4], [1, 2, 3, 4]))
    return out + b[None, :, None, None, None], (x, w, b, conv_param)


@mutant("receptive_field adds the strides instead of multiplying them", replaces="receptive_field")
def receptive_field_adds_strides(layers):
    field, jump = 1, 1
    for kernel, stride, dilation in layers:
        field += dilation * (kernel - 1) * jump
        jump += stride
    return field


@mutant("conv_transpose2d_forward crops 2 * pad from the start instead of pad on each side",
        replaces="conv_transpose2d_forward")
def conv_transpose2d_forward_one_side_crop(x, w, b, conv_param,
                                          _reference=conv_transpose2d_forward):
    pad = conv_param.get("pad", 0)
    full, _ = _reference(x, w, b, {**conv_param, "pad": 0})
    h, wd = full.shape[2:]
    return full[:, :, 2 * pad : h, 2 * pad : wd], (x, w, b, conv_param)


@mutant("SpatiallySeparableConv2d's 1 x k convolution mixes channels (no groups)",
        replaces="SpatiallySeparableConv2d")
class SpatiallySeparableConv2dFullHorizontal(SpatiallySeparableConv2d):
    def __init__(self, in_ch, out_ch, k):
        super().__init__(in_ch, out_ch, k)
        self.horizontal = nn.Conv2d(out_ch, out_ch, (1, k), padding=(0, k // 2))


@mutant("DepthwiseSeparableConv2d's depthwise convolution forgets groups=in_ch",
        replaces="DepthwiseSeparableConv2d")
class DepthwiseSeparableConv2dNoGroups(DepthwiseSeparableConv2d):
    def __init__(self, in_ch, out_ch, k, stride=1):
        super().__init__(in_ch, out_ch, k, stride)
        self.depthwise = nn.Conv2d(in_ch, in_ch, k, stride=stride, padding=k // 2, bias=False)


@mutant("DepthwiseSeparableConv2d pads with k // 2 in the depthwise step but forgets the "
        "stride", replaces="DepthwiseSeparableConv2d")
class DepthwiseSeparableConv2dNoStride(DepthwiseSeparableConv2d):
    def __init__(self, in_ch, out_ch, k, stride=1):
        super().__init__(in_ch, out_ch, k, stride)
        self.depthwise = nn.Conv2d(in_ch, in_ch, k, padding=k // 2, groups=in_ch, bias=False)


@mutant("conv_output_size's stride defaults to 2 (a pooling layer's habit)",
        replaces="conv_output_size")
def conv_output_size_default_stride_2(size, kernel, stride=2, padding=0, dilation=1):
    span = dilation * (kernel - 1) + 1
    return (size + 2 * padding - span) // stride + 1


@mutant("conv2d_backward_naive assumes pad 1 when conv_param leaves it out",
        replaces="conv2d_backward_naive")
def conv2d_backward_naive_default_pad_1(dout, cache, _reference=conv2d_backward_naive):
    x, w, b, conv_param = cache
    return _reference(dout, (x, w, b, {"pad": 1, **conv_param}))


@mutant("conv2d_backward_fast assumes stride 2 when conv_param leaves it out",
        replaces="conv2d_backward_fast")
def conv2d_backward_fast_default_stride_2(dout, cache, _reference=conv2d_backward_fast):
    x, w, b, conv_param, cols = cache
    return _reference(dout, (x, w, b, {"stride": 2, **conv_param}, cols))


@mutant("DepthwiseSeparableConv2d pads by 1 whatever k (right for k = 3 only)",
        replaces="DepthwiseSeparableConv2d")
class DepthwiseSeparableConv2dPadOne(DepthwiseSeparableConv2d):
    def __init__(self, in_ch, out_ch, k, stride=1):
        super().__init__(in_ch, out_ch, k, stride)
        self.depthwise = nn.Conv2d(in_ch, in_ch, k, stride=stride, padding=1, groups=in_ch,
                                   bias=False)


@mutant("separability_error normalizes the kernel in place (kernel /= its norm) before its SVD: "
        "the right value, and the caller's kernel changed", replaces="separability_error")
def separability_error_in_place(kernel, _reference=separability_error):
    if isinstance(kernel, np.ndarray) and kernel.dtype.kind == "f":
        kernel /= np.linalg.norm(kernel)
    return _reference(kernel)
