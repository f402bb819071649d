"""Hidden checks of Lab 02: normalization layers.

Each check compares the student's code with the reference and with an
independent oracle: torch.nn.functional (batch_norm, layer_norm, group_norm,
instance_norm), torch's autograd in float64, torch.nn.BatchNorm2d, and
numerical gradients. Shapes are random, with N != D, non-square H, W, and
N = 1 for layer norm.

Numerical gradient checks (labkit.checks.eval_numerical_gradient_array,
float64, h = 1e-5) use these relative-error thresholds, about 30x the worst
error of the reference over 100 random shapes of the kind used here
(batch >= 4 rows and layer-norm rows >= 4 features: with 2 rows the output of
batch norm barely depends on x, and dx is rounding noise):

    function                      dx      dgamma  dbeta   (worst reference error)
    batchnorm_backward            1e-5    1e-5    1e-6    (1.7e-7, 1.3e-9, 1.2e-10)
    batchnorm_backward_alt        1e-5    1e-5    1e-6    (1.7e-7, 1.3e-9, 1.2e-10)
    layernorm_backward            1e-5    1e-5    1e-6    (5.2e-8, 8.0e-10, 2.0e-10)
    spatial_batchnorm_backward    1e-5    1e-5    1e-6    (2.4e-7, 4.2e-7, 1e-10)
    spatial_groupnorm_backward    1e-4    1e-5    1e-6    (1.1e-6, 2.2e-7, 1e-10)

The comparisons with torch's autograd are much tighter (rtol 1e-7).
"""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from autograder.checks.isolation import call_unchanged, is_plain_data
from labkit.checks import (
    CheckFailure,
    assert_close,
    assert_raises,
    assert_rel_error,
    assert_shape,
    eval_numerical_gradient_array,
)

GRAD_TOL = {  # (dx, dgamma, dbeta): see the table above
    "batchnorm_backward": (1e-5, 1e-5, 1e-6),
    "batchnorm_backward_alt": (1e-5, 1e-5, 1e-6),
    "layernorm_backward": (1e-5, 1e-5, 1e-6),
    "spatial_batchnorm_backward": (1e-5, 1e-5, 1e-6),
    "spatial_groupnorm_backward": (1e-4, 1e-5, 1e-6),
}
TIGHT = {"rtol": 1e-7, "atol": 1e-10}


def t64(a):
    return torch.tensor(np.asarray(a), dtype=torch.float64)


def features(rng, n, d):
    """(N, D) float64 features with per-feature means and scales that differ."""
    return rng.normal(size=(n, d)) * rng.uniform(0.5, 3.0, size=d) + rng.normal(0, 3, size=d)


def maps(rng, n, c, h, w):
    """(N, C, H, W) float64 activation maps with per-channel means and scales."""
    scale = rng.uniform(0.5, 3.0, size=(1, c, 1, 1))
    shift = rng.normal(0, 3, size=(1, c, 1, 1))
    return rng.normal(size=(n, c, h, w)) * scale + shift


def affine(rng, d):
    return rng.normal(1.0, 0.5, size=d), rng.normal(0.0, 0.5, size=d)


def unpack3(name, result):
    if not isinstance(result, (tuple, list)) or len(result) != 3:
        raise CheckFailure(f"{name} must return a tuple (dx, dgamma, dbeta); got "
                           f"{type(result).__name__}.")
    return result


def unpack2(name, result):
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise CheckFailure(f"{name} must return a tuple (out, cache); got "
                           f"{type(result).__name__}.")
    return result


def fwd(student, name, *args):
    """``student.<name>(*args)``, which must leave x, gamma, beta (and G) as they were; the
    parameter dict may change (train mode updates its running statistics)."""
    names = (("x", "gamma", "beta", "G", "gn_param") if "groupnorm" in name
             else ("x", "gamma", "beta", "bn_param"))
    return call_unchanged(name, getattr(student, name), *args, names=names[:len(args)],
                          may_change=(names[-1],))


def bwd(student, name, dout, cache):
    """``student.<name>(dout, cache)`` on its own copy of the cache; dout must come back as it
    was (a backward pass that scales dout in place changes its caller's gradient)."""
    return call_unchanged(name, getattr(student, name), dout,
                          copy.deepcopy(cache) if is_plain_data(cache) else cache,
                          names=("dout", "cache"), may_change=("cache",))


def torch_grads(fn, x, gamma, beta, dout):
    """dx, dgamma, dbeta of sum(fn(x, gamma, beta) * dout) by torch's autograd (float64)."""
    xt, gt, bt = (t64(a).requires_grad_() for a in (x, gamma, beta))
    fn(xt, gt, bt).backward(t64(dout))
    return xt.grad.numpy(), gt.grad.numpy(), bt.grad.numpy()


