"""Hidden checks of Lab 06: data augmentation.

Each transform is compared, image by image, with torchvision's functional ops
(``torchvision.transforms.v2.functional``) where the random draw is known: a
generator seeded here and the draws in the order the docstrings give, or the
probabilities 0 and 1. Other checks do not depend on the order of the draws, so
that a student who drew differently still earns them: every image gets its own
draw, the statistics of the draws over thousands of images (flip rate, crop
offsets, erased areas, mixup's Beta weights, with bounds of about 6 standard
deviations), soft labels that sum to 1 and follow the pixel areas, inputs left
unchanged, dtype and device kept.

The random generator. A ``torch.Generator`` is not plain data, so it cannot cross
the sandbox's boundary: a check builds it in the student's process, with the
student's own ``torch`` (the lab's setup cell imports it),
``student.torch.Generator().manual_seed(seed)``, a handle the check passes back
to the student's function; the reference gets a generator of its own with the
same seed. ``generator=None`` (torch's global generator) is checked by seeding
torch here: the grader's random state goes to the student's process with each
call (``autograder.sandbox.protocol``).

Models for ``tta_predict`` are lent by spec (``autograder.sandbox.modules.lend``),
and their mode after the call is read with ``describe``.
"""

import math

import numpy as np
import pytest
import torch
import torchvision.transforms.v2.functional as TF

from autograder.sandbox.modules import build_module, describe, lend, module_spec
from labkit.checks import CheckFailure, assert_close, assert_raises, assert_shape


def student_generator(student, seed):
    """A torch.Generator seeded with ``seed``, built in the student's process."""
    return student.torch.Generator().manual_seed(int(seed))


def our_generator(seed):
    return torch.Generator().manual_seed(int(seed))


def images(rng, shape, dtype=torch.float32):
    """Random images in [0, 1) (a fresh tensor for each caller)."""
    return torch.from_numpy(rng.random(shape)).to(dtype)


def as_tensor(name, out):
    if out is None:
        raise CheckFailure(f"{name} returned None: did you forget a `return`?")
    if not isinstance(out, torch.Tensor):
        raise CheckFailure(f"{name} must return a torch tensor, got {type(out).__name__}.")
    return out


def check_unchanged(name, x, copy):
    if not torch.equal(x, copy):
        raise CheckFailure(f"{name} modified its input x in place: work on a copy "
                           f"(x.clone(), torch.where, or out-of-place operations).")


def check_count(what, count, n, p, sigmas=6.0):
    """Fail unless ``count`` of ``n`` Bernoulli(p) draws is plausible."""
    std = math.sqrt(n * p * (1 - p))
    if abs(count - n * p) > sigmas * std + 1:
        raise CheckFailure(f"{what}: {count} of {n} ({count / n:.3f}), expected about {p:g}.")


# --- random_horizontal_flip -----------------------------------------------------------------


def oracle_flip(x, p, seed):
    u = torch.rand(x.shape[0], generator=our_generator(seed))
    return torch.stack([TF.horizontal_flip(img) if u[n] < p else img for n, img in enumerate(x)])


@pytest.mark.points(3)
@pytest.mark.parametrize("p", [0.3, 0.75])
def test_flip_matches_torchvision_for_a_seed(student, rng, seed, p):
    """random_horizontal_flip with a seeded generator: torchvision's horizontal_flip on the
    images where torch.rand(N, generator) < p, image by image."""
    x = images(rng, (9, 2, 5, 4))
    copy = x.clone()
    out = as_tensor("random_horizontal_flip", student.random_horizontal_flip(
        x, p, student_generator(student, seed)))
    assert_shape(f"random_horizontal_flip(x of shape {tuple(x.shape)}, p={p})", out, x.shape)
    expected = oracle_flip(copy, p, seed)
    u = torch.rand(9, generator=our_generator(seed))
    for n in range(9):
        if not torch.equal(out[n], expected[n]):
            was = "flipped" if u[n] < p else "left as it is"
            raise CheckFailure(
                f"random_horizontal_flip(x, p={p}, generator seeded with {seed}): image {n} "
                f"should be {was} (u = torch.rand(N, generator)[{n}] = {float(u[n]):.3f}; an "
                f"image is flipped where u < p, and a flip reverses the WIDTH axis, x.flip(-1)).")
    check_unchanged("random_horizontal_flip", x, copy)


@pytest.mark.points(2)
def test_flip_probabilities_zero_and_one(student, rng, seed):
    """p = 0 leaves every image, p = 1 flips every image (torchvision's horizontal_flip)."""
    x = images(rng, (6, 3, 4, 7))
    g = student_generator(student, seed)
    assert_close("random_horizontal_flip(x, p=0) (no image flipped)",
                 student.random_horizontal_flip(x.clone(), 0.0, g), x, rtol=0, atol=0)
    assert_close("random_horizontal_flip(x, p=1) (every image flipped left-right)",
                 student.random_horizontal_flip(x.clone(), 1.0, g), TF.horizontal_flip(x),
                 rtol=0, atol=0)


@pytest.mark.points(2)
@pytest.mark.parametrize("p", [0.2, 0.5])
def test_flip_rate_and_one_draw_per_image(student, seed, p):
    """Over 4,000 images about p of them are flipped, each on its own draw."""
    n = 4000
    x = torch.tensor([[[[0.0, 1.0]]]]).repeat(n, 1, 1, 1)  # (N, 1, 1, 2): flipped iff x[..., 0] = 1
    out = as_tensor("random_horizontal_flip",
                    student.random_horizontal_flip(x, p, student_generator(student, seed)))
    assert_shape("random_horizontal_flip(x of shape (4000, 1, 1, 2))", out, x.shape)
    flipped = out[:, 0, 0, 0] == 1.0
    if not torch.all(flipped | (out[:, 0, 0, 0] == 0.0)):
        raise CheckFailure("random_horizontal_flip changed pixel values: it must only reverse the "
                           "width axis of some images.")
    if int(flipped.sum()) in (0, n) and 0 < p < 1:
        raise CheckFailure(f"random_horizontal_flip(p={p}) flipped all or none of 4,000 images: "
                           f"draw one random number PER IMAGE (torch.rand(N, generator=...)), not "
                           f"one for the whole batch.")
    check_count(f"fraction of 4,000 images flipped by random_horizontal_flip(p={p}) "
                f"(p is the probability of flipping)", int(flipped.sum()), n, p)


