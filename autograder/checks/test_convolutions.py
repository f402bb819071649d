"""Hidden checks of Lab 04: convolution variants.

Each check compares the student's code with the reference and with an
independent oracle: torch's functional convolutions (conv2d with stride,
padding, dilation and groups; conv3d; conv_transpose2d) and torch's autograd,
numeric gradients, or values worked out by hand. Inputs are random,
non-square, and come from the check's seeded ``rng``. Convolution is
cross-correlation, as in torch: no kernel flip.
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autograder.checks.isolation import call_both
from labkit.checks import (
    CheckFailure,
    assert_close,
    assert_rel_error,
    assert_shape,
    eval_numerical_gradient_array,
)

# (N, C, H, W, F, HH, WW, stride, pad, dilation, groups): non-square inputs and kernels.
CONV2D_CASES = {
    "plain": (2, 3, 6, 5, 4, 3, 2, 1, 0, 1, 1),
    "stride_pad": (2, 3, 7, 9, 4, 3, 3, 2, 1, 1, 1),
    "dilation": (2, 2, 9, 8, 3, 3, 2, 1, 2, 2, 1),
    "groups": (2, 6, 6, 7, 4, 2, 3, 1, 1, 1, 2),
    "everything": (3, 6, 11, 8, 9, 3, 2, 2, 1, 2, 3),
}
# Small enough for numeric gradients through the naive convolution.
GRAD_CASES = {
    "stride_pad": (2, 2, 5, 4, 3, 3, 2, 2, 1, 1, 1),
    "dilation_groups": (2, 4, 5, 6, 4, 2, 2, 1, 1, 2, 2),
}


def conv2d_problem(rng, case):
    n, c, h, w, f, hh, ww, stride, pad, dil, groups = case
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((f, c // groups, hh, ww))
    b = rng.standard_normal(f)
    param = {"stride": stride, "pad": pad, "dilation": dil, "groups": groups}
    return x, wt, b, param


def torch_conv2d(x, w, b, param):
    """out, and a function dout -> (dx, dw, db), from torch's conv2d and autograd."""
    tx, tw, tb = (torch.tensor(a, requires_grad=True) for a in (x, w, b))
    out = F.conv2d(tx, tw, tb, stride=param["stride"], padding=param["pad"],
                   dilation=param["dilation"], groups=param["groups"])

    def grads(dout):
        return tuple(g.numpy() for g in torch.autograd.grad(out, (tx, tw, tb), torch.tensor(dout)))

    return out.detach().numpy(), grads


def describe(param):
    return ", ".join(f"{k}={v}" for k, v in param.items())


# --- output size --------------------------------------------------------------------------


@pytest.mark.points(1)
def test_conv_output_size_alexnet(student):
    """conv_output_size on AlexNet's later layers: 27 -> 27 (CONV2) -> 13 (POOL2) -> 6 (POOL3)."""
    # The notebook's visible check uses CONV1 and POOL1 (227 -> 55 -> 27); these are the
    # next layers of the same network, worked out by hand.
    for args, kwargs, want, what in (
        ((27, 5), {"stride": 1, "padding": 2}, 27, "CONV2: (27 + 2*2 - 5) / 1 + 1 = 27"),
        ((27, 3), {"stride": 2}, 13, "POOL2: (27 - 3) / 2 + 1 = 13"),
        ((13, 3), {"stride": 2}, 6, "POOL3: (13 - 3) / 2 + 1 = 6"),
    ):
        got = student.conv_output_size(*args, **kwargs)
        if got != want:
            call = ", ".join([*map(str, args), *(f"{k}={v}" for k, v in kwargs.items())])
            raise CheckFailure(f"conv_output_size({call}) (AlexNet {what.split(':')[0]}) "
                               f"returned {got!r}, expected {what.split(': ')[1]}.")