def numeric_grads(forward, x, gamma, beta, dout):
    """dx, dgamma, dbeta by centred differences; forward(x, gamma, beta) -> out."""
    x, gamma, beta = x.copy(), gamma.copy(), beta.copy()
    dx = eval_numerical_gradient_array(lambda v: forward(v, gamma, beta), x, dout)
    dg = eval_numerical_gradient_array(lambda v: forward(x, v, beta), gamma, dout)
    db = eval_numerical_gradient_array(lambda v: forward(x, gamma, v), beta, dout)
    return dx, dg, db


def _which_terms(label, checks):
    """Run the comparison of each of dx, dgamma, dbeta; when some fail, one message that
    names the wrong terms (with each one's own message: by how much) and the right ones."""
    wrong, right = [], []
    for what, check in checks:
        try:
            check()
        except CheckFailure as e:
            wrong.append((what, str(e)))
        else:
            right.append(what)
    if wrong:
        terms = [w for w, _ in wrong]
        names = ", ".join(terms[:-1]) + " and " + terms[-1] if len(terms) > 1 else terms[0]
        ok = f" ({' and '.join(right)} {'is' if len(right) == 1 else 'are'} right)" if right else ""
        details = " | ".join(message for _, message in wrong)
        raise CheckFailure(f"{label}: {names} {'is' if len(wrong) == 1 else 'are'} off{ok}. "
                           f"{details}")


def check_grads(label, got, expected, tol):
    _which_terms(label, [
        (what, lambda w=what, g=g, e=e, t=t: assert_rel_error(f"{w}", g, e, max_error=t))
        for what, g, e, t in zip(("dx", "dgamma", "dbeta"), got, expected, tol, strict=True)])


def check_close_grads(label, got, expected, **tol):
    _which_terms(label, [
        (what, lambda w=what, g=g, e=e: assert_close(f"{w}", g, e, **tol))
        for what, g, e in zip(("dx", "dgamma", "dbeta"), got, expected, strict=True)])


# --- batchnorm_forward ---------------------------------------------------------------------


@pytest.mark.points(3)
def test_batchnorm_forward_train_matches_torch(student, reference, rng):
    """batchnorm_forward in train mode: output as torch's batch_norm and the reference."""
    for n, d in ((6, 4), (9, 7), (2, 3)):
        x = features(rng, n, d)
        gamma, beta = affine(rng, d)
        out, _ = unpack2("batchnorm_forward", fwd(student, "batchnorm_forward",
            x, gamma, beta, {"mode": "train"}))
        expected = F.batch_norm(t64(x), None, None, t64(gamma), t64(beta), training=True,
                                eps=1e-5).numpy()
        assert_close(f"batchnorm_forward(x of shape {x.shape}) in train mode", out, expected,
                     **TIGHT)
        ref, _ = reference.batchnorm_forward(x, gamma, beta, {"mode": "train"})
        assert_close(f"batchnorm_forward(x of shape {x.shape}) in train mode", out, ref, **TIGHT)


@pytest.mark.points(1)
def test_batchnorm_forward_output_is_normalized(student, rng):
    """With gamma = 1, beta = 0, each output column has mean 0 and (biased) variance ~1."""
    x = features(rng, 50, 6)
    out, _ = fwd(student, "batchnorm_forward", x, np.ones(6), np.zeros(6), {"mode": "train"})
    assert_close("per-feature mean of batchnorm_forward's output", np.mean(out, axis=0),
                 np.zeros(6), atol=1e-10)
    var = x.var(axis=0)
    assert_close("per-feature variance (np.var, ddof=0) of batchnorm_forward's output",
                 np.var(out, axis=0), var / (var + 1e-5), rtol=1e-9)


@pytest.mark.points(2)
def test_batchnorm_forward_eps_inside_sqrt(student, rng):
    """eps is added to the variance under the square root: visible on a near-constant feature."""
    x = features(rng, 8, 3)
    x[:, 1] = 2.0 + 1e-3 * rng.normal(size=8)  # variance ~1e-6, below eps = 1e-5
    gamma, beta = affine(rng, 3)
    out, _ = fwd(student, "batchnorm_forward", x, gamma, beta, {"mode": "train", "eps": 1e-5})
    expected = F.batch_norm(t64(x), None, None, t64(gamma), t64(beta), training=True,
                            eps=1e-5).numpy()
    assert_close("batchnorm_forward on a feature of variance ~1e-6 (x_hat = (x - mean) / "
                 "sqrt(var + eps))", out, expected, **TIGHT)