@pytest.mark.points(1)
def test_flip_global_generator_and_repeated_calls(student, reference, rng, seed):
    """generator=None uses torch's global generator: torch.manual_seed fixes the result, and
    two calls in a row draw anew."""
    x = images(rng, (12, 1, 3, 5))
    torch.manual_seed(seed)
    first = as_tensor("random_horizontal_flip", student.random_horizontal_flip(x.clone(), 0.5))
    torch.manual_seed(seed)
    again = student.random_horizontal_flip(x.clone(), 0.5, None)
    torch.manual_seed(seed)
    expected = reference.random_horizontal_flip(x.clone(), 0.5, None)
    assert_close("random_horizontal_flip(x, 0.5) after torch.manual_seed (generator=None is "
                 "torch's global generator)", first, expected, rtol=0, atol=0)
    assert_close("two calls of random_horizontal_flip after the same torch.manual_seed",
                 again, first, rtol=0, atol=0)
    g = student_generator(student, seed + 1)
    a, b = (student.random_horizontal_flip(x.clone(), 0.5, g) for _ in range(2))
    if torch.equal(a, b) and not torch.equal(a, x):
        raise CheckFailure("two calls of random_horizontal_flip with the same generator gave the "
                           "same flips: the generator's state must move on (draw from it, do "
                           "not re-seed it).")


@pytest.mark.points(1)
@pytest.mark.parametrize("dtype", [torch.float64, torch.uint8])
def test_flip_keeps_dtype(student, rng, seed, dtype):
    """Any dtype: the output keeps it, the input is not modified."""
    x = (images(rng, (5, 3, 2, 6)) * 200).to(dtype)
    copy = x.clone()
    out = as_tensor("random_horizontal_flip",
                    student.random_horizontal_flip(x, 0.5, student_generator(student, seed)))
    if out.dtype != dtype:
        raise CheckFailure(f"random_horizontal_flip of a {dtype} batch returned {out.dtype}: keep "
                           f"the input's dtype.")
    assert_close(f"random_horizontal_flip of a {dtype} batch", out, oracle_flip(copy, 0.5, seed),
                 rtol=0, atol=0)
    check_unchanged("random_horizontal_flip", x, copy)


# --- random_crop ----------------------------------------------------------------------------


def oracle_crop(x, size, padding, seed, mode):
    h, w = size
    g = our_generator(seed)
    n, _, height, width = x.shape
    top = torch.randint(0, height + 2 * padding - h + 1, (n,), generator=g)
    left = torch.randint(0, width + 2 * padding - w + 1, (n,), generator=g)
    padded = [TF.pad(img, [padding], padding_mode=mode) for img in x]
    return torch.stack([TF.crop(padded[i], int(top[i]), int(left[i]), h, w) for i in range(n)])


@pytest.mark.points(3)
@pytest.mark.parametrize("mode", ["constant", "edge", "reflect"])
def test_crop_matches_torchvision_for_a_seed(student, rng, seed, mode):
    """random_crop against torchvision's pad + crop, image by image, with the documented draws
    (top, then left, torch.randint over every possible offset)."""
    x = images(rng, (5, 2, 9, 7)) + 0.5  # no zero pixel: constant padding shows
    copy = x.clone()
    out = as_tensor("random_crop", student.random_crop(
        x, (6, 4), 2, student_generator(student, seed), padding_mode=mode))
    assert_shape("random_crop(x of shape (5, 2, 9, 7), size=(6, 4), padding=2)", out, (5, 2, 6, 4))
    expected = oracle_crop(copy, (6, 4), 2, seed, mode)
    for n in range(5):
        if not torch.equal(out[n], expected[n]):
            raise CheckFailure(
                f"random_crop(x, size=(6, 4), padding=2, padding_mode={mode!r}, generator seeded "
                f"with {seed}): crop {n} differs from torchvision's pad(img, [2], "
                f"padding_mode={mode!r}) then crop at the documented offsets (top = "
                f"torch.randint(0, Hp - h + 1, (N,), generator), then left likewise; padding on "
                f"all four sides).")
    check_unchanged("random_crop", x, copy)


def window_offsets(out, x, padding):
    """For each crop, its (top, left) in the zero-padded image, or (-1, -1) if it is not a
    window of it. x holds distinct values, so each window is unique."""
    padded = torch.nn.functional.pad(x, (padding,) * 4)
    n, _, h, w = out.shape
    hp, wp = padded.shape[-2:]
    found = torch.full((n, 2), -1, dtype=torch.long)
    for top in range(hp - h + 1):
        for left in range(wp - w + 1):
            window = padded[:, :, top:top + h, left:left + w]
            match = (out == window).flatten(1).all(dim=1)
            found[match] = torch.tensor([top, left])
    return found


@pytest.mark.points(3)
def test_crop_offsets_uniform_over_their_range(student, seed):
    """Over 3,000 crops every offset from 0 to the last one appears, about equally often, and
    every crop is a window of the image padded on all four sides."""
    n, padding, size = 3000, 2, (3, 4)
    x = (torch.arange(1.0, 21.0).reshape(1, 1, 4, 5) + torch.arange(n).reshape(n, 1, 1, 1) * 100)
    out = as_tensor("random_crop",
                    student.random_crop(x, size, padding, student_generator(student, seed)))
    assert_shape("random_crop(x of shape (3000, 1, 4, 5), size=(3, 4), padding=2)", out,
                 (n, 1, 3, 4))
    found = window_offsets(out, x, padding)
    bad = int((found[:, 0] < 0).sum())
    if bad:
        raise CheckFailure(f"{bad} of {n} crops of random_crop(x, size=(3, 4), padding=2) are not "
                           f"a window of the image zero-padded by 2 pixels on EACH side (pad "
                           f"top, bottom, left and right).")
    for axis, name, count in ((0, "top", 4 + 2 * padding - 3 + 1),
                              (1, "left", 5 + 2 * padding - 4 + 1)):
        counts = torch.bincount(found[:, axis], minlength=count)
        if int(counts[-1]) == 0:
            raise CheckFailure(f"random_crop never chose the last {name} offset ({count - 1}): "
                               f"torch.randint's high is exclusive, use Hp - h + 1.")
        for k in range(count):
            check_count(f"crops with {name} offset {k} (offsets must be uniform over "
                        f"0..{count - 1})", int(counts[k]), n, 1 / count)
    if torch.all(found == found[0]):
        raise CheckFailure("random_crop cut every image at the same place: draw the offsets per "
                           "image.")