@pytest.mark.points(2)
def test_conv_output_size_matches_torch(student, rng):
    """conv_output_size agrees with the shape of torch's conv2d output on random settings."""
    for _ in range(30):
        size, kernel = int(rng.integers(5, 30)), int(rng.integers(1, 6))
        stride, padding, dilation = (int(v) for v in rng.integers(1, 4, size=3))
        padding -= 1
        if dilation * (kernel - 1) + 1 > size + 2 * padding:
            continue
        out = F.conv2d(torch.zeros(1, 1, size, 1), torch.zeros(1, 1, kernel, 1),
                       stride=stride, padding=(padding, 0), dilation=dilation)
        got = student.conv_output_size(size, kernel, stride, padding, dilation)
        if got != out.shape[2]:
            raise CheckFailure(
                f"conv_output_size(size={size}, kernel={kernel}, stride={stride}, "
                f"padding={padding}, dilation={dilation}) returned {got!r}; torch's conv2d "
                f"gives {out.shape[2]}."
            )


@pytest.mark.points(1)
def test_conv_output_size_defaults(student):
    """conv_output_size's defaults: stride=1, padding=0, dilation=1, each left out in turn."""
    for kwargs, want, how in (
        ({}, 7, "(9 - 3) / 1 + 1 = 7"),
        ({"padding": 1}, 9, "(9 + 2*1 - 3) / 1 + 1 = 9"),
        ({"stride": 2}, 4, "(9 - 3) / 2 + 1 = 4"),
        ({"dilation": 2}, 5, "(9 - 2*(3 - 1) - 1) / 1 + 1 = 5"),
    ):
        got = student.conv_output_size(9, 3, **kwargs)
        if got != want:
            call = ", ".join(["9", "3", *(f"{k}={v}" for k, v in kwargs.items())])
            raise CheckFailure(f"conv_output_size({call}) returned {got!r}, expected {how}: "
                               f"check the default values of the parameters you left out "
                               f"(stride=1, padding=0, dilation=1).")


# --- conv2d, naive and fast ---------------------------------------------------------------


@pytest.mark.points(1)
@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_conv2d_forward_by_hand(student, impl):
    """A 1x1x3x4 input and a 2x2 kernel, worked out by hand (cross-correlation: no flip)."""
    x = np.array([[[[1.0, 0.0, 2.0, 1.0], [0.0, 3.0, 1.0, 0.0], [2.0, 1.0, 0.0, 4.0]]]])
    w = np.array([[[[2.0, -1.0], [0.0, 1.0]]]])
    # out[i, j] = 2 x[i, j] - x[i, j+1] + 0 x[i+1, j] + x[i+1, j+1], plus the bias 0.5:
    # row 0: 2-0+3, 0-2+1, 4-1+0 = 5, -1, 3; row 1: 0-3+1, 6-1+0, 2-0+4 = -2, 5, 6.
    expected = np.array([[[[5.5, -0.5, 3.5], [-1.5, 5.5, 6.5]]]])
    out, _ = getattr(student, f"conv2d_forward_{impl}")(x, w, np.array([0.5]), {})
    assert_close(f"conv2d_forward_{impl} on the hand-worked 3x4 example (a flipped kernel "
                 f"would give [[7.5, -0.5, 1.5], [0.5, 2.5, 9.5]]: torch's convolution does "
                 f"not flip)", out, expected)


@pytest.mark.points(2)
@pytest.mark.parametrize("impl", ["naive", "fast"])
@pytest.mark.parametrize("case", list(CONV2D_CASES))
def test_conv2d_forward_matches_torch(student, reference, rng, impl, case):
    """conv2d_forward_* against torch.nn.functional.conv2d and the reference."""
    x, w, b, param = conv2d_problem(rng, CONV2D_CASES[case])
    expected, _ = torch_conv2d(x, w, b, param)
    out, _ = getattr(student, f"conv2d_forward_{impl}")(x, w, b, dict(param))
    what = f"conv2d_forward_{impl}(x of shape {x.shape}, w of shape {w.shape}, {describe(param)})"
    assert_close(what, out, expected)
    ref, _ = getattr(reference, f"conv2d_forward_{impl}")(x, w, b, dict(param))
    assert_close(what + " vs the reference", out, ref)