@pytest.mark.points(3)
def test_batchnorm_running_statistics_over_steps(student, reference, rng):
    """Running mean and variance after 4 train steps, as torch (momentum 0.3, eps 1e-3)."""
    d = 5
    gamma, beta = affine(rng, d)
    bn_param = {"mode": "train", "momentum": 0.3, "eps": 1e-3}
    ref_param = {"mode": "train", "momentum": 0.3, "eps": 1e-3}
    rm, rv = torch.zeros(d, dtype=torch.float64), torch.ones(d, dtype=torch.float64)
    for step in range(4):
        x = features(rng, 6 + step, d)
        out, _ = fwd(student, "batchnorm_forward", x, gamma, beta, bn_param)
        expected = F.batch_norm(t64(x), rm, rv, t64(gamma), t64(beta), training=True,
                                momentum=0.3, eps=1e-3).numpy()
        reference.batchnorm_forward(x, gamma, beta, ref_param)
        assert_close(f"batchnorm_forward output at train step {step + 1}", out, expected, **TIGHT)
        for key, oracle in (("running_mean", rm), ("running_var", rv)):
            if key not in bn_param:
                raise CheckFailure(f'after a train step, bn_param has no "{key}": store the '
                                   f"running statistics in bn_param.")
            assert_close(f'bn_param["{key}"] after {step + 1} train steps (torch convention: '
                         f"momentum weights the new batch; the running variance is unbiased)",
                         bn_param[key], oracle.numpy(), **TIGHT)
            assert_close(f'bn_param["{key}"] after {step + 1} train steps', bn_param[key],
                         ref_param[key], **TIGHT)


@pytest.mark.points(1)
def test_batchnorm_running_statistics_default_momentum(student, rng):
    """Without "momentum" and "eps" in bn_param, the defaults are torch's (0.1, 1e-5)."""
    x = features(rng, 7, 4)
    gamma, beta = affine(rng, 4)
    bn_param = {"mode": "train"}
    out, _ = fwd(student, "batchnorm_forward", x, gamma, beta, bn_param)
    rm, rv = torch.zeros(4, dtype=torch.float64), torch.ones(4, dtype=torch.float64)
    F.batch_norm(t64(x), rm, rv, t64(gamma), t64(beta), training=True, momentum=0.1, eps=1e-5)
    for key, oracle in (("running_mean", rm), ("running_var", rv)):
        if key not in bn_param:
            raise CheckFailure(f'bn_param has no "{key}" after a train step: create it '
                               f"(zeros for the mean, ones for the variance) and store it.")
        assert_close(f'bn_param["{key}"] after one step with the default momentum 0.1',
                     bn_param[key], oracle.numpy(), **TIGHT)


@pytest.mark.points(1)
def test_batchnorm_running_statistics_updated_in_place(student, rng):
    """The running statistics given in bn_param are updated in place (same arrays)."""
    d = 4
    running_mean, running_var = rng.normal(size=d), rng.uniform(0.5, 2.0, size=d)
    bn_param = {"mode": "train", "running_mean": running_mean, "running_var": running_var}
    x = features(rng, 6, d)
    expected_mean = 0.9 * running_mean + 0.1 * x.mean(axis=0)
    fwd(student, "batchnorm_forward", x, *affine(rng, d), bn_param)
    for key, arr, exp in (("running_mean", running_mean, expected_mean),):
        if bn_param.get(key) is not arr:
            raise CheckFailure(f'bn_param["{key}"] was replaced by a new array: update the '
                               f"array in place (running_mean *= ...; running_mean += ...) like "
                               f"torch's buffers, so that whoever holds it sees the update.")
        assert_close(f'bn_param["{key}"] after one train step', arr, exp, **TIGHT)
    if bn_param.get("running_var") is not running_var:
        raise CheckFailure('bn_param["running_var"] was replaced by a new array: update it in '
                           "place.")


@pytest.mark.points(3)
def test_batchnorm_forward_test_mode(student, reference, rng):
    """Test mode uses the running statistics (torch's training=False) and updates nothing."""
    d = 6
    gamma, beta = affine(rng, d)
    rm, rv = rng.normal(size=d), rng.uniform(0.2, 3.0, size=d)
    bn_param = {"mode": "test", "running_mean": rm.copy(), "running_var": rv.copy(),
                "eps": 1e-4}
    x = features(rng, 5, d)
    out, _ = unpack2("batchnorm_forward",
                     fwd(student, "batchnorm_forward", x, gamma, beta, bn_param))
    expected = F.batch_norm(t64(x), t64(rm), t64(rv), t64(gamma), t64(beta), training=False,
                            eps=1e-4).numpy()
    assert_close("batchnorm_forward in test mode (uses the running statistics)", out, expected,
                 **TIGHT)
    ref, _ = reference.batchnorm_forward(x, gamma, beta, dict(bn_param, running_mean=rm.copy(),
                                                             running_var=rv.copy()))
    assert_close("batchnorm_forward in test mode", out, ref, **TIGHT)
    assert_close('bn_param["running_mean"] after a test-mode call (it must not change)',
                 bn_param["running_mean"], rm)
    assert_close('bn_param["running_var"] after a test-mode call (it must not change)',
                 bn_param["running_var"], rv)
    one, _ = fwd(student, "batchnorm_forward", x[:1], gamma, beta, bn_param)
    assert_close("batchnorm_forward(x[:1]) in test mode (a batch of one)", one, expected[:1],
                 **TIGHT)