@pytest.mark.points(1)
def test_crop_int_size_without_padding_and_errors(student, rng, seed):
    """An int size means a square crop; padding=0 crops x itself; a crop larger than the padded
    image and an unknown padding_mode raise ValueError."""
    x = images(rng, (4, 3, 6, 8)) + 1
    copy = x.clone()
    out = as_tensor("random_crop", student.random_crop(x, 5, 0, student_generator(student, seed)))
    assert_close("random_crop(x, 5, padding=0) (an int size is a square crop, no padding)",
                 out, oracle_crop(copy, (5, 5), 0, seed, "constant"), rtol=0, atol=0)
    g = student_generator(student, seed)
    assert_raises("random_crop(x of 6x8, size=9, padding=1) (the crop does not fit)", ValueError,
                  student.random_crop, x, 9, 1, g)
    assert_raises('random_crop(x, 4, 1, generator, padding_mode="circular")', ValueError,
                  student.random_crop, x, 4, 1, g, padding_mode="circular")


@pytest.mark.points(2)
def test_crop_sizes_at_the_bounds(student, rng, seed):
    """The least crops (1 pixel high or wide) and the largest (the whole padded image) are
    allowed and match torchvision's pad + crop; a crop of 0 rows or columns, or larger than
    the padded image, raises ValueError."""
    x = images(rng, (3, 2, 7, 8)) + 0.5
    for size, padding in (((1, 4), 0), ((5, 1), 1), ((9, 10), 1), ((1, 1), 0)):
        copy = x.clone()
        what = f"random_crop(x of shape (3, 2, 7, 8), size={size}, padding={padding})"
        try:
            out = as_tensor("random_crop", student.random_crop(
                copy, size, padding, student_generator(student, seed)))
        except ValueError as e:
            raise CheckFailure(f"{what} raised ValueError ({str(e)[:120]}), but that crop fits: "
                               f"any h in 1..H + 2 padding and w in 1..W + 2 padding is "
                               f"allowed.") from None
        assert_shape(what, out, (3, 2, *size))
        assert_close(what, out, oracle_crop(x, size, padding, seed, "constant"), rtol=0, atol=0)
        check_unchanged("random_crop", copy, x)
    for size, padding in (((0, 4), 0), ((4, 0), 0), ((0, 0), 0), ((8, 8), 0), ((7, 9), 0),
                          ((10, 10), 1)):
        assert_raises(f"random_crop(x of 7x8, size={size}, padding={padding}) (the crop does not "
                      f"fit: h must be in 1..H + 2 padding and w in 1..W + 2 padding)", ValueError,
                      student.random_crop, x.clone(), size, padding,
                      student_generator(student, seed))


@pytest.mark.points(1)
def test_crop_global_generator(student, reference, rng, seed):
    """generator=None: torch's global generator, so torch.manual_seed fixes the crops."""
    x = images(rng, (6, 1, 5, 5))
    torch.manual_seed(seed)
    out = as_tensor("random_crop", student.random_crop(x.clone(), 4, 1))
    torch.manual_seed(seed)
    expected = reference.random_crop(x.clone(), 4, 1)
    assert_close("random_crop(x, 4, 1) after torch.manual_seed (generator=None)", out, expected,
                 rtol=0, atol=0)


# --- color_jitter ---------------------------------------------------------------------------


def oracle_jitter(x, amounts, seed):
    g = our_generator(seed)
    factors = []
    for amount in amounts:
        lo, hi = max(0.0, 1.0 - amount), 1.0 + amount
        factors.append(lo + (hi - lo) * torch.rand(x.shape[0], generator=g))
    out = []
    for n, img in enumerate(x):
        img = TF.adjust_brightness(img, float(factors[0][n]))
        img = TF.adjust_contrast(img, float(factors[1][n]))
        out.append(TF.adjust_saturation(img, float(factors[2][n])))
    return torch.stack(out)


@pytest.mark.points(2)
@pytest.mark.parametrize("amounts", [(0.6, 0.0, 0.0), (0.0, 0.7, 0.0), (0.0, 0.0, 0.8),
                                     (0.3, 0.4, 0.5), (1.5, 0.0, 0.0)],
                         ids=["brightness", "contrast", "saturation", "all", "brightness_above_1"])
def test_color_jitter_matches_torchvision(student, rng, seed, amounts):
    """color_jitter against torchvision's adjust_brightness, adjust_contrast and
    adjust_saturation, image by image, with the documented factors."""
    x = images(rng, (6, 3, 5, 4))
    copy = x.clone()
    b, c, s = amounts
    out = as_tensor("color_jitter", student.color_jitter(
        x, b, c, s, student_generator(student, seed)))
    assert_shape("color_jitter(x of shape (6, 3, 5, 4))", out, x.shape)
    expected = oracle_jitter(copy, amounts, seed)
    what = (f"color_jitter(x, brightness={b}, contrast={c}, saturation={s}, generator seeded "
            f"with {seed}) vs torchvision's adjust_brightness, adjust_contrast, "
            f"adjust_saturation in that order (factors uniform in [max(0, 1 - a), 1 + a]; grey = "
            f"0.2989 R + 0.587 G + 0.114 B; a clamp to [0, 1] after each)")
    assert_close(what, out, expected, rtol=1e-5, atol=1e-5)
    check_unchanged("color_jitter", x, copy)


