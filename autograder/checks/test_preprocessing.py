"""Hidden checks of Lab 01: input preprocessing.

Each check compares the student's code with the reference (and, where one
exists, with an independent oracle: numpy or torch computed here, or values
worked out by hand) on inputs it makes from its seeded ``rng``. Every check
is shown to fail on the stubs and on at least one mutant by the selfcheck.

Every promise of the docstrings has a check: each dtype ("any numeric dtype":
unsigned, signed and float inputs, float32 included, whose mean numpy would keep
in float32), shapes that differ in every axis (a batch of one, 1 and 4 channels,
odd and non-square sizes), re-fitting, the errors and what their messages must
say. The student and the reference get their own copies of every input
(``isolation.call_both``), and a student call that changes its input is named.
"""

import re

import numpy as np
import pytest
import torch

from autograder.checks.isolation import call_both, call_unchanged
from labkit.checks import CheckFailure, assert_close, assert_raises

MODES = ("mean_image", "channel_mean", "standardize")
STATISTICS = ("mean_image", "channel_mean", "channel_std")
# Shapes that differ from the usual (N, 3, H, W) in every axis.
OTHER_SHAPES = [(1, 3, 5, 4), (7, 1, 3, 3), (4, 4, 7, 3)]


def images(rng, n=6, c=3, h=5, w=4):
    """Random uint8 images (N, C, H, W), non-square, with per-channel offsets
    so that channel statistics differ."""
    base = rng.integers(0, 160, size=(n, c, h, w))
    offset = rng.integers(0, 90, size=(1, c, 1, 1))
    return (base + offset).astype(np.uint8)


def statistic(student, reference, name, x):
    """The student's and the reference's ``name(x)``, each on its own copy of x."""
    return call_both(name, getattr(student, name), getattr(reference, name), x, names=("x",))


# --- statistics ----------------------------------------------------------------------------


@pytest.mark.points(1)
def test_mean_image_by_hand(student):
    """mean_image on three 1x2x2 images worked out by hand."""
    x = np.array([[[[0, 255], [20, 3]]], [[[6, 255], [40, 4]]], [[[9, 254], [0, 4]]]],
                 dtype=np.uint8)
    # Pixel by pixel: (0 + 6 + 9) / 3 = 5, (255 + 255 + 254) / 3 = 764 / 3 (a uint8 sum
    # overflows), (20 + 40 + 0) / 3 = 20, (3 + 4 + 4) / 3 = 11 / 3 (not an integer).
    expected = np.array([[[15.0, 764.0], [60.0, 11.0]]]) / 3
    assert_close("mean_image(x)", call_unchanged("mean_image", student.mean_image, x,
                                                 names=("x",)), expected, check_dtype=True)


@pytest.mark.points(2)
def test_mean_image_matches_reference(student, reference, rng):
    """mean_image of random uint8 images: shape (C, H, W), float64, exact values."""
    x = images(rng, n=40, c=3, h=5, w=7)
    x[:, :, 0, 0] = 255  # a column of saturated pixels: a uint8 sum overflows here
    theirs, ours = statistic(student, reference, "mean_image", x)
    assert_close("mean_image(x)", theirs, ours, check_dtype=True)


@pytest.mark.points(1)
def test_channel_mean_by_hand(student):
    """channel_mean on images whose channels are constant: the constants come back."""
    x = np.zeros((3, 2, 4, 5), dtype=np.uint8)
    x[:, 0] = 7
    x[:, 1] = 200
    x[1, 1] = 100  # one image differs: channel 1's mean is (200 + 100 + 200) / 3
    assert_close("channel_mean(x)", call_unchanged("channel_mean", student.channel_mean, x,
                                                   names=("x",)),
                 np.array([7.0, 500.0 / 3]), check_dtype=True)


@pytest.mark.points(2)
def test_channel_mean_matches_torch(student, rng):
    """channel_mean of random images equals torch's mean over dims (0, 2, 3)."""
    x = images(rng, n=5, c=3, h=6, w=4)
    expected = torch.from_numpy(x).double().mean(dim=(0, 2, 3)).numpy()
    assert_close("channel_mean(x)", call_unchanged("channel_mean", student.channel_mean, x,
                                                   names=("x",)),
                 expected, check_dtype=True)


@pytest.mark.points(2)
def test_channel_std_is_population_std(student, reference, rng):
    """channel_std is the population standard deviation (torch's unbiased=False)."""
    x = images(rng, n=3, c=4, h=3, w=5)
    expected = torch.from_numpy(x).double().std(dim=(0, 2, 3), unbiased=False).numpy()
    theirs, ours = statistic(student, reference, "channel_std", x)
    assert_close("channel_std(x)", theirs, expected, check_dtype=True)
    assert_close("channel_std(x)", theirs, ours)