@pytest.mark.points(1)
@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_conv2d_forward_default_params(student, rng, impl):
    """conv_param may leave out stride, pad, dilation and groups (defaults 1, 0, 1, 1)."""
    x, w, b, _ = conv2d_problem(rng, (2, 3, 5, 6, 2, 2, 3, 1, 0, 1, 1))
    expected = F.conv2d(*(torch.tensor(a) for a in (x, w, b))).numpy()
    out, _ = getattr(student, f"conv2d_forward_{impl}")(x, w, b, {})
    assert_close(f"conv2d_forward_{impl}(x, w, b, {{}}) (all defaults)", out, expected)


@pytest.mark.points(2)
@pytest.mark.parametrize("impl", ["naive", "fast"])
@pytest.mark.parametrize("case", list(CONV2D_CASES))
def test_conv2d_backward_matches_torch(student, rng, impl, case):
    """conv2d_backward_* (on the cache of the student's forward) against torch's autograd."""
    x, w, b, param = conv2d_problem(rng, CONV2D_CASES[case])
    _, grads = torch_conv2d(x, w, b, param)
    out, cache = getattr(student, f"conv2d_forward_{impl}")(x, w, b, dict(param))
    dout = rng.standard_normal(np.shape(out))
    dx, dw, db = getattr(student, f"conv2d_backward_{impl}")(dout, cache)
    ex, ew, eb = grads(dout)
    what = f"conv2d_backward_{impl} ({describe(param)}, x {x.shape}, w {w.shape})"
    assert_rel_error(f"dx of {what}", dx, ex, 1e-9)
    assert_rel_error(f"dw of {what}", dw, ew, 1e-9)
    assert_rel_error(f"db of {what}", db, eb, 1e-9)


@pytest.mark.points(1)
@pytest.mark.parametrize("impl", ["naive", "fast"])
def test_conv2d_backward_default_params(student, rng, impl):
    """conv2d_backward_* after a forward call whose conv_param left every key out."""
    x, w, b, param = conv2d_problem(rng, (2, 3, 5, 6, 4, 2, 3, 1, 0, 1, 1))
    _, grads = torch_conv2d(x, w, b, param)
    out, cache = getattr(student, f"conv2d_forward_{impl}")(x, w, b, {})
    dout = rng.standard_normal(np.shape(out))
    dx, dw, db = getattr(student, f"conv2d_backward_{impl}")(dout, cache)
    ex, ew, eb = grads(dout)
    what = (f"conv2d_backward_{impl} after conv2d_forward_{impl}(x, w, b, {{}}) (stride 1, "
            f"pad 0, dilation 1, groups 1 by default: the backward pass must use the same "
            f"defaults)")
    assert_rel_error(f"dx of {what}", dx, ex, 1e-9)
    assert_rel_error(f"dw of {what}", dw, ew, 1e-9)
    assert_rel_error(f"db of {what}", db, eb, 1e-9)