@pytest.mark.points(2)
def test_color_jitter_one_factor_per_image(student, rng, seed):
    """Identical images get different factors, each property on its own draw."""
    x = images(rng, (1, 3, 4, 4)).repeat(8, 1, 1, 1) * 0.5 + 0.25
    g = student_generator(student, seed)
    for name, amounts in (("brightness", (0.5, 0, 0)), ("contrast", (0, 0.5, 0)),
                          ("saturation", (0, 0, 0.5))):
        out = as_tensor("color_jitter", student.color_jitter(x.clone(), *amounts, generator=g))
        if all(torch.allclose(out[0], out[n]) for n in range(1, 8)):
            raise CheckFailure(f"color_jitter({name}=0.5) changed 8 identical images in the same "
                               f"way: draw one factor PER IMAGE (torch.rand(N, generator=...)).")


@pytest.mark.points(1)
def test_color_jitter_zero_is_identity_and_keeps_dtype(student, rng, seed):
    """All amounts 0: every factor is 1 and the images come back unchanged, in float64 too."""
    x = images(rng, (3, 3, 6, 2), torch.float64)
    out = as_tensor("color_jitter", student.color_jitter(x.clone(), 0.0, 0.0, 0.0,
                                                         student_generator(student, seed)))
    if out.dtype != torch.float64:
        raise CheckFailure(f"color_jitter of a float64 batch returned {out.dtype}: keep the dtype.")
    assert_close("color_jitter(x, 0, 0, 0) (every factor is 1)", out, x, rtol=1e-9, atol=1e-9)


@pytest.mark.points(1)
def test_color_jitter_global_generator(student, reference, rng, seed):
    """generator=None: torch's global generator."""
    x = images(rng, (4, 3, 3, 3))
    torch.manual_seed(seed)
    out = as_tensor("color_jitter", student.color_jitter(x.clone(), 0.2, 0.3, 0.4))
    torch.manual_seed(seed)
    expected = reference.color_jitter(x.clone(), 0.2, 0.3, 0.4)
    assert_close("color_jitter(x, 0.2, 0.3, 0.4) after torch.manual_seed (generator=None)",
                 out, expected, rtol=1e-5, atol=1e-5)


# --- random_erasing -------------------------------------------------------------------------


def oracle_erasing(x, scale, ratio, value, seed):
    g = our_generator(seed)
    n, _, height, width = x.shape
    u1, u2, u3, u4 = (torch.rand(n, generator=g) for _ in range(4))
    out = []
    for i in range(n):
        area = scale[0] + (scale[1] - scale[0]) * u1[i]
        log_lo, log_hi = math.log(ratio[0]), math.log(ratio[1])
        r = torch.exp(log_lo + (log_hi - log_lo) * u2[i])
        h = int(torch.round(torch.sqrt(area * height * width * r)).clamp(1, height))
        w = int(torch.round(torch.sqrt(area * height * width / r)).clamp(1, width))
        top = int(torch.floor(u3[i] * (height - h + 1)))
        left = int(torch.floor(u4[i] * (width - w + 1)))
        out.append(TF.erase(x[i], top, left, h, w, torch.tensor(value, dtype=x.dtype)))
    return torch.stack(out)


@pytest.mark.points(3)
@pytest.mark.parametrize(("scale", "ratio", "value"),
                         [((0.05, 0.4), (0.3, 3.3), 0.0), ((0.2, 0.6), (0.5, 1.5), -1.5),
                          # areas of 0.08-1.6 pixels: h and w round to 0 or 1, clamped to >= 1
                          ((0.001, 0.02), (0.3, 3.3), 2.0)])
def test_random_erasing_matches_torchvision(student, rng, seed, scale, ratio, value):
    """random_erasing against torchvision's erase, image by image, with the documented draws."""
    x = images(rng, (5, 2, 10, 8))
    copy = x.clone()
    out = as_tensor("random_erasing", student.random_erasing(
        x, scale, ratio, value, student_generator(student, seed)))
    assert_shape("random_erasing(x of shape (5, 2, 10, 8))", out, x.shape)
    expected = oracle_erasing(copy, scale, ratio, value, seed)
    for n in range(5):
        if not torch.equal(out[n], expected[n]):
            raise CheckFailure(
                f"random_erasing(x, scale={scale}, ratio={ratio}, value={value}, generator seeded "
                f"with {seed}): image {n} differs from torchvision's erase with the documented "
                f"rectangle (h = round(sqrt(a H W r)), w = round(sqrt(a H W / r)), r = h / w; top "
                f"= floor(u3 (H - h + 1)), left = floor(u4 (W - w + 1))).")
    check_unchanged("random_erasing", x, copy)


@pytest.mark.points(2)
def test_random_erasing_one_rectangle_per_image(student, seed):
    """Over 2,000 images: one rectangle each, its own, with areas within the scale range."""
    n, height, width = 2000, 16, 12
    x = torch.ones(n, 1, height, width)
    copy = x.clone()
    scale, ratio = (0.1, 0.3), (0.5, 2.0)
    out = as_tensor("random_erasing", student.random_erasing(
        x, scale, ratio, 0.0, student_generator(student, seed)))
    assert_shape(f"random_erasing(x of shape {tuple(x.shape)})", out, x.shape)
    check_unchanged("random_erasing", x, copy)
    erased = out[:, 0] == 0.0
    rows, cols = erased.any(dim=2), erased.any(dim=1)
    rectangle = rows[:, :, None] & cols[:, None, :]
    if not torch.equal(rectangle, erased) or not torch.all(erased.flatten(1).any(dim=1)):
        raise CheckFailure("random_erasing must erase exactly one rectangle (all channels) in "
                           "every image.")
    h, w = rows.sum(dim=1).double(), cols.sum(dim=1).double()
    area = h * w / (height * width)
    # Rounding h and w moves the area a little beyond the range: allow one row and column.
    lo = (math.sqrt(scale[0] * height * width) - 1) ** 2 / (height * width)
    if area.min() < lo * 0.8 or area.max() > scale[1] * 1.6:
        raise CheckFailure(f"random_erasing(scale={scale}): erased areas from {area.min():.3f} to "
                           f"{area.max():.3f} of the image, expected within about {scale}.")
    mean = float(area.mean())
    if abs(mean - sum(scale) / 2) > 0.03:
        raise CheckFailure(f"random_erasing(scale={scale}): mean erased area {mean:.3f} of the "
                           f"image, expected about {sum(scale) / 2:.3f} (uniform over scale).")
    tall = float((h > w).double().mean())
    if not 0.3 < tall < 0.7:
        raise CheckFailure(f"random_erasing(ratio={ratio}): {tall:.0%} of the rectangles are "
                           f"taller than wide, expected about half (log-uniform h / w over a range "
                           f"symmetric around 1).")
    if len({(int(a), int(b)) for a, b in zip(h[:50], w[:50], strict=True)}) < 5:
        raise CheckFailure("random_erasing gave (almost) every image the same rectangle: draw "
                           "one per image.")