@pytest.mark.points(1)
def test_statistics_do_not_modify_input(student, rng):
    """mean_image, channel_mean and channel_std leave their input unchanged."""
    x = images(rng).astype(np.float64)
    for name in STATISTICS:
        call_unchanged(name, getattr(student, name), x, names=("x",))


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", ["float32", "int16", "float64"])
def test_statistics_of_any_dtype_are_float64(student, reference, rng, dtype):
    """mean_image, channel_mean and channel_std of float32, int16 (negative values) and
    float64 images: float64 results with the exact values ("any numeric dtype")."""
    x = images(rng, n=9, c=3, h=4, w=5).astype(dtype)
    if dtype == "int16":
        x = x - 300  # negative pixels: an unsigned or uint8 shortcut breaks here
    elif dtype == "float32":
        x = x + np.float32(0.25)  # not integers: rounding to an integer type shows
    for name in STATISTICS:
        theirs, ours = statistic(student, reference, name, x)
        assert_close(f"{name}(x) for x of dtype {dtype}", theirs, ours, check_dtype=True)


@pytest.mark.points(1)
@pytest.mark.parametrize("shape", OTHER_SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_statistics_of_other_shapes(student, reference, rng, shape):
    """mean_image, channel_mean and channel_std on a batch of one image, on 1 and 4
    channels, on odd and non-square sizes: shapes (C, H, W) and (C,)."""
    x = images(rng, *shape)
    for name in STATISTICS:
        theirs, ours = statistic(student, reference, name, x)
        assert_close(f"{name}(x) for x of shape {shape}", theirs, ours, check_dtype=True)


# --- Preprocessor --------------------------------------------------------------------------


def fitted(student, mode, x_train):
    """The student's Preprocessor(mode) fitted on its own copy of x_train (which the fit
    must leave unchanged)."""
    pre = student.Preprocessor(mode)
    call_unchanged("Preprocessor.fit", pre.fit, x_train.copy(), names=("x_train",))
    return pre


def transformed(student_pre, reference_pre, x):
    return call_both("Preprocessor.transform", student_pre.transform, reference_pre.transform,
                     x, names=("x",))


@pytest.mark.points(2)
@pytest.mark.parametrize("mode", MODES)
def test_preprocessor_matches_reference(student, reference, rng, mode):
    """Preprocessor(mode) fitted on a training set, applied to it and to a test set."""
    x_train = images(rng, n=30, c=3, h=4, w=6)
    x_test = images(rng, n=7, c=3, h=4, w=6)
    ours = reference.Preprocessor(mode).fit(x_train.copy())
    theirs = fitted(student, mode, x_train)
    for what, x in [("x_train", x_train), ("x_test", x_test)]:
        got, expected = transformed(theirs, ours, x)
        assert_close(f"Preprocessor({mode!r}).transform({what})", got, expected,
                     check_dtype=True)


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", MODES)
def test_preprocessor_on_other_shapes(student, reference, rng, mode):
    """Preprocessor(mode) on 1 and 4 channels and odd sizes, fitted on a batch of one image
    and applied to another batch (and to a batch of one)."""
    for n, c, h, w in [(1, 4, 3, 5), (5, 1, 7, 7)]:
        x_train, x = images(rng, n, c, h, w), images(rng, 3, c, h, w)
        ours = reference.Preprocessor(mode).fit(x_train.copy())
        theirs = fitted(student, mode, x_train)
        for what, batch in [(f"x of shape {x.shape}", x), ("a batch of one image", x[:1])]:
            got, expected = transformed(theirs, ours, batch)
            assert_close(f"Preprocessor({mode!r}) fitted on images of shape {x_train.shape}: "
                         f"transform({what})", got, expected, check_dtype=True)


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", MODES)
def test_refit_uses_the_latest_training_set(student, reference, rng, mode):
    """fit called a second time replaces the statistics of the first fit."""
    first, second = images(rng, n=10), images(rng, n=12) // 3 + 40
    x = images(rng, n=4)
    pre = fitted(student, mode, first)
    call_unchanged("Preprocessor.fit", pre.fit, second.copy(), names=("x_train",))
    got, expected = transformed(pre, reference.Preprocessor(mode).fit(second.copy()), x)
    assert_close(f"Preprocessor({mode!r}).fit(a).fit(b).transform(x) (the statistics of b, "
                 f"the latest training set)", got, expected)


@pytest.mark.points(2)
@pytest.mark.parametrize("mode", MODES)
def test_transform_uses_training_statistics(student, rng, mode):
    """transform(x) uses the training set's statistics, never those of x."""
    x_train = images(rng, n=20)
    x_test = images(rng, n=8) // 2  # a test set with other statistics
    pre = fitted(student, mode, x_train)
    whole = call_unchanged("Preprocessor.transform", pre.transform, x_test, names=("x",))
    first = call_unchanged("Preprocessor.transform", pre.transform, x_test[:1], names=("x",))
    assert_close(
        f"Preprocessor({mode!r}): transform(x_test[:1]) vs transform(x_test)[:1] "
        f"(the same image must give the same result whatever else is in the batch: use the "
        f"statistics of the training set)",
        first, whole[:1],
    )


@pytest.mark.points(1)
def test_standardize_training_set_has_zero_mean_unit_std(student, rng):
    """After "standardize", each channel of the training set has mean 0 and std 1."""
    x_train = images(rng, n=25, c=3, h=6, w=6)
    pre = fitted(student, "standardize", x_train)
    out = np.asarray(call_unchanged("Preprocessor.transform", pre.transform, x_train,
                                    names=("x",)))
    assert_close("per-channel mean of the standardized training set",
                 out.mean(axis=(0, 2, 3)), np.zeros(3), atol=1e-10)
    assert_close("per-channel std of the standardized training set",
                 out.std(axis=(0, 2, 3)), np.ones(3), rtol=1e-10)


@pytest.mark.points(1)
def test_fit_returns_self(student, rng):
    """fit returns the preprocessor itself, so that calls can be chained."""
    pre = student.Preprocessor("channel_mean")
    if pre.fit(images(rng)) is not pre:
        raise CheckFailure("Preprocessor.fit(x_train) must `return self`.")


@pytest.mark.points(2)
@pytest.mark.parametrize("mode", MODES)
def test_transform_returns_new_array(student, rng, mode):
    """transform returns a new float64 array and leaves its input unchanged."""
    x_train = images(rng).astype(np.float64)
    x = images(rng).astype(np.float64)
    pre = fitted(student, mode, x_train)
    out = call_unchanged("Preprocessor.transform", pre.transform, x, names=("x",))
    if not isinstance(out, np.ndarray) or out.dtype != np.float64:
        raise CheckFailure(f"transform must return a float64 numpy array; got "
                           f"{type(out).__name__} of dtype {getattr(out, 'dtype', None)}.")
    for dtype in ("uint8", "float32"):
        out = pre.transform(x.astype(dtype))
        if getattr(out, "dtype", None) != np.float64:
            raise CheckFailure(f"transform of {dtype} images must return float64; got "
                               f"{getattr(out, 'dtype', type(out).__name__)}.")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.points(1)
def test_unknown_mode_raises(student):
    """Preprocessor with an unknown mode raises ValueError."""
    assert_raises('Preprocessor("whiten")', ValueError, student.Preprocessor, "whiten")


@pytest.mark.points(1)
def test_unknown_mode_message_names_the_valid_modes(student):
    """The ValueError of an unknown mode names the valid modes."""
    err = assert_raises('Preprocessor("whiten")', ValueError, student.Preprocessor, "whiten")
    missing = [m for m in MODES if m not in str(err)]
    if missing:
        raise CheckFailure(f'the ValueError of Preprocessor("whiten") must name the valid '
                           f"modes; it does not mention {', '.join(missing)}.")


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", MODES)
def test_transform_before_fit_raises(student, rng, mode):
    """transform before fit raises RuntimeError, saying to call fit first."""
    pre = student.Preprocessor(mode)
    err = assert_raises(f"Preprocessor({mode!r}).transform before fit", RuntimeError,
                        pre.transform, images(rng))
    if "fit" not in str(err).lower():
        raise CheckFailure(f"the RuntimeError of transform before fit must say to call fit "
                           f"first; it says: {err}")


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", MODES)
def test_wrong_number_of_channels_raises(student, rng, mode):
    """transform on images with another number of channels than the training set raises."""
    pre = fitted(student, mode, images(rng, c=3))
    gray = images(rng, c=1)
    assert_raises(f"Preprocessor({mode!r}) fitted on 3 channels, transform on 1 channel",
                  ValueError, pre.transform, gray)


@pytest.mark.points(1)
def test_wrong_shape_message_gives_the_shape(student, rng):
    """The ValueError of a wrong number of channels gives the shape of x."""
    pre = fitted(student, "channel_mean", images(rng, c=3))
    x = images(rng, n=2, c=4, h=5, w=4)
    err = assert_raises("Preprocessor('channel_mean') fitted on 3 channels, transform on 4",
                        ValueError, pre.transform, x)
    # The four numbers of x's shape in order, whatever the brackets and separators.
    if not re.search(r"\D*".join(str(d) for d in x.shape), str(err)):
        raise CheckFailure(f"the ValueError of a wrong number of channels must give the shape "
                           f"of x, {x.shape}, and the training images'; it says: {err}")


@pytest.mark.points(1)
def test_mean_image_mode_wrong_size_raises(student, rng):
    """In "mean_image" mode, transform on images of another size raises ValueError."""
    pre = fitted(student, "mean_image", images(rng, h=5, w=4))
    # 4x4 fails to broadcast anyway; 1x4 and 5x1 would broadcast silently without a check.
    for h, w in [(4, 4), (1, 4), (5, 1)]:
        assert_raises(f'Preprocessor("mean_image") fitted on 5x4 images, transform on {h}x{w} '
                      f'images', ValueError, pre.transform, images(rng, h=h, w=w))


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", MODES)
def test_arrays_that_are_not_4d_raise(student, rng, mode):
    """fit and transform on an array that is not 4-D raise ValueError."""
    one_image = images(rng, n=1)[0]  # (C, H, W): a single image without its batch axis
    assert_raises(f"Preprocessor({mode!r}).fit on an array of shape {one_image.shape}",
                  ValueError, student.Preprocessor(mode).fit, one_image)
    pre = fitted(student, mode, images(rng))
    assert_raises(f"Preprocessor({mode!r}).transform on an array of shape {one_image.shape}",
                  ValueError, pre.transform, one_image)