@pytest.mark.points(2)
@pytest.mark.parametrize("impl", ["naive", "fast"])
@pytest.mark.parametrize("case", list(GRAD_CASES))
def test_conv2d_backward_numeric_gradient(student, reference, rng, impl, case):
    """conv2d_backward_* against numeric gradients (centred differences) of the convolution."""
    x, w, b, param = conv2d_problem(rng, GRAD_CASES[case])
    forward = reference.conv2d_forward_fast
    out, cache = getattr(student, f"conv2d_forward_{impl}")(x, w, b, dict(param))
    dout = rng.standard_normal(np.shape(out))
    dx, dw, db = getattr(student, f"conv2d_backward_{impl}")(dout, cache)
    what = f"conv2d_backward_{impl} ({describe(param)})"
    num_dx = eval_numerical_gradient_array(lambda v: forward(v, w, b, param)[0], x.copy(), dout)
    num_dw = eval_numerical_gradient_array(lambda v: forward(x, v, b, param)[0], w.copy(), dout)
    num_db = eval_numerical_gradient_array(lambda v: forward(x, w, v, param)[0], b.copy(), dout)
    assert_rel_error(f"dx of {what} vs the numeric gradient", dx, num_dx, 1e-7)
    assert_rel_error(f"dw of {what} vs the numeric gradient", dw, num_dw, 1e-7)
    assert_rel_error(f"db of {what} vs the numeric gradient", db, num_db, 1e-7)


@pytest.mark.points(1)
def test_conv2d_fast_matches_naive_on_larger_input(student, rng):
    """conv2d_forward_fast and conv2d_backward_fast on a larger batch, against torch."""
    x, w, b, param = conv2d_problem(rng, (8, 8, 20, 17, 16, 3, 3, 1, 1, 1, 2))
    expected, grads = torch_conv2d(x, w, b, param)
    out, cache = student.conv2d_forward_fast(x, w, b, dict(param))
    assert_close("conv2d_forward_fast on x of shape (8, 8, 20, 17)", out, expected)
    dout = rng.standard_normal(expected.shape)
    for name, got, want in zip(("dx", "dw", "db"), student.conv2d_backward_fast(dout, cache),
                               grads(dout), strict=True):
        assert_rel_error(f"{name} of conv2d_backward_fast on x of shape (8, 8, 20, 17)", got,
                         want, 1e-9)


# --- separable filters --------------------------------------------------------------------


def check_rank1(name, column, row, expected_outer, shape):
    assert_shape(f"column of {name}", column, (shape[0],))
    assert_shape(f"row of {name}", row, (shape[1],))
    assert_close(f"np.outer(column, row) for {name}", np.outer(column, row), expected_outer,
                 atol=1e-10)


@pytest.mark.points(2)
def test_separable_approximation_exact_kernels(student):
    """Scharr and Gaussian kernels are separable: outer(column, row) gives them back."""
    # Scharr's kernel: the outer product of (3, 10, 3) and (1, 0, -1).
    scharr = np.array([[3.0, 0.0, -3.0], [10.0, 0.0, -10.0], [3.0, 0.0, -3.0]])
    g = np.exp(-0.5 * (np.arange(-2, 3) / 1.2) ** 2)
    gauss = np.outer(g, g[1:4]) / 7  # a non-square separable kernel, 5x3
    for name, k in (("the Scharr kernel", scharr), ("a 5x3 Gaussian kernel", gauss)):
        column, row = student.separable_approximation(k)
        check_rank1(f"separable_approximation({name})", column, row, k, k.shape)


@pytest.mark.points(2)
def test_separable_approximation_random_kernel(student, reference, rng):
    """The best rank-1 approximation of random kernels (the SVD's first term, by torch)."""
    for shape in ((3, 3), (5, 3), (4, 7)):
        k = rng.standard_normal(shape)
        u, s, vh = torch.linalg.svd(torch.tensor(k))
        expected = (s[0] * torch.outer(u[:, 0], vh[0])).numpy()
        (column, row), (ref_c, ref_r) = call_both(
            "separable_approximation", student.separable_approximation,
            reference.separable_approximation, k, names=("kernel",))
        check_rank1(f"separable_approximation of a random {shape} kernel", column, row,
                    expected, shape)
        assert_close(f"outer(column, row) of a random {shape} kernel vs the reference",
                     np.outer(column, row), np.outer(ref_c, ref_r), atol=1e-10)