# --- mixup and cutmix -----------------------------------------------------------------------


def oracle_mixup(x, y, alpha, k, seed):
    g = our_generator(seed)
    n = x.shape[0]
    perm = torch.randperm(n, generator=g)
    lam = np.random.default_rng(int(torch.randint(0, 2**32, (1,), generator=g))).beta(
        alpha, alpha, size=n)
    lam_t = torch.from_numpy(lam).float()
    x_mixed = torch.stack([lam_t[i] * x[i] + (1 - lam_t[i]) * x[perm[i]] for i in range(n)])
    one_hot = torch.eye(k)[y]
    y_soft = lam_t[:, None] * one_hot + (1 - lam_t[:, None]) * one_hot[perm]
    return x_mixed, y_soft, lam_t


def check_seed_draws(student, name, oracle, x, y, alpha, k, seed, rtol):
    """The weights of ``name`` (mixup or cutmix) on 4 more generator seeds against the oracle's:
    numpy's seed must be the documented torch.randint(0, 2**32, ...) draw (another range
    gives the same seed on about half of the generator seeds, so one seed cannot tell)."""
    for other in range(seed + 1, seed + 5):
        _, _, lam = unpack3(name, getattr(student, name)(x.clone(), y.clone(), alpha, k,
                                                          student_generator(student, other)))
        assert_close(f"{name}(...)[2] with a generator seeded with {other}: the weights from "
                     f"np.random.default_rng(int(torch.randint(0, 2**32, (1,), generator)))",
                     lam, oracle(x, y, alpha, k, other)[2], rtol=rtol, atol=1e-6)


def unpack3(name, answer):
    if not isinstance(answer, tuple) or len(answer) != 3:
        raise CheckFailure(f"{name} must return a tuple (x_mixed, y_soft, lam).")
    return tuple(as_tensor(f"{name}[{i}]", a) for i, a in enumerate(answer))


@pytest.mark.points(3)
def test_mixup_matches_oracle_for_a_seed(student, rng, seed):
    """mixup with the documented draws (randperm, then one Beta weight per image)."""
    x, y = images(rng, (7, 3, 4, 5)), torch.from_numpy(rng.integers(0, 6, 7))
    copies = x.clone(), y.clone()
    check_seed_draws(student, "mixup", oracle_mixup, x, y, 0.4, 6, seed, rtol=1e-5)
    x_mixed, y_soft, lam = unpack3("mixup", student.mixup(x, y, 0.4, 6,
                                                          student_generator(student, seed)))
    ex, ey, elam = oracle_mixup(*copies, 0.4, 6, seed)
    assert_shape("mixup(...)[0] (x_mixed)", x_mixed, x.shape)
    assert_shape("mixup(..., num_classes=6)[1] (y_soft)", y_soft, (7, 6))
    assert_shape("mixup(...)[2] (lam)", lam, (7,))
    assert_close("mixup(...)[2]: lam, one Beta(alpha, alpha) weight per image "
                 "(np.random.default_rng(seed).beta(alpha, alpha, size=N), seed drawn after "
                 "the permutation)", lam, elam, rtol=1e-5, atol=1e-6)
    assert_close("mixup(...)[0]: x_mixed[n] = lam[n] x[n] + (1 - lam[n]) x[perm[n]]",
                 x_mixed, ex, rtol=1e-5, atol=1e-6)
    assert_close("mixup(...)[1]: y_soft, the labels mixed with the same weights as the images",
                 y_soft, ey, rtol=1e-5, atol=1e-6)
    if y_soft.dtype != torch.float32:
        raise CheckFailure(f"mixup's y_soft must be float32, got {y_soft.dtype}.")
    check_unchanged("mixup", x, copies[0])
    check_unchanged("mixup (the labels y)", y, copies[1])


def partners(x_mixed, x, lam):
    """For each mixed image, the image of x it was mixed with (least residual), or -1."""
    rest = x_mixed - lam[:, None, None, None] * x  # (1 - lam) * partner
    found = []
    for i in range(x.shape[0]):
        if float(1 - lam[i]) < 1e-3:
            found.append(i)  # hardly mixed: any partner fits; use itself
            continue
        errors = ((rest[i] - (1 - lam[i]) * x) ** 2).flatten(1).sum(dim=1)
        j = int(errors.argmin())
        found.append(j if float(errors[j]) < 1e-6 * float((rest[i] ** 2).sum()) + 1e-8 else -1)
    return found


