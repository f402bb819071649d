"""Numerical checks used by the labs' visible checks and by the grader.

Everything here is safe to hand to students: it compares numbers, it never
knows the answer of a lab.

- ``rel_error(a, b)``: the course's relative error,
  ``max(|a - b| / max(1e-8, |a| + |b|))``.
- ``eval_numerical_gradient(f, x)``: the gradient of a scalar function by
  centred differences.
- ``eval_numerical_gradient_array(f, x, df)``: the gradient of ``sum(f(x) * df)``,
  that is, what a backward pass returns for the upstream gradient ``df``.
- ``assert_shape``, ``assert_close``, ``assert_rel_error``, ``assert_raises``: assertions whose
  message says which quantity is wrong, its expected and actual shapes and
  dtypes, and how large and where the largest error is.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "CheckFailure",
    "assert_close",
    "assert_raises",
    "assert_rel_error",
    "assert_shape",
    "eval_numerical_gradient",
    "eval_numerical_gradient_array",
    "rel_error",
]


class CheckFailure(AssertionError):
    """A visible or hidden check failed; the message says what to fix."""


def _to_numpy(a):
    """Return ``a`` as a numpy array (torch tensors are detached and moved to the CPU).
    Raises CheckFailure when ``a`` is not numbers (an object array would compare wrongly)."""
    if hasattr(a, "detach") and hasattr(a, "cpu"):
        a = a.detach().cpu().numpy()
    out = np.asarray(a)
    if out.dtype == object:
        raise CheckFailure(f"expected numbers (a numpy array, a tensor or a number), got "
                           f"{type(a).__name__!s:.80}.")
    return out


def rel_error(a, b):
    """Maximum relative error between two arrays.

    Inputs:
    - a, b: arrays (or tensors, or numbers) of the same shape.

    Returns:
    - float: max(|a - b| / max(1e-8, |a| + |b|)) over all elements. About
      1e-7 or less means "equal up to rounding" in float64.
    """
    a = _to_numpy(a).astype(np.float64)
    b = _to_numpy(b).astype(np.float64)
    if a.size == 0 and b.size == 0:
        return 0.0
    return float(np.max(np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b))))


def eval_numerical_gradient(f, x, h=1e-5):
    """Numerical gradient of a scalar function by centred differences.

    Inputs:
    - f: function of one argument returning a number; f is called with x
      itself, modified in place one element at a time (x is restored).
    - x: float64 numpy array, the point at which to take the gradient.
    - h: step size.

    Returns:
    - grad: array of the shape of x, grad[i] = (f(x + h e_i) - f(x - h e_i)) / (2h).
    """
    x = _check_float64("x", x)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        fxph = float(f(x))
        x[ix] = old - h
        fxmh = float(f(x))
        x[ix] = old
        grad[ix] = (fxph - fxmh) / (2 * h)
        it.iternext()
    return grad


def eval_numerical_gradient_array(f, x, df, h=1e-5):
    """Numerical gradient of an array-valued function, given the upstream gradient.

    This is what a backward pass computes: the gradient of sum(f(x) * df)
    with respect to x.

    Inputs:
    - f: function of one argument returning an array; called with x itself,
      modified in place one element at a time (x is restored).
    - x: float64 numpy array.
    - df: upstream gradient, same shape as f(x).
    - h: step size.

    Returns:
    - grad: array of the shape of x.
    """
    x = _check_float64("x", x)
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"], op_flags=["readwrite"])
    while not it.finished:
        ix = it.multi_index
        old = x[ix]
        x[ix] = old + h
        pos = np.array(f(x), dtype=np.float64, copy=True)
        x[ix] = old - h
        neg = np.array(f(x), dtype=np.float64, copy=True)
        x[ix] = old
        grad[ix] = np.sum((pos - neg) * df) / (2 * h)
        it.iternext()
    return grad


def _check_float64(name, x):
    if not isinstance(x, np.ndarray) or x.dtype != np.float64:
        raise TypeError(
            f"{name} must be a float64 numpy array (finite differences in float32 are "
            f"too coarse); got {type(x).__name__} with dtype {getattr(x, 'dtype', None)}. "
            f"Use x.astype(np.float64)."
        )
    return x


def _describe(a):
    return f"shape {tuple(a.shape)}, dtype {a.dtype}"


def assert_shape(name, actual, expected_shape):
    """Fail unless ``actual`` has shape ``expected_shape``.

    Inputs:
    - name: what the quantity is, for the message (e.g. "mean_image(x)").
    - actual: array or tensor.
    - expected_shape: tuple of ints.
    """
    if actual is None:
        raise CheckFailure(f"{name} is None: did you forget a `return`?")
    shape = tuple(getattr(actual, "shape", np.shape(actual)))
    if shape != tuple(expected_shape):
        raise CheckFailure(
            f"{name} has shape {shape}, expected {tuple(expected_shape)}."
        )


def _largest_error(actual, expected):
    """Return (abs error, index, actual value, expected value) at the worst element."""
    diff = np.abs(actual.astype(np.float64) - expected.astype(np.float64))
    diff = np.where(np.isnan(diff), np.inf, diff)
    idx = np.unravel_index(int(np.argmax(diff)), diff.shape) if diff.size else ()
    return float(diff[idx]) if diff.size else 0.0, idx, actual[idx], expected[idx]


def assert_close(name, actual, expected, rtol=1e-6, atol=1e-8, check_dtype=False):
    """Fail unless ``actual`` equals ``expected`` within tolerances (numpy.allclose rule).

    Inputs:
    - name: what the quantity is, for the message.
    - actual: array, tensor or number (the value under test).
    - expected: array, tensor or number (the value it should have).
    - rtol, atol: |actual - expected| <= atol + rtol * |expected| everywhere.
    - check_dtype: also require the same dtype.

    The message gives both shapes and dtypes, and the size and the index of
    the largest error with the two values there.
    """
    if actual is None:
        raise CheckFailure(f"{name} is None: did you forget a `return`?")
    if check_dtype and isinstance(expected, np.ndarray) and not isinstance(actual, np.ndarray):
        raise CheckFailure(f"{name}: expected a numpy array, got {type(actual).__name__}.")
    a, e = _to_numpy(actual), _to_numpy(expected)
    if a.shape != e.shape:
        raise CheckFailure(
            f"{name}: wrong shape. Expected {_describe(e)}; got {_describe(a)}."
        )
    if check_dtype and a.dtype != e.dtype:
        raise CheckFailure(f"{name}: wrong dtype. Expected {_describe(e)}; got {_describe(a)}.")
    if not np.issubdtype(a.dtype, np.number) and a.dtype != np.bool_:
        raise CheckFailure(f"{name}: expected numbers, got an array of {a.dtype}.")
    if np.allclose(a, e, rtol=rtol, atol=atol, equal_nan=False) and not np.isnan(a).any():
        return
    err, idx, av, ev = _largest_error(a, e)
    n_bad = int(np.sum(~np.isclose(a, e, rtol=rtol, atol=atol)))
    raise CheckFailure(
        f"{name}: values differ ({_describe(a)}). {n_bad} of {a.size} elements are off; "
        f"largest error {err:.3g} at index {tuple(int(i) for i in idx)}: "
        f"got {av!r}, expected {ev!r} (tolerance rtol={rtol:g}, atol={atol:g})."
    )


def assert_rel_error(name, actual, expected, max_error=1e-7):
    """Fail unless ``rel_error(actual, expected) <= max_error``, with a clear message.

    Used for gradients, where the course's relative error is the usual measure.
    """
    if actual is None:
        raise CheckFailure(f"{name} is None: did you forget a `return`?")
    a, e = _to_numpy(actual), _to_numpy(expected)
    if a.shape != e.shape:
        raise CheckFailure(
            f"{name}: wrong shape. Expected {_describe(e)}; got {_describe(a)}."
        )
    err = rel_error(a, e)
    if err <= max_error and not np.isnan(a).any():
        return
    rel = np.abs(a - e) / np.maximum(1e-8, np.abs(a) + np.abs(e))
    rel = np.where(np.isnan(rel), np.inf, rel)
    idx = np.unravel_index(int(np.argmax(rel)), rel.shape) if rel.size else ()
    raise CheckFailure(
        f"{name}: relative error {err:.3g} exceeds {max_error:g} ({_describe(a)}); "
        f"worst at index {tuple(int(i) for i in idx)}: got {a[idx]!r}, expected {e[idx]!r}."
    )


def assert_raises(what, exceptions, func, *args, **kwargs):
    """Fail unless ``func(*args, **kwargs)`` raises one of ``exceptions``.

    Inputs:
    - what: the situation, for the message (e.g. "transform before fit").
    - exceptions: an exception class or a tuple of them.
    - func, args, kwargs: the call to make.

    Returns:
    - the exception raised, so its message can be looked at.
    """
    names = " or ".join(e.__name__ for e in (exceptions if isinstance(exceptions, tuple)
                                             else (exceptions,)))
    try:
        func(*args, **kwargs)
    except exceptions as e:
        return e
    except NotImplementedError:
        raise  # reported as "not written yet"
    except Exception as e:
        raise CheckFailure(
            f"{what} should raise {names}; it raised {type(e).__name__}: {e}"
        ) from None
    raise CheckFailure(f"{what} should raise {names}; it returned normally.")
