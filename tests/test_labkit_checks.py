"""labkit.checks: the gradient helpers against analytic gradients, and the
messages of the assertion helpers."""

import numpy as np
import pytest
import torch

from labkit.checks import (
    CheckFailure,
    assert_close,
    assert_raises,
    assert_rel_error,
    assert_shape,
    eval_numerical_gradient,
    eval_numerical_gradient_array,
    rel_error,
)


def test_rel_error_definition():
    a = np.array([1.0, 2.0, 0.0])
    b = np.array([1.0, 2.2, 0.0])
    # max(|a-b| / max(1e-8, |a|+|b|)) = 0.2 / 4.2, worked out by hand
    assert rel_error(a, b) == pytest.approx(0.2 / 4.2)
    assert rel_error(np.zeros(3), np.zeros(3)) == 0.0
    assert rel_error(np.array([1e-9]), np.array([0.0])) == pytest.approx(0.1)


def test_numerical_gradient_of_a_quadratic():
    rng = np.random.default_rng(0)
    a = rng.standard_normal((4, 3))
    x = rng.standard_normal((4, 3))
    x0 = x.copy()
    grad = eval_numerical_gradient(lambda v: np.sum(a * v**2), x)
    assert rel_error(grad, 2 * a * x0) < 1e-8
    np.testing.assert_array_equal(x, x0)  # x is restored


def test_numerical_gradient_array_matches_autograd():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 5))
    w = rng.standard_normal((5, 2))
    df = rng.standard_normal((3, 2))
    grad = eval_numerical_gradient_array(lambda v: np.tanh(v @ w), x, df)
    xt = torch.tensor(x, requires_grad=True)
    torch.tanh(xt @ torch.tensor(w)).backward(torch.tensor(df))
    assert rel_error(grad, xt.grad.numpy()) < 1e-8


def test_numerical_gradient_refuses_float32():
    with pytest.raises(TypeError, match="float64"):
        eval_numerical_gradient(lambda v: v.sum(), np.ones(3, dtype=np.float32))


def test_assert_close_message_names_quantity_shapes_and_worst_error():
    expected = np.zeros((2, 3))
    actual = expected.copy()
    actual[1, 2] = 0.5
    with pytest.raises(CheckFailure) as e:
        assert_close("dx", actual, expected)
    message = str(e.value)
    assert "dx" in message and "(2, 3)" in message and "float64" in message
    assert "(1, 2)" in message and "0.5" in message and "1 of 6" in message


def test_assert_close_shape_and_dtype_mismatch():
    with pytest.raises(CheckFailure, match=r"wrong shape.*\(3,\).*\(3, 1\)"):
        assert_close("out", np.zeros((3, 1)), np.zeros(3))
    with pytest.raises(CheckFailure, match="wrong dtype"):
        assert_close("out", np.zeros(3, np.float32), np.zeros(3), check_dtype=True)
    with pytest.raises(CheckFailure, match="return"):
        assert_close("out", None, np.zeros(3))
    assert_close("out", np.ones(3) + 1e-12, np.ones(3))


def test_assert_close_rejects_nan():
    with pytest.raises(CheckFailure):
        assert_close("out", np.array([np.nan]), np.array([np.nan]))


def test_assert_rel_error_and_shape():
    assert_rel_error("dw", np.ones(3), np.ones(3) * (1 + 1e-9))
    with pytest.raises(CheckFailure, match=r"dw: relative error .* index \(2,\)"):
        assert_rel_error("dw", np.array([1.0, 1.0, 1.1]), np.ones(3))
    assert_shape("out", np.zeros((2, 3)), (2, 3))
    with pytest.raises(CheckFailure, match=r"\(3, 2\), expected \(2, 3\)"):
        assert_shape("out", np.zeros((3, 2)), (2, 3))


def test_assert_raises():
    def boom():
        raise ValueError("bad")

    assert isinstance(assert_raises("boom", ValueError, boom), ValueError)
    with pytest.raises(CheckFailure, match="returned normally"):
        assert_raises("no boom", ValueError, lambda: None)
    with pytest.raises(CheckFailure, match="raised ValueError"):
        assert_raises("wrong error", RuntimeError, boom)