@pytest.mark.points(2)
def test_mixup_labels_follow_the_images(student, rng, seed):
    """Whatever the draws: each image is a blend of itself (weight lam) and one other image, and
    its soft label mixes the two labels with the same weights; rows sum to 1."""
    n, k = 40, 5
    x, y = images(rng, (n, 2, 3, 3)), torch.from_numpy(rng.integers(0, k, n))
    x_mixed, y_soft, lam = unpack3("mixup", student.mixup(x.clone(), y.clone(), 1.0, k,
                                                          student_generator(student, seed)))
    assert_close("the rows of mixup's y_soft (each a probability vector)", y_soft.sum(dim=1),
                 torch.ones(n), rtol=1e-5, atol=1e-5)
    if float(lam.min()) < 0 or float(lam.max()) > 1:
        raise CheckFailure("mixup's lam must lie in [0, 1].")
    found = partners(x_mixed.double(), x.double(), lam.double())
    if -1 in found:
        i = found.index(-1)
        raise CheckFailure(f"mixup's x_mixed[{i}] is not lam[{i}] * x[{i}] + (1 - lam[{i}]) * x[j] "
                           f"for any image j of the batch.")
    one_hot = torch.eye(k)[y]
    expected = lam[:, None] * one_hot + (1 - lam[:, None]) * one_hot[found]
    assert_close("mixup's y_soft vs the images it mixed: lam[n] one_hot(y[n]) + (1 - lam[n]) "
                 "one_hot(y[partner]) (mix the labels too, not only the images)",
                 y_soft, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.points(2)
@pytest.mark.parametrize("alpha", [0.3, 2.0])
def test_mixup_lambda_distribution(student, seed, alpha):
    """Over 4,000 images, lam has the mean (1/2) and variance (1 / (4 (2 alpha + 1))) of
    Beta(alpha, alpha), one draw per image."""
    n = 4000
    x, y = torch.zeros(n, 1, 1, 1), torch.zeros(n, dtype=torch.long)
    _, _, lam = unpack3("mixup", student.mixup(x, y, alpha, 2, student_generator(student, seed)))
    lam = lam.double()
    var = 1 / (4 * (2 * alpha + 1))
    # The sample variance of Beta(alpha, alpha) has a std below 0.006 here; 6 sigmas.
    if abs(float(lam.mean()) - 0.5) > 6 * math.sqrt(var / n) or abs(float(lam.var()) - var) > 0.035:
        raise CheckFailure(f"mixup(alpha={alpha}): lam over 4,000 images has mean "
                           f"{float(lam.mean()):.3f} and variance {float(lam.var()):.3f}; "
                           f"Beta({alpha}, {alpha}) has mean 0.5 and variance {var:.3f}.")
    if float(lam.std()) < 1e-6:
        raise CheckFailure("mixup gave every image the same lam: draw one per image.")


def oracle_cutmix(x, y, alpha, k, seed):
    g = our_generator(seed)
    n, _, height, width = x.shape
    perm = torch.randperm(n, generator=g)
    lam = np.random.default_rng(int(torch.randint(0, 2**32, (1,), generator=g))).beta(
        alpha, alpha, size=n)
    cy = torch.randint(0, height, (n,), generator=g)
    cx = torch.randint(0, width, (n,), generator=g)
    out, lam_box = x.clone(), []
    for i in range(n):
        r = 0.5 * math.sqrt(1 - lam[i])
        hh, hw = int(r * height), int(r * width)
        y1, y2 = max(int(cy[i]) - hh, 0), min(int(cy[i]) + hh, height)
        x1, x2 = max(int(cx[i]) - hw, 0), min(int(cx[i]) + hw, width)
        out[i, :, y1:y2, x1:x2] = x[perm[i], :, y1:y2, x1:x2]
        lam_box.append(1 - (y2 - y1) * (x2 - x1) / (height * width))
    lam_box = torch.tensor(lam_box, dtype=torch.float32)
    one_hot = torch.eye(k)[y]
    return out, lam_box[:, None] * one_hot + (1 - lam_box[:, None]) * one_hot[perm], lam_box


@pytest.mark.points(3)
def test_cutmix_matches_oracle_for_a_seed(student, rng, seed):
    """cutmix with the documented draws: boxes clipped at the border, labels by area."""
    x, y = images(rng, (8, 2, 6, 9)), torch.from_numpy(rng.integers(0, 4, 8))
    copies = x.clone(), y.clone()
    check_seed_draws(student, "cutmix", oracle_cutmix, x, y, 0.5, 4, seed, rtol=1e-6)
    x_mixed, y_soft, lam = unpack3("cutmix", student.cutmix(x, y, 0.5, 4,
                                                            student_generator(student, seed)))
    ex, ey, elam = oracle_cutmix(*copies, 0.5, 4, seed)
    assert_shape("cutmix(...)[0] (x_mixed)", x_mixed, x.shape)
    assert_shape("cutmix(..., num_classes=4)[1] (y_soft)", y_soft, (8, 4))
    assert_close("cutmix(...)[0]: x_mixed, the box of image perm[n] pasted into image n",
                 x_mixed, ex, rtol=0, atol=0)
    assert_close("cutmix(...)[2]: lam_box = 1 - (area of the CLIPPED box) / (H W)", lam, elam,
                 rtol=1e-6, atol=1e-6)
    assert_close("cutmix(...)[1]: y_soft, weighted by the pixel areas", y_soft, ey,
                 rtol=1e-5, atol=1e-6)
    check_unchanged("cutmix", x, copies[0])
    check_unchanged("cutmix (the labels y)", y, copies[1])


@pytest.mark.points(3)
def test_cutmix_label_weights_are_the_pasted_areas(student, seed):
    """Whatever the draws: each image gets one rectangle from one other image, at the same
    place, and its label weights are the fractions of pixels from each image."""
    n, k, height, width = 60, 7, 5, 8
    # Every pixel of every image distinct, so that each pasted pixel tells where it came from.
    x = torch.arange(n * height * width, dtype=torch.float32).reshape(n, 1, height, width) + 1
    y = torch.arange(n) % k
    x_mixed, y_soft, lam = unpack3("cutmix", student.cutmix(x.clone(), y.clone(), 0.5, k,
                                                            student_generator(student, seed)))
    assert_close("the rows of cutmix's y_soft", y_soft.sum(dim=1), torch.ones(n), rtol=1e-5,
                 atol=1e-5)
    one_hot = torch.eye(k)[y]
    checked = 0
    for i in range(n):
        box = (x_mixed[i, 0] != x[i, 0])
        if not box.any():
            continue  # no box, or a box from the image itself: nothing to see
        sources = torch.unique((x_mixed[i, 0][box] - 1) // (height * width)).long()
        if len(sources) != 1:
            raise CheckFailure(f"cutmix's image {i} holds pixels from several other images: paste "
                               f"one box from one partner.")
        j = int(sources[0])
        rows, cols = box.any(dim=1), box.any(dim=0)
        if not torch.equal(rows[:, None] & cols[None, :], box) or \
                not torch.equal(x_mixed[i, 0][box], x[j, 0][box]):
            raise CheckFailure(f"cutmix's image {i}: the pasted pixels must form one rectangle, "
                               f"taken at the same place in the partner image.")
        own = 1 - float(box.sum()) / (height * width)
        expected = own * one_hot[i] + (1 - own) * one_hot[j]
        assert_close(f"cutmix's y_soft[{i}] (the weight of each label is its share of the "
                     f"pixels, after clipping the box at the border: {own:.3f} own)",
                     y_soft[i], expected, rtol=1e-5, atol=1e-5)
        assert_close(f"cutmix's lam[{i}] (the fraction of its own pixels)", lam[i],
                     torch.tensor(own), rtol=1e-5, atol=1e-5)
        checked += 1
    if checked < n // 3:
        raise CheckFailure(f"cutmix pasted a box into only {checked} of {n} images with alpha=0.5.")


# --- soft_cross_entropy ---------------------------------------------------------------------


@pytest.mark.points(2)
def test_soft_cross_entropy_matches_torch(student, rng):
    """soft_cross_entropy against torch.nn.functional.cross_entropy with probability targets,
    on large logits too; and its gradient."""
    logits = torch.from_numpy(rng.standard_normal((6, 4)) * 3).float()
    targets = torch.softmax(torch.from_numpy(rng.standard_normal((6, 4)) * 2).float(), dim=1)
    expected = torch.nn.functional.cross_entropy(logits, targets)
    mine = logits.clone().requires_grad_(True)
    loss = as_tensor("soft_cross_entropy", student.soft_cross_entropy(mine, targets.clone()))
    assert_close("soft_cross_entropy(logits, soft_targets) (mean over the batch of "
                 "-sum_k t_k log_softmax(logits)_k)", loss, expected, rtol=1e-5, atol=1e-6)
    if loss.dim() != 0:
        raise CheckFailure(f"soft_cross_entropy must return a scalar, got shape "
                           f"{tuple(loss.shape)}.")
    loss.backward()
    assert_close("the gradient of soft_cross_entropy with respect to the logits "
                 "((softmax - targets) / N)", mine.grad,
                 (torch.softmax(logits, dim=1) - targets) / 6, rtol=1e-4, atol=1e-6)
    big = logits * 400
    assert_close("soft_cross_entropy on logits of about 1000 (use log_softmax: no inf or nan)",
                 student.soft_cross_entropy(big.clone(), targets.clone()),
                 torch.nn.functional.cross_entropy(big, targets), rtol=1e-4, atol=1e-3)


@pytest.mark.points(1)
def test_soft_cross_entropy_one_hot_is_cross_entropy(student, rng):
    """With one-hot targets it is the usual cross-entropy of the labels."""
    logits = torch.from_numpy(rng.standard_normal((5, 7))).float()
    labels = torch.from_numpy(rng.integers(0, 7, 5))
    assert_close("soft_cross_entropy(logits, one_hot(labels))",
                 student.soft_cross_entropy(logits, torch.eye(7)[labels]),
                 torch.nn.functional.cross_entropy(logits, labels), rtol=1e-5, atol=1e-6)


# --- tta_predict ----------------------------------------------------------------------------

TTA_SPEC = module_spec(
    "torch.nn.Sequential",
    module_spec("torch.nn.Conv2d", 2, 4, 3, padding=1), module_spec("torch.nn.BatchNorm2d", 4),
    module_spec("torch.nn.ReLU"), module_spec("torch.nn.Dropout", p=0.3),
    module_spec("torch.nn.Flatten"), module_spec("torch.nn.Linear", 4 * 5 * 6, 3))


def tta_model(seed):
    """A small CNN with batch norm whose running statistics differ from a batch's."""
    torch.manual_seed(seed)
    model = build_module(TTA_SPEC)
    with torch.no_grad():
        model.train()
        for _ in range(3):
            model(torch.randn(16, 2, 5, 6) * 2 + 1)
    return model.eval()


VIEWS = {"identity": lambda t: t, "hflip": lambda t: t.flip(-1), "vflip": lambda t: t.flip(-2)}


@pytest.mark.points(3)
@pytest.mark.parametrize("views", [["identity", "hflip"], ["hflip"],
                                   ["identity", "hflip", "vflip"], ["vflip", "identity", "vflip"]])
def test_tta_predict_matches_oracle(student, rng, seed, views):
    """tta_predict = mean over the views of softmax(model(view)), in eval mode."""
    model = tta_model(seed)
    theirs = lend(student, TTA_SPEC, model.state_dict(), train=True)
    x = images(rng, (4, 2, 5, 6))
    copy = x.clone()
    probs = as_tensor("tta_predict", student.tta_predict(theirs, x, views))
    assert_shape(f"tta_predict(model, x of 4 images, {views}) (N, K)", probs, (4, 3))
    with torch.no_grad():
        expected = torch.stack([torch.softmax(model(VIEWS[v](copy)), dim=1)
                                for v in views]).mean(dim=0)
    assert_close(f"tta_predict(model, x, {views}): the mean of the softmax PROBABILITIES over the "
                 f"views, with the model in eval mode (batch norm's running statistics)",
                 probs, expected, rtol=1e-5, atol=1e-6)
    check_unchanged("tta_predict", x, copy)


RECORDED_SPEC = module_spec("CallRecorder", TTA_SPEC)


@pytest.mark.points(2)
def test_tta_predict_eval_mode_and_no_grad(student, rng, seed):
    """The model is left in eval mode, every forward pass runs without gradients, and the batch
    norm statistics are untouched."""
    ours = build_module(RECORDED_SPEC)
    ours.inner.load_state_dict(tta_model(seed).state_dict())
    theirs = lend(student, RECORDED_SPEC, ours.state_dict(), train=True)
    x = images(rng, (3, 2, 5, 6))
    probs = as_tensor("tta_predict", student.tta_predict(theirs, x, ["identity", "hflip"]))
    info = describe(student, theirs)
    training = [m["name"] or "the model" for m in info["modules"] if m["training"]]
    if training:
        raise CheckFailure(f"after tta_predict, {', '.join(training[:3])} is still in train mode: "
                           f"call model.eval() (and leave it so).")
    calls = [tuple(c) for c in theirs.calls]
    if len(calls) != 2:
        raise CheckFailure(f"tta_predict with 2 views made {len(calls)} forward passes; expected "
                           f"one per view on the whole batch.")
    if any(grad for _, grad in calls):
        raise CheckFailure("tta_predict ran the model with gradients on: wrap the forward passes "
                           "in `with torch.no_grad():`.")
    if probs.requires_grad:
        raise CheckFailure("tta_predict's probabilities require grad: compute them under "
                           "torch.no_grad().")
    state = theirs.state_dict()
    if not torch.equal(state["inner.1.running_mean"], ours.inner[1].running_mean):
        raise CheckFailure("tta_predict changed the batch norm running statistics: it ran the "
                           "model in train mode.")


@pytest.mark.points(1)
def test_tta_predict_bad_views(student, rng, seed):
    """No view, or an unknown one, raises ValueError."""
    theirs = lend(student, TTA_SPEC, tta_model(seed).state_dict())
    x = images(rng, (2, 2, 5, 6))
    assert_raises("tta_predict(model, x, [])", ValueError, student.tta_predict, theirs, x, [])
    assert_raises('tta_predict(model, x, ["identity", "rot90"])', ValueError,
                  student.tta_predict, theirs, x, ["identity", "rot90"])


# --- the default arguments ------------------------------------------------------------------

# Each transform called with its required arguments only (and the generator): the defaults of
# the docstrings (p=0.5; padding=0; amounts 0, the identity; scale=(0.02, 0.33),
# ratio=(0.3, 3.3), value=0; alpha=0.2 and 1.0, num_classes=10).
DEFAULT_CALLS = {
    "random_horizontal_flip(x)": ("random_horizontal_flip", lambda x, y: (x,)),
    "random_crop(x, (5, 4))": ("random_crop", lambda x, y: (x, (5, 4))),
    "color_jitter(x)": ("color_jitter", lambda x, y: (x,)),
    "random_erasing(x)": ("random_erasing", lambda x, y: (x,)),
    "mixup(x, y)": ("mixup", lambda x, y: (x, y)),
    "cutmix(x, y)": ("cutmix", lambda x, y: (x, y)),
}


@pytest.mark.points(1)
@pytest.mark.parametrize("call", list(DEFAULT_CALLS))
def test_default_arguments(student, reference, rng, seed, call):
    """With its defaults, each transform gives what the reference gives with the same draws."""
    name, args = DEFAULT_CALLS[call]
    x = images(rng, (12, 3, 7, 6))
    y = torch.from_numpy(rng.integers(0, 10, 12))
    theirs = getattr(student, name)(*args(x.clone(), y.clone()),
                                    generator=student_generator(student, seed))
    ours = getattr(reference, name)(*args(x.clone(), y.clone()), generator=our_generator(seed))
    if isinstance(ours, tuple):
        theirs = unpack3(name, theirs)
        parts = ("x_mixed", "y_soft (num_classes=10 by default)", "lam")
    else:
        theirs, ours, parts = (as_tensor(name, theirs),), (ours,), ("the output",)
    for got, want, part in zip(theirs, ours, parts, strict=True):
        assert_shape(f"{call}, {part}", got, tuple(want.shape))
        assert_close(f"{call} with the default arguments of the docstring, {part}, vs the "
                     f"reference with the same generator seed", got, want, rtol=1e-5, atol=1e-6)


# --- inputs left unchanged ------------------------------------------------------------------
#
# The ``check_unchanged`` calls above see a write into x: the sandbox sends back the plain
# tensors a call wrote to (autograder.sandbox.protocol). These checks add torch's own
# word for it: torch refuses an in-place write into a leaf tensor that requires grad ("a
# leaf Variable that requires grad is being used in an in-place operation"), so each
# transform gets a batch that requires grad; out-of-place code goes through (and gives
# the output it gives on a plain batch), code that writes into x raises with the name of
# the operation.

INPLACE_CALLS = {
    "random_horizontal_flip": lambda f, x, y, g: f(x, 0.5, g),
    "random_crop": lambda f, x, y, g: f(x, (5, 6), 2, g),
    "color_jitter": lambda f, x, y, g: f(x, 0.5, 0.5, 0.5, g),
    "random_erasing": lambda f, x, y, g: f(x, (0.1, 0.4), (0.5, 2.0), 0.0, g),
    "mixup": lambda f, x, y, g: f(x, y, 1.0, 4, g),
    "cutmix": lambda f, x, y, g: f(x, y, 1.0, 4, g),
}


def first_tensor(out):
    return out[0] if isinstance(out, tuple) and out else out


@pytest.mark.points(1)
@pytest.mark.parametrize("name", list(INPLACE_CALLS))
def test_input_not_modified_in_place(student, rng, seed, name):
    """x is not modified: on a batch that requires grad, where torch refuses in-place writes,
    the transform goes through and gives the output it gives on a plain batch."""
    x = images(rng, (6, 3, 7, 8))
    y = torch.from_numpy(rng.integers(0, 4, 6))
    call = INPLACE_CALLS[name]
    try:
        out = call(getattr(student, name), x.clone().requires_grad_(True), y.clone(),
                   student_generator(student, seed))
    except RuntimeError as e:
        if "in-place" not in str(e):
            raise
        raise CheckFailure(
            f"{name} writes into its input x in place (torch says: {str(e)[:160]}): the "
            f"caller's images would be changed. Compute a new tensor (torch.where, "
            f"out-of-place arithmetic, or x.clone() first).") from None
    out = as_tensor(name, first_tensor(out))
    plain = as_tensor(name, first_tensor(call(getattr(student, name), x.clone(), y.clone(),
                                              student_generator(student, seed))))
    assert_close(f"{name} on a batch that requires grad vs on the same batch without (same "
                 f"generator seed)", out.detach(), plain, rtol=1e-5, atol=1e-6)