@pytest.mark.points(1)
def test_batchnorm_forward_does_not_modify_inputs(student, rng):
    """x, gamma and beta are left unchanged in train and in test mode."""
    x = features(rng, 6, 4)
    gamma, beta = affine(rng, 4)
    before = (x.copy(), gamma.copy(), beta.copy())
    for mode in ("train", "test"):
        fwd(student, "batchnorm_forward", x, gamma, beta, {"mode": mode})
        for name, now, then in zip(("x", "gamma", "beta"), (x, gamma, beta), before, strict=True):
            assert_close(f"{name} after batchnorm_forward in {mode} mode (it must not change)",
                         now, then)


# --- batch norm backward -------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("name", ["batchnorm_backward", "batchnorm_backward_alt"])
def test_batchnorm_backward_numeric(student, rng, name):
    """dx, dgamma, dbeta against numerical gradients (thresholds in this module's docstring)."""
    n, d = 6, 4
    x = features(rng, n, d)
    gamma, beta = affine(rng, d)
    dout = rng.normal(size=(n, d))
    _, cache = fwd(student, "batchnorm_forward", x, gamma, beta, {"mode": "train"})
    got = unpack3(name, bwd(student, name, dout, cache))

    def forward(xx, gg, bb):
        return fwd(student, "batchnorm_forward", xx, gg, bb, {"mode": "train"})[0]

    check_grads(f"{name} vs numerical gradient", got, numeric_grads(forward, x, gamma, beta, dout),
                GRAD_TOL[name])


@pytest.mark.points(3)
@pytest.mark.parametrize("name", ["batchnorm_backward", "batchnorm_backward_alt"])
def test_batchnorm_backward_matches_torch(student, reference, rng, name):
    """dx, dgamma, dbeta as torch's autograd through batch_norm, and as the reference."""
    for n, d in ((8, 5), (4, 9)):
        x = features(rng, n, d)
        gamma, beta = affine(rng, d)
        dout = rng.normal(size=(n, d))
        _, cache = fwd(student, "batchnorm_forward", x, gamma, beta, {"mode": "train"})
        got = unpack3(name, bwd(student, name, dout, cache))
        expected = torch_grads(lambda a, g, b: F.batch_norm(a, None, None, g, b, training=True),
                               x, gamma, beta, dout)
        for what, e in zip(("dx", "dgamma", "dbeta"), expected, strict=True):
            assert_shape(f"{name}: {what}", got[("dx", "dgamma", "dbeta").index(what)], e.shape)
        check_close_grads(f"{name} (x of shape {x.shape}) vs torch", got, expected, **TIGHT)
        _, rcache = reference.batchnorm_forward(x, gamma, beta, {"mode": "train"})
        check_close_grads(f"{name} (x of shape {x.shape})", got,
                          getattr(reference, name)(dout, rcache), **TIGHT)


@pytest.mark.points(1)
def test_batchnorm_backward_alt_equals_graph_version(student, rng):
    """batchnorm_backward and batchnorm_backward_alt agree up to rounding."""
    x = features(rng, 32, 10)
    gamma, beta = affine(rng, 10)
    dout = rng.normal(size=(32, 10))
    _, cache = fwd(student, "batchnorm_forward", x, gamma, beta, {"mode": "train"})
    a = unpack3("batchnorm_backward", bwd(student, "batchnorm_backward", dout, cache))
    b = unpack3("batchnorm_backward_alt", bwd(student, "batchnorm_backward_alt", dout, cache))
    check_close_grads("batchnorm_backward_alt vs batchnorm_backward", b, a, rtol=1e-8,
                      atol=1e-11)


# --- layer norm ----------------------------------------------------------------------------


@pytest.mark.points(3)
def test_layernorm_forward_matches_torch(student, reference, rng):
    """layernorm_forward as torch's layer_norm over the last axis, N = 1 included."""
    for n, d in ((5, 8), (1, 6), (7, 3)):
        x = features(rng, n, d)
        gamma, beta = affine(rng, d)
        eps = 1e-5 if n != 7 else 1e-3
        out, _ = unpack2("layernorm_forward", fwd(student, "layernorm_forward",
            x, gamma, beta, {"eps": eps} if eps != 1e-5 else {}))
        expected = F.layer_norm(t64(x), (d,), t64(gamma), t64(beta), eps=eps).numpy()
        assert_close(f"layernorm_forward(x of shape {x.shape}, eps={eps:g})", out, expected,
                     **TIGHT)
        ref, _ = reference.layernorm_forward(x, gamma, beta, {"eps": eps})
        assert_close(f"layernorm_forward(x of shape {x.shape})", out, ref, **TIGHT)


@pytest.mark.points(1)
def test_layernorm_rows_are_independent(student, rng):
    """Each row is normalized with its own statistics: row i alone gives the same output."""
    x = features(rng, 6, 5)
    gamma, beta = affine(rng, 5)
    whole, _ = fwd(student, "layernorm_forward", x, gamma, beta, {})
    for i in (0, 4):
        alone, _ = fwd(student, "layernorm_forward", x[i : i + 1], gamma, beta, {})
        assert_close(f"layernorm_forward(x[{i}:{i + 1}]) vs layernorm_forward(x)[{i}:{i + 1}] "
                     "(statistics over the features of each sample, never over the batch)",
                     alone, whole[i : i + 1], **TIGHT)