@pytest.mark.points(2)
def test_separability_error(student, reference, rng):
    """separability_error: 0 for separable kernels, 3/5 for [[0, 3], [4, 0]], and the reference's
    value for random kernels."""
    scharr = np.array([[3.0, 0.0, -3.0], [10.0, 0.0, -10.0], [3.0, 0.0, -3.0]])
    assert_close("separability_error(Scharr)", float(student.separability_error(scharr)), 0.0,
                 atol=1e-10)
    # Singular values 4 and 3: error sqrt(3^2 / (4^2 + 3^2)) = 3/5 (s2 / s1 would be 3/4).
    k = np.array([[0.0, 3.0], [4.0, 0.0]])
    assert_close("separability_error([[0, 3], [4, 0]]) (singular values 4 and 3: error "
                 "sqrt(9 / 25) = 0.6)", float(student.separability_error(k)), 0.6)
    for shape in ((3, 3), (5, 4)):
        k = rng.standard_normal(shape)
        s = np.linalg.svd(k, compute_uv=False)
        expected = np.sqrt(np.sum(s[1:] ** 2) / np.sum(s**2))
        got, ours = call_both("separability_error", student.separability_error,
                              reference.separability_error, k, names=("kernel",))
        assert_close(f"separability_error of a random {shape} kernel", float(got), expected)
        assert_close(f"separability_error of a random {shape} kernel vs the reference",
                     float(got), ours)


# --- depthwise separable ------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("param", [{"pad": 1}, {"stride": 2, "pad": 2, "dilation": 2}])
def test_depthwise_separable_conv2d_matches_torch(student, reference, rng, param):
    """depthwise_separable_conv2d = conv2d(groups=C) then a 1x1 conv2d, by torch."""
    x = rng.standard_normal((2, 3, 9, 7))
    wd = rng.standard_normal((3, 1, 3, 3))
    wp = rng.standard_normal((5, 3, 1, 1))
    depth = F.conv2d(torch.tensor(x), torch.tensor(wd), stride=param.get("stride", 1),
                     padding=param.get("pad", 0), dilation=param.get("dilation", 1), groups=3)
    expected = F.conv2d(depth, torch.tensor(wp)).numpy()
    out, ours = call_both("depthwise_separable_conv2d", student.depthwise_separable_conv2d,
                          reference.depthwise_separable_conv2d, x, wd, wp, dict(param),
                          names=("x", "w_depthwise", "w_pointwise", "conv_param"))
    what = f"depthwise_separable_conv2d (C=3, F=5, {describe(param)})"
    assert_close(what, out, expected)
    assert_close(what + " vs the reference", out, ours)


@pytest.mark.points(2)
def test_conv2d_cost_by_hand(student, reference):
    """conv2d_cost on MobileNet's example (M = N = 512, D_K = 3, D_F = 14) and a non-square
    output."""
    got = tuple(student.conv2d_cost(512, 512, 3, 14))
    if got != (2_359_296, 462_422_016):
        raise CheckFailure(f"conv2d_cost(512, 512, 3, 14) returned {got}, expected "
                           f"(params, mult_adds) = (3*3*512*512, 3*3*512*512*14*14) = "
                           f"(2359296, 462422016).")
    got = tuple(student.conv2d_cost(3, 8, 5, (6, 4)))
    expected = reference.conv2d_cost(3, 8, 5, (6, 4))
    if got != expected:
        raise CheckFailure(f"conv2d_cost(3, 8, 5, (6, 4)) returned {got}, expected {expected}.")


@pytest.mark.points(2)
def test_depthwise_separable_cost_by_hand(student, reference):
    """depthwise_separable_cost on MobileNet's example and a non-square output."""
    got = tuple(student.depthwise_separable_cost(512, 512, 3, 14))
    if got != (266_752, 52_283_392):
        raise CheckFailure(f"depthwise_separable_cost(512, 512, 3, 14) returned {got}, expected "
                           f"(3*3*512 + 512*512, (3*3*512 + 512*512)*14*14) = "
                           f"(266752, 52283392).")
    got = tuple(student.depthwise_separable_cost(3, 8, 5, (6, 4)))
    expected = reference.depthwise_separable_cost(3, 8, 5, (6, 4))
    if got != expected:
        raise CheckFailure(f"depthwise_separable_cost(3, 8, 5, (6, 4)) returned {got}, "
                           f"expected {expected}.")


