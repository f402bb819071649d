"""Hidden checks of Lab 01: input preprocessing.

Each check compares the student's code with the reference (and, where one
exists, with an independent oracle: numpy or torch computed here, or values
worked out by hand) on inputs it makes from its seeded ``rng``. Every check
is shown to fail on the stubs and on at least one mutant by the selfcheck.
"""

import numpy as np
import pytest
import torch

from labkit.checks import CheckFailure, assert_close, assert_raises

MODES = ("mean_image", "channel_mean", "standardize")


def images(rng, n=6, c=3, h=5, w=4):
    """Random uint8 images (N, C, H, W), non-square, with per-channel offsets
    so that channel statistics differ."""
    base = rng.integers(0, 160, size=(n, c, h, w))
    offset = rng.integers(0, 90, size=(1, c, 1, 1))
    return (base + offset).astype(np.uint8)


# --- statistics ----------------------------------------------------------------------------


@pytest.mark.points(1)
def test_mean_image_by_hand(student):
    """mean_image on three 1x2x2 images worked out by hand."""
    x = np.array([[[[0, 255], [20, 3]]], [[[6, 255], [40, 4]]], [[[9, 254], [0, 4]]]],
                 dtype=np.uint8)
    # Pixel by pixel: (0 + 6 + 9) / 3 = 5, (255 + 255 + 254) / 3 = 764 / 3 (a uint8 sum
    # overflows), (20 + 40 + 0) / 3 = 20, (3 + 4 + 4) / 3 = 11 / 3 (not an integer).
    expected = np.array([[[15.0, 764.0], [60.0, 11.0]]]) / 3
    assert_close("mean_image(x)", student.mean_image(x), expected, check_dtype=True)


@pytest.mark.points(2)
def test_mean_image_matches_reference(student, reference, rng):
    """mean_image of random uint8 images: shape (C, H, W), float64, exact values."""
    x = images(rng, n=40, c=3, h=5, w=7)
    x[:, :, 0, 0] = 255  # a column of saturated pixels: a uint8 sum overflows here
    assert_close("mean_image(x)", student.mean_image(x), reference.mean_image(x),
                 check_dtype=True)


@pytest.mark.points(1)
def test_channel_mean_by_hand(student):
    """channel_mean on images whose channels are constant: the constants come back."""
    x = np.zeros((3, 2, 4, 5), dtype=np.uint8)
    x[:, 0] = 7
    x[:, 1] = 200
    x[1, 1] = 100  # one image differs: channel 1's mean is (200 + 100 + 200) / 3
    assert_close("channel_mean(x)", student.channel_mean(x), np.array([7.0, 500.0 / 3]),
                 check_dtype=True)


@pytest.mark.points(2)
def test_channel_mean_matches_torch(student, rng):
    """channel_mean of random images equals torch's mean over dims (0, 2, 3)."""
    x = images(rng, n=5, c=3, h=6, w=4)
    expected = torch.from_numpy(x).double().mean(dim=(0, 2, 3)).numpy()
    assert_close("channel_mean(x)", student.channel_mean(x), expected, check_dtype=True)


@pytest.mark.points(2)
def test_channel_std_is_population_std(student, reference, rng):
    """channel_std is the population standard deviation (torch's unbiased=False)."""
    x = images(rng, n=3, c=4, h=3, w=5)
    expected = torch.from_numpy(x).double().std(dim=(0, 2, 3), unbiased=False).numpy()
    got = student.channel_std(x)
    assert_close("channel_std(x)", got, expected, check_dtype=True)
    assert_close("channel_std(x)", got, reference.channel_std(x))


@pytest.mark.points(1)
def test_statistics_do_not_modify_input(student, rng):
    """mean_image, channel_mean and channel_std leave their input unchanged."""
    x = images(rng).astype(np.float64)
    before = x.copy()
    for name in ("mean_image", "channel_mean", "channel_std"):
        getattr(student, name)(x)
        assert_close(f"x after {name}(x)", x, before)


# --- Preprocessor --------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("mode", MODES)
def test_preprocessor_matches_reference(student, reference, rng, mode):
    """Preprocessor(mode) fitted on a training set, applied to it and to a test set."""
    x_train = images(rng, n=30, c=3, h=4, w=6)
    x_test = images(rng, n=7, c=3, h=4, w=6)
    ours = reference.Preprocessor(mode).fit(x_train)
    theirs = student.Preprocessor(mode).fit(x_train)
    assert_close(f"Preprocessor({mode!r}).transform(x_train)", theirs.transform(x_train),
                 ours.transform(x_train), check_dtype=True)
    assert_close(f"Preprocessor({mode!r}).transform(x_test)", theirs.transform(x_test),
                 ours.transform(x_test), check_dtype=True)


@pytest.mark.points(2)
@pytest.mark.parametrize("mode", MODES)
def test_transform_uses_training_statistics(student, rng, mode):
    """transform(x) uses the training set's statistics, never those of x."""
    x_train = images(rng, n=20)
    x_test = images(rng, n=8) // 2  # a test set with other statistics
    pre = student.Preprocessor(mode).fit(x_train)
    whole = pre.transform(x_test)
    first = pre.transform(x_test[:1])
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
    out = np.asarray(student.Preprocessor("standardize").fit(x_train).transform(x_train))
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
    before = x.copy()
    pre = student.Preprocessor(mode).fit(x_train)
    out = pre.transform(x)
    assert_close(f"x after transform(x) in mode {mode!r} (it must not be modified)", x, before)
    if not isinstance(out, np.ndarray) or out.dtype != np.float64:
        raise CheckFailure(f"transform must return a float64 numpy array; got "
                           f"{type(out).__name__} of dtype {getattr(out, 'dtype', None)}.")
    out_u8 = pre.transform(x.astype(np.uint8))
    if getattr(out_u8, "dtype", None) != np.float64:
        raise CheckFailure(f"transform of uint8 images must return float64; got "
                           f"{getattr(out_u8, 'dtype', type(out_u8).__name__)}.")


# --- errors --------------------------------------------------------------------------------


@pytest.mark.points(1)
def test_unknown_mode_raises(student):
    """Preprocessor with an unknown mode raises ValueError."""
    assert_raises('Preprocessor("whiten")', ValueError, student.Preprocessor, "whiten")


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", MODES)
def test_transform_before_fit_raises(student, rng, mode):
    """transform before fit raises RuntimeError."""
    pre = student.Preprocessor(mode)
    assert_raises(f"Preprocessor({mode!r}).transform before fit", RuntimeError,
                  pre.transform, images(rng))


@pytest.mark.points(1)
@pytest.mark.parametrize("mode", MODES)
def test_wrong_number_of_channels_raises(student, rng, mode):
    """transform on images with another number of channels than the training set raises."""
    pre = student.Preprocessor(mode).fit(images(rng, c=3))
    gray = images(rng, c=1)
    assert_raises(f"Preprocessor({mode!r}) fitted on 3 channels, transform on 1 channel",
                  ValueError, pre.transform, gray)


@pytest.mark.points(1)
def test_mean_image_mode_wrong_size_raises(student, rng):
    """In "mean_image" mode, transform on images of another size raises ValueError."""
    pre = student.Preprocessor("mean_image").fit(images(rng, h=5, w=4))
    assert_raises('Preprocessor("mean_image") fitted on 5x4 images, transform on 4x4 images',
                  ValueError, pre.transform, images(rng, h=4, w=4))