@pytest.mark.points(3)
def test_layernorm_backward(student, reference, rng):
    """layernorm_backward against numerical gradients, torch's autograd and the reference."""
    for n, d in ((4, 6), (1, 5)):
        x = features(rng, n, d)
        gamma, beta = affine(rng, d)
        dout = rng.normal(size=(n, d))
        _, cache = fwd(student, "layernorm_forward", x, gamma, beta, {})
        got = unpack3("layernorm_backward", bwd(student, "layernorm_backward", dout, cache))

        def forward(xx, gg, bb):
            return fwd(student, "layernorm_forward", xx, gg, bb, {})[0]

        label = f"layernorm_backward (x of shape {x.shape})"
        check_grads(f"{label} vs numerical gradient", got,
                    numeric_grads(forward, x, gamma, beta, dout), GRAD_TOL["layernorm_backward"])
        expected = torch_grads(lambda a, g, b, d=d: F.layer_norm(a, (d,), g, b), x, gamma, beta,
                               dout)
        check_close_grads(f"{label} vs torch", got, expected, **TIGHT)
        _, rcache = reference.layernorm_forward(x, gamma, beta, {})
        check_close_grads(label, got, reference.layernorm_backward(dout, rcache), **TIGHT)


@pytest.mark.points(1)
def test_layernorm_does_not_modify_inputs(student, rng):
    """layernorm_forward and layernorm_backward leave their inputs unchanged."""
    x = features(rng, 3, 5)
    gamma, beta = affine(rng, 5)
    dout = rng.normal(size=(3, 5))
    before = [a.copy() for a in (x, gamma, beta, dout)]
    _, cache = fwd(student, "layernorm_forward", x, gamma, beta, {})
    bwd(student, "layernorm_backward", dout, cache)
    for name, now, then in zip(("x", "gamma", "beta", "dout"), (x, gamma, beta, dout), before,
                               strict=True):
        assert_close(f"{name} after layernorm_forward/backward (it must not change)", now, then)


# --- spatial batch norm --------------------------------------------------------------------


@pytest.mark.points(3)
def test_spatial_batchnorm_forward_train_matches_torch(student, reference, rng):
    """spatial_batchnorm_forward in train mode: output and running statistics as torch's."""
    n, c, h, w = 3, 4, 5, 2
    gamma, beta = affine(rng, c)
    bn_param = {"mode": "train", "momentum": 0.2}
    ref_param = {"mode": "train", "momentum": 0.2}
    rm, rv = torch.zeros(c, dtype=torch.float64), torch.ones(c, dtype=torch.float64)
    for step in range(3):
        x = maps(rng, n, c, h, w)
        out, _ = unpack2("spatial_batchnorm_forward",
                         fwd(student, "spatial_batchnorm_forward", x, gamma, beta, bn_param))
        expected = F.batch_norm(t64(x), rm, rv, t64(gamma), t64(beta), training=True,
                                momentum=0.2, eps=1e-5).numpy()
        assert_close(f"spatial_batchnorm_forward(x of shape {x.shape}), train step {step + 1}",
                     out, expected, **TIGHT)
        ref, _ = reference.spatial_batchnorm_forward(x, gamma, beta, ref_param)
        assert_close(f"spatial_batchnorm_forward(x of shape {x.shape})", out, ref, **TIGHT)
        for key, oracle in (("running_mean", rm), ("running_var", rv)):
            assert_close(f'spatial batch norm: bn_param["{key}"] after {step + 1} train steps '
                         f"(one value per channel)", bn_param.get(key), oracle.numpy(), **TIGHT)


@pytest.mark.points(2)
def test_spatial_batchnorm_forward_test_mode(student, rng):
    """spatial_batchnorm_forward in test mode uses the running statistics, per channel."""
    n, c, h, w = 2, 3, 4, 6
    gamma, beta = affine(rng, c)
    rm, rv = rng.normal(size=c), rng.uniform(0.2, 3.0, size=c)
    x = maps(rng, n, c, h, w)
    bn_param = {"mode": "test", "running_mean": rm.copy(), "running_var": rv.copy()}
    out, _ = fwd(student, "spatial_batchnorm_forward", x, gamma, beta, bn_param)
    expected = F.batch_norm(t64(x), t64(rm), t64(rv), t64(gamma), t64(beta),
                            training=False).numpy()
    assert_close("spatial_batchnorm_forward in test mode", out, expected, **TIGHT)