@pytest.mark.points(2)
def test_depthwise_separable_ratio(student, rng):
    """depthwise_separable_ratio = 1/N + 1/D_K^2, the ratio of the two costs."""
    got = float(student.depthwise_separable_ratio(512, 3))
    assert_close("depthwise_separable_ratio(512, 3) (1/512 + 1/9)", got, 1 / 512 + 1 / 9)
    for _ in range(5):
        m, n, k, d = (int(v) for v in rng.integers(2, 64, size=4))
        k = k % 7 + 1
        p_std, ma_std = k * k * m * n, k * k * m * n * d * d
        p_sep, ma_sep = k * k * m + m * n, (k * k * m + m * n) * d * d
        got = float(student.depthwise_separable_ratio(n, k))
        assert_close(f"depthwise_separable_ratio({n}, {k}) vs the ratio of the parameter counts "
                     f"(M={m})", got, p_sep / p_std)
        assert_close(f"depthwise_separable_ratio({n}, {k}) vs the ratio of the multiply-adds",
                     got, ma_sep / ma_std)


# --- 3D convolution -----------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("param", [{}, {"stride": 2, "pad": 1}])
def test_conv3d_forward_matches_torch(student, reference, rng, param):
    """conv3d_forward_naive against torch.nn.functional.conv3d (non-cubic input and kernel)."""
    x = rng.standard_normal((2, 2, 5, 6, 4))  # 2 volumes, 2 modalities
    w = rng.standard_normal((3, 2, 3, 2, 3))
    b = rng.standard_normal(3)
    expected = F.conv3d(*(torch.tensor(a) for a in (x, w, b)), stride=param.get("stride", 1),
                        padding=param.get("pad", 0)).numpy()
    (out, _), (ours, _) = call_both("conv3d_forward_naive", student.conv3d_forward_naive,
                                    reference.conv3d_forward_naive, x, w, b, dict(param),
                                    names=("x", "w", "b", "conv_param"))
    what = f"conv3d_forward_naive(x {x.shape}, w {w.shape}, {describe(param) or 'defaults'})"
    assert_close(what, out, expected)
    assert_close(what + " vs the reference", out, ours)


# --- receptive field ----------------------------------------------------------------------


@pytest.mark.points(1)
def test_receptive_field_by_hand(student):
    """receptive_field on stacks worked out by hand."""
    # Each layer adds (kernel - 1) * dilation * (product of the strides before it).
    cases = [
        ([], 1),
        ([(3, 1, 1)], 3),
        ([(5, 1, 1)] * 2, 9),  # 1 + 4 + 4
        ([(3, 1, 2), (3, 1, 4), (5, 1, 1)], 17),  # 1 + 2*2 + 2*4 + 4
        ([(7, 2, 1), (3, 2, 1), (5, 2, 1)], 27),  # ZFNet's CONV1, POOL1, CONV2: 1 + 6 + 2*2 + 4*4
    ]
    for layers, expected in cases:
        got = student.receptive_field(layers)
        if got != expected:
            raise CheckFailure(f"receptive_field({layers}) returned {got!r}, expected {expected}.")