@pytest.mark.points(3)
def test_spatial_batchnorm_backward(student, reference, rng):
    """spatial_batchnorm_backward against numerical gradients, torch's autograd, the reference."""
    n, c, h, w = 2, 3, 4, 3
    x = maps(rng, n, c, h, w)
    gamma, beta = affine(rng, c)
    dout = rng.normal(size=x.shape)
    _, cache = fwd(student, "spatial_batchnorm_forward", x, gamma, beta, {"mode": "train"})
    got = unpack3("spatial_batchnorm_backward",
                  bwd(student, "spatial_batchnorm_backward", dout, cache))

    def forward(xx, gg, bb):
        return fwd(student, "spatial_batchnorm_forward", xx, gg, bb, {"mode": "train"})[0]

    label = f"spatial_batchnorm_backward (x of shape {x.shape})"
    check_grads(f"{label} vs numerical gradient", got,
                numeric_grads(forward, x, gamma, beta, dout),
                GRAD_TOL["spatial_batchnorm_backward"])
    expected = torch_grads(lambda a, g, b: F.batch_norm(a, None, None, g, b, training=True),
                           x, gamma, beta, dout)
    check_close_grads(f"{label} vs torch", got, expected, **TIGHT)
    _, rcache = reference.spatial_batchnorm_forward(x, gamma, beta, {"mode": "train"})
    check_close_grads(label, got, reference.spatial_batchnorm_backward(dout, rcache), **TIGHT)


@pytest.mark.points(1)
def test_spatial_batchnorm_does_not_modify_inputs(student, rng):
    """spatial_batchnorm_forward/backward leave x, gamma, beta and dout unchanged."""
    x = maps(rng, 2, 3, 3, 4)
    gamma, beta = affine(rng, 3)
    dout = rng.normal(size=x.shape)
    before = [a.copy() for a in (x, gamma, beta, dout)]
    _, cache = fwd(student, "spatial_batchnorm_forward", x, gamma, beta, {"mode": "train"})
    bwd(student, "spatial_batchnorm_backward", dout, cache)
    for name, now, then in zip(("x", "gamma", "beta", "dout"), (x, gamma, beta, dout), before,
                               strict=True):
        assert_close(f"{name} after spatial_batchnorm_forward/backward (it must not change)",
                     now, then)


# --- group norm ----------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("G", [1, 3, 6])
def test_spatial_groupnorm_forward_matches_torch(student, reference, rng, G):
    """spatial_groupnorm_forward as torch's group_norm (G = 1: layer norm, G = C: instance)."""
    n, c, h, w = 3, 6, 4, 5
    x = maps(rng, n, c, h, w)
    gamma, beta = affine(rng, c)
    out, _ = unpack2("spatial_groupnorm_forward",
                     fwd(student, "spatial_groupnorm_forward", x, gamma, beta, G, {}))
    expected = F.group_norm(t64(x), G, t64(gamma), t64(beta), eps=1e-5).numpy()
    assert_close(f"spatial_groupnorm_forward(x of shape {x.shape}, G={G}) (group g holds the "
                 f"consecutive channels g*C//G ... (g+1)*C//G - 1)", out, expected, **TIGHT)
    ref, _ = reference.spatial_groupnorm_forward(x, gamma, beta, G, {})
    assert_close(f"spatial_groupnorm_forward(x of shape {x.shape}, G={G})", out, ref, **TIGHT)
    if G == c:
        inst = F.instance_norm(t64(x), weight=t64(gamma), bias=t64(beta), eps=1e-5).numpy()
        assert_close("spatial_groupnorm_forward with G = C vs torch's instance_norm", out, inst,
                     **TIGHT)


@pytest.mark.points(1)
def test_spatial_groupnorm_forward_eps(student, rng):
    """gn_param["eps"] is used, inside the square root."""
    x = maps(rng, 2, 4, 3, 3)
    x[:, :2] = 1.0 + 1e-3 * rng.normal(size=(2, 2, 3, 3))  # a near-constant group
    gamma, beta = affine(rng, 4)
    out, _ = fwd(student, "spatial_groupnorm_forward", x, gamma, beta, 2, {"eps": 1e-4})
    expected = F.group_norm(t64(x), 2, t64(gamma), t64(beta), eps=1e-4).numpy()
    assert_close('spatial_groupnorm_forward with gn_param = {"eps": 1e-4}', out, expected,
                 **TIGHT)


@pytest.mark.points(1)
def test_spatial_groupnorm_rejects_bad_G(student, rng):
    """A number of groups that does not divide C raises ValueError."""
    x = maps(rng, 2, 6, 3, 3)
    gamma, beta = affine(rng, 6)
    assert_raises("spatial_groupnorm_forward with C = 6 and G = 4", ValueError,
                  student.spatial_groupnorm_forward, x, gamma, beta, 4, {})


@pytest.mark.points(1)
def test_spatial_groupnorm_rejects_G_even_when_the_reshape_works(student, rng):
    """G = 4 with C = 6 on 2 x 2 maps (x.reshape(N, 4, -1) succeeds there), and G = 0,
    raise ValueError: check that G divides C, do not rely on the reshape failing."""
    x = maps(rng, 2, 6, 2, 2)
    gamma, beta = affine(rng, 6)
    assert_raises("spatial_groupnorm_forward with C = 6, G = 4 and 2 x 2 maps (24 numbers "
                  "per image, which reshape to (4, 6) without complaint)", ValueError,
                  student.spatial_groupnorm_forward, x, gamma, beta, 4, {})
    assert_raises("spatial_groupnorm_forward with G = 0", ValueError,
                  student.spatial_groupnorm_forward, x, gamma, beta, 0, {})


@pytest.mark.points(3)
@pytest.mark.parametrize("G", [2, 4])
def test_spatial_groupnorm_backward(student, reference, rng, G):
    """spatial_groupnorm_backward against numerical gradients, torch's autograd, the reference."""
    n, c, h, w = 2, 4, 3, 2
    x = maps(rng, n, c, h, w)
    gamma, beta = affine(rng, c)
    dout = rng.normal(size=x.shape)
    _, cache = fwd(student, "spatial_groupnorm_forward", x, gamma, beta, G, {})
    got = unpack3("spatial_groupnorm_backward",
                  bwd(student, "spatial_groupnorm_backward", dout, cache))

    def forward(xx, gg, bb):
        return fwd(student, "spatial_groupnorm_forward", xx, gg, bb, G, {})[0]

    label = f"spatial_groupnorm_backward (x of shape {x.shape}, G={G})"
    check_grads(f"{label} vs numerical gradient", got,
                numeric_grads(forward, x, gamma, beta, dout),
                GRAD_TOL["spatial_groupnorm_backward"])
    expected = torch_grads(lambda a, g, b: F.group_norm(a, G, g, b), x, gamma, beta, dout)
    check_close_grads(f"{label} vs torch", got, expected, **TIGHT)
    _, rcache = reference.spatial_groupnorm_forward(x, gamma, beta, G, {})
    check_close_grads(label, got, reference.spatial_groupnorm_backward(dout, rcache), **TIGHT)


@pytest.mark.points(1)
def test_spatial_groupnorm_does_not_modify_inputs(student, rng):
    """spatial_groupnorm_forward/backward leave x, gamma, beta and dout unchanged."""
    x = maps(rng, 2, 4, 3, 2)
    gamma, beta = affine(rng, 4)
    dout = rng.normal(size=x.shape)
    before = [a.copy() for a in (x, gamma, beta, dout)]
    _, cache = fwd(student, "spatial_groupnorm_forward", x, gamma, beta, 2, {})
    bwd(student, "spatial_groupnorm_backward", dout, cache)
    for name, now, then in zip(("x", "gamma", "beta", "dout"), (x, gamma, beta, dout), before,
                               strict=True):
        assert_close(f"{name} after spatial_groupnorm_forward/backward (it must not change)",
                     now, then)


# --- BatchNorm2d ---------------------------------------------------------------------------


def twin_modules(student, c, eps=1e-5, momentum=0.1, seed=0):
    """The student's BatchNorm2d and torch's, float64, with the same random weight and bias."""
    ours = student.BatchNorm2d(c, eps=eps, momentum=momentum)
    theirs = torch.nn.BatchNorm2d(c, eps=eps, momentum=momentum)
    for m in (ours, theirs):
        m.double()
    params = dict(ours.named_parameters())
    if sorted(params) != ["bias", "weight"]:
        raise CheckFailure(f"BatchNorm2d's parameters must be exactly `weight` and `bias` "
                           f"(torch.nn.Parameter of shape (C,)); got {sorted(params)}.")
    gen = torch.Generator().manual_seed(seed)
    w = 1.0 + 0.5 * torch.randn(c, generator=gen, dtype=torch.float64)
    b = 0.5 * torch.randn(c, generator=gen, dtype=torch.float64)
    # Through a call, not ``ours.weight.copy_(w)``: under the sandbox, ``ours.weight`` is a
    # copy of the student's parameter, and changing a copy changes nothing in their module.
    for m in (ours, theirs):
        m.load_state_dict({"weight": w, "bias": b}, strict=False)
    return ours, theirs


@pytest.mark.points(1)
def test_batchnorm2d_parameters_and_buffers(student):
    """weight (ones) and bias (zeros) are parameters; running_mean, running_var buffers."""
    m = student.BatchNorm2d(5)
    params = dict(m.named_parameters())
    buffers = dict(m.named_buffers())
    if sorted(params) != ["bias", "weight"]:
        raise CheckFailure(f"BatchNorm2d(5)'s parameters must be exactly `weight` and `bias` "
                           f"(torch.nn.Parameter); got {sorted(params)}.")
    for name in ("running_mean", "running_var"):
        if name not in buffers:
            raise CheckFailure(f"BatchNorm2d(5) has no buffer `{name}`: create it with "
                               f"self.register_buffer({name!r}, ...); buffers: {sorted(buffers)}.")
    for name, value, expected in (("weight", params["weight"], torch.ones(5)),
                                  ("bias", params["bias"], torch.zeros(5)),
                                  ("running_mean", buffers["running_mean"], torch.zeros(5)),
                                  ("running_var", buffers["running_var"], torch.ones(5))):
        assert_close(f"BatchNorm2d(5).{name} at creation", value, expected)