@pytest.mark.points(2)
def test_receptive_field_strides_multiply(student, reference, rng):
    """receptive_field with several strided layers: each stride multiplies the jump."""
    layers = [(3, 3, 1), (3, 3, 1), (3, 1, 1)]
    got = student.receptive_field(layers)
    if got != 27:
        raise CheckFailure(f"receptive_field({layers}) returned {got!r}, expected 27 "
                           f"(the third layer's taps are 3 * 3 = 9 input pixels apart).")
    for _ in range(10):
        layers = [tuple(int(v) for v in rng.integers(1, 4, size=3)) for _ in range(4)]
        got, expected = call_both("receptive_field", student.receptive_field,
                                  reference.receptive_field, layers, names=("layers",))
        if got != expected:
            raise CheckFailure(f"receptive_field({layers}) returned {got!r}, expected {expected}.")


@pytest.mark.points(2)
def test_receptive_field_matches_autograd(student):
    """receptive_field of dilated stacks against the support of torch's input gradient."""
    for layers in ([(3, 1, 1), (3, 1, 2), (3, 1, 4), (3, 1, 8)], [(3, 2, 1), (3, 1, 2), (2, 3, 1)]):
        x = torch.zeros(1, 1, 1, 80, requires_grad=True)
        out = x
        for k, s, d in layers:
            out = F.conv1d(out[0], torch.ones(1, 1, k), stride=s, dilation=d)[None]
        out[0, 0, 0, out.shape[-1] // 2].backward()
        expected = int(np.ptp(np.flatnonzero(x.grad.numpy().ravel())) + 1)
        got = student.receptive_field(layers)
        if got != expected:
            raise CheckFailure(f"receptive_field({layers}) returned {got!r}; the input gradient "
                               f"of one output pixel spans {expected} pixels.")


# --- transposed convolution ---------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("param", [{}, {"stride": 2, "pad": 1}, {"stride": 3, "pad": 2}])
def test_conv_transpose2d_matches_torch(student, reference, rng, param):
    """conv_transpose2d_forward against torch.nn.functional.conv_transpose2d."""
    x = rng.standard_normal((2, 3, 4, 5))
    w = rng.standard_normal((3, 2, 4, 3))
    b = rng.standard_normal(2)
    expected = F.conv_transpose2d(*(torch.tensor(a) for a in (x, w, b)),
                                  stride=param.get("stride", 1),
                                  padding=param.get("pad", 0)).numpy()
    (out, _), (ours, _) = call_both("conv_transpose2d_forward", student.conv_transpose2d_forward,
                                    reference.conv_transpose2d_forward, x, w, b, dict(param),
                                    names=("x", "w", "b", "conv_param"))
    what = f"conv_transpose2d_forward(x {x.shape}, w {w.shape}, {describe(param) or 'defaults'})"
    assert_close(what, out, expected)
    assert_close(what + " vs the reference", out, ours)


@pytest.mark.points(1)
def test_conv_transpose2d_is_conv_backward(student, reference, rng):
    """conv_transpose2d_forward(y, w) is the dx of a convolution with filters w and dout = y."""
    x = rng.standard_normal((2, 2, 9, 7))  # (size + 2 pad - kernel) divisible by the stride
    w = rng.standard_normal((3, 2, 3, 3))
    param = {"stride": 2, "pad": 1}
    out, cache = reference.conv2d_forward_naive(x, w, np.zeros(3), param)
    y = rng.standard_normal(out.shape)
    dx, _, _ = reference.conv2d_backward_naive(y, cache)
    got, _ = student.conv_transpose2d_forward(y, w, np.zeros(2), dict(param))
    assert_close("conv_transpose2d_forward(y, w, 0, stride=2, pad=1) vs the dx of "
                 "conv2d(x, w, stride=2, pad=1) for dout = y", got, dx)


# --- torch modules ------------------------------------------------------------------------


@pytest.mark.points(2)
def test_spatially_separable_module(student, rng):
    """SpatiallySeparableConv2d: parameter count, output shape, and its two convolutions."""
    in_ch, out_ch, k = 3, 6, 5
    m = student.SpatiallySeparableConv2d(in_ch, out_ch, k)
    state = m.state_dict()
    count = sum(int(t.numel()) for t in state.values())
    expected = k * in_ch * out_ch + k * out_ch + out_ch
    if count != expected:
        raise CheckFailure(f"SpatiallySeparableConv2d({in_ch}, {out_ch}, {k}) has {count} "
                           f"parameters, expected k*in*out + k*out + out = {expected}.")
    for key, shape in (("vertical.weight", (out_ch, in_ch, k, 1)),
                       ("horizontal.weight", (out_ch, 1, 1, k)), ("horizontal.bias", (out_ch,))):
        if key not in state:
            raise CheckFailure(f"SpatiallySeparableConv2d has no parameter {key!r} (its "
                               f"parameters: {sorted(state)}).")
        assert_shape(f"SpatiallySeparableConv2d's {key}", state[key], shape)
    x = torch.tensor(rng.standard_normal((2, in_ch, 9, 7)), dtype=torch.float32)
    with torch.no_grad():
        out = m(x)
        expected = F.conv2d(F.conv2d(x, state["vertical.weight"], padding=(k // 2, 0)),
                            state["horizontal.weight"], state["horizontal.bias"],
                            padding=(0, k // 2), groups=out_ch)
    assert_close("SpatiallySeparableConv2d(3, 6, 5)(x) for x of shape (2, 3, 9, 7)", out,
                 expected, rtol=1e-4, atol=1e-5)


def check_depthwise_separable_module(student, rng, in_ch, out_ch, k, stride=None, size=(9, 8)):
    """DepthwiseSeparableConv2d(in_ch, out_ch, k[, stride]): its parameters (names and count
    against the formula), its output shape and its forward, against torch on its own weights.
    stride None: the default (1)."""
    args = (in_ch, out_ch, k) if stride is None else (in_ch, out_ch, k, stride)
    what = f"DepthwiseSeparableConv2d{args}"
    m = student.DepthwiseSeparableConv2d(*args)
    state = m.state_dict()
    for key in ("depthwise.weight", "pointwise.weight", "pointwise.bias"):
        if key not in state:
            raise CheckFailure(f"{what} has no parameter {key!r} (its parameters: "
                               f"{sorted(state)}).")
    count = sum(int(t.numel()) for t in state.values())
    expected = k * k * in_ch + in_ch * out_ch + out_ch
    if count != expected:
        raise CheckFailure(f"{what} has {count} parameters, expected depthwise_separable_cost"
                           f"(...)[0] + out_ch = {expected}.")
    s = stride or 1
    x = torch.tensor(rng.standard_normal((2, in_ch, *size)), dtype=torch.float32)
    with torch.no_grad():
        out = m(x)
        expected = F.conv2d(F.conv2d(x, state["depthwise.weight"], stride=s, padding=k // 2,
                                     groups=in_ch),
                            state["pointwise.weight"], state["pointwise.bias"])
    shape = (2, out_ch, *((n + 2 * (k // 2) - k) // s + 1 for n in size))
    default = " and the default stride 1" if stride is None else ""
    assert_shape(f"{what}(x) for x of shape {tuple(x.shape)} (padding k // 2{default})", out,
                 shape)
    assert_close(f"{what}(x) for x of shape {tuple(x.shape)}", out, expected, rtol=1e-4,
                 atol=1e-5)


@pytest.mark.points(2)
@pytest.mark.parametrize("stride", [1, 2])
def test_depthwise_separable_module(student, rng, stride):
    """DepthwiseSeparableConv2d: parameter count against the formula, shape, and forward."""
    check_depthwise_separable_module(student, rng, 4, 6, 3, stride)


@pytest.mark.points(1)
def test_depthwise_separable_module_k5_default_stride(student, rng):
    """DepthwiseSeparableConv2d(in, out, 5): padding k // 2 = 2 and the default stride 1
    keep the height and width."""
    check_depthwise_separable_module(student, rng, 3, 5, 5, size=(7, 6))