@pytest.mark.points(4)
@pytest.mark.timeout(20)
def test_batchnorm2d_train_matches_torch(student, rng):
    """Train mode, 3 steps: outputs, running statistics, gradients as torch.nn.BatchNorm2d."""
    c = 4
    ours, theirs = twin_modules(student, c, eps=1e-4, momentum=0.25, seed=int(rng.integers(1e6)))
    ours.train()
    theirs.train()
    for step in range(3):
        x = t64(maps(rng, 3, c, 5, 3))
        dout = t64(rng.normal(size=x.shape))
        xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
        out_a, out_b = ours(xa), theirs(xb)
        assert_close(f"BatchNorm2d output in train mode, step {step + 1}", out_a, out_b, **TIGHT)
        out_a.backward(dout)
        out_b.backward(dout)
        assert_close(f"BatchNorm2d: gradient of x, step {step + 1}", xa.grad, xb.grad, **TIGHT)
        for name in ("running_mean", "running_var"):
            assert_close(f"BatchNorm2d.{name} after {step + 1} train steps (momentum weights the "
                         f"new batch; unbiased running variance)", getattr(ours, name),
                         getattr(theirs, name), **TIGHT)
            if getattr(getattr(ours, name), "requires_grad", False):
                raise CheckFailure(f"BatchNorm2d.{name} requires grad after a train step: update "
                                   f"the running statistics under torch.no_grad(), in place.")
    for name in ("weight", "bias"):
        g = getattr(ours, name).grad
        if g is None:
            raise CheckFailure(f"BatchNorm2d.{name}.grad is None after backward: use the "
                               f"parameter in forward.")
        assert_close(f"BatchNorm2d.{name}.grad accumulated over 3 steps", g,
                     getattr(theirs, name).grad, **TIGHT)


@pytest.mark.points(1)
def test_batchnorm2d_default_eps_and_momentum(student, rng):
    """BatchNorm2d(C) with its defaults (eps 1e-5, momentum 0.1) against torch's, 2 steps."""
    c = 3
    ours, theirs = student.BatchNorm2d(c), torch.nn.BatchNorm2d(c)
    for m in (ours, theirs):
        m.double()
        m.train()
    for step in range(2):
        # A small spread, so that eps matters next to the variance.
        x = t64(0.01 * maps(rng, 4, c, 3, 5) + 1.0)
        assert_close(f"BatchNorm2d({c}) output, train step {step + 1} (default eps 1e-5)",
                     ours(x), theirs(x), **TIGHT)
        for name in ("running_mean", "running_var"):
            assert_close(f"BatchNorm2d({c}).{name} after {step + 1} train steps (the default "
                         f"momentum is 0.1, torch's convention: 0.1 weights the new batch)",
                         getattr(ours, name), getattr(theirs, name), **TIGHT)


@pytest.mark.points(3)
def test_batchnorm2d_eval_matches_torch(student, rng):
    """Eval mode uses the running statistics, changes none, and matches torch."""
    c = 3
    ours, theirs = twin_modules(student, c, seed=int(rng.integers(1e6)))
    for _ in range(2):
        x = t64(maps(rng, 4, c, 3, 5))
        ours.train()(x)
        theirs.train()(x)
    ours.eval()
    theirs.eval()
    before = {k: getattr(theirs, k).clone() for k in ("running_mean", "running_var")}
    x = t64(maps(rng, 2, c, 3, 5))
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    out_a, out_b = ours(xa), theirs(xb)
    assert_close("BatchNorm2d output in eval mode", out_a, out_b, **TIGHT)
    one = ours(x[:1])
    assert_close("BatchNorm2d output in eval mode on a batch of one", one, out_b[:1], **TIGHT)
    for name, value in before.items():
        assert_close(f"BatchNorm2d.{name} after eval-mode calls (it must not change)",
                     getattr(ours, name), value, **TIGHT)
    dout = t64(rng.normal(size=x.shape))
    out_a.backward(dout)
    out_b.backward(dout)
    assert_close("BatchNorm2d: gradient of x in eval mode", xa.grad, xb.grad, **TIGHT)


@pytest.mark.points(1)
def test_batchnorm2d_float32_default(student, rng):
    """A fresh BatchNorm2d works on float32 inputs, as a layer of a CNN does."""
    m = student.BatchNorm2d(3)
    x = torch.tensor(maps(rng, 4, 3, 4, 4), dtype=torch.float32)
    out = m(x)
    expected = torch.nn.BatchNorm2d(3)(x)
    if getattr(out, "dtype", None) != torch.float32:
        raise CheckFailure(f"BatchNorm2d on float32 input must return float32; got "
                           f"{getattr(out, 'dtype', type(out).__name__)}.")
    assert_close("BatchNorm2d(3) on float32 input", out, expected, rtol=1e-4, atol=1e-5)
