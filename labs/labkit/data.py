"""Data sets for the labs: an offline "shapes" set and CIFAR-10.

Every lab gets its images through one function::

    from labkit.data import load_dataset, class_names
    x_train, y_train = load_dataset(split="train")   # (50000, 3, 32, 32) uint8, (50000,) int64
    x_test, y_test = load_dataset(split="test")      # (10000, 3, 32, 32) uint8, (10000,) int64

Three data sets are known:

``"shapes"`` (the default)
    A CIFAR-10 look-alike that needs no internet: 32x32 colour images of 10 classes of
    shapes (circle, square, triangle, ...) drawn at a random position, scale, rotation and
    colour, on textured backgrounds, with clutter, partial occlusion and pixel noise.
    50,000 training and 10,000 test images. It is generated on first use (about ten
    seconds) and cached under ``data_dir() / "shapes"``.
``"shapes_target"``
    The same kind of images with 10 *other* classes (frames, 4- and 6-point stars, letters,
    arrows, ...): the target task of the transfer-learning lab (transfert d'apprentissage).
    5,000 training and 2,000 test images; labs usually keep only a few per class.
``"shapes_scenes"``
    The classes of ``"shapes"`` in outdoor-like scenes, for the preprocessing lab: a
    bluish sky above a brownish ground (a horizon at a random height), the shape near the
    image centre. Its mean image is a picture (sky, ground, a grey blob where the shapes
    are) and its three channels have different statistics, as photos do, where the mean
    image of ``"shapes"`` is a flat grey and its channels alike. 10,000 training and 2,000
    test images.
``"cifar10"``
    The real CIFAR-10, read from ``data_dir() / "cifar10"``. It must have been downloaded
    beforehand with ``make data-cifar10`` (needs internet); nothing is downloaded here.

The data set used when no name is given is read from the environment variable
``LAB_DATASET`` (``export LAB_DATASET=cifar10``), so a lab runs unchanged on either set.

Canonical poses (for the data-augmentation lab): ``load_dataset("shapes", "train",
canonical=True)`` gives the same images with every shape centred, upright and never
mirrored (its colours, scale, background, clutter and noise unchanged), so that a model
trained on them has never seen the translations, rotations and mirror images that the
standard test set holds, and augmentation by crops and flips has something to teach. It is
cached in a file of its own (``data_dir() / "shapes" / "train_canonical.npz"``); the
default images are not affected. The preprocessing lab uses ``"shapes_scenes"`` in canonical
poses, on which the mean image of each class shows its shape.

Images are returned as raw ``uint8`` pixels in ``(N, C, H, W)`` order, as a convolution
expects them; converting to float and standardizing is the lab's job.
"""

from __future__ import annotations

import json
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

__all__ = ["load_dataset", "class_names", "data_dir", "generate_shapes", "DATASETS", "SPLITS"]

DATASETS = ("shapes", "shapes_target", "shapes_scenes", "cifar10")
SPLITS = ("train", "test")

SOURCE_CLASSES = [
    "circle", "square", "triangle", "star", "cross",
    "ring", "crescent", "heart", "half-disk", "drop",
]  # fmt: skip
TARGET_CLASSES = [
    "square frame", "triangle frame", "4-point star", "6-point star", "ellipse",
    "T", "L", "arrow", "hourglass", "dumbbell",
]  # fmt: skip
CIFAR10_CLASSES = [
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
]  # fmt: skip

# Bump when the pictures change, so that every cached file is regenerated.
FORMAT_VERSION = 1

# (number of images, seed) of each cached split. Every split has its own seed, so that no
# test image is also a training image.
_SPLIT_SIZES = {
    ("shapes", "train"): (50_000, 1),
    ("shapes", "test"): (10_000, 2),
    ("shapes_target", "train"): (5_000, 3),
    ("shapes_target", "test"): (2_000, 4),
    ("shapes_scenes", "train"): (10_000, 5),
    ("shapes_scenes", "test"): (2_000, 6),
}
_TASK_OF = {"shapes": "source", "shapes_target": "target", "shapes_scenes": "source"}

# What "shapes_scenes" draws instead of the textured backgrounds (colours in [0, 1], RGB):
# every image has its own sky and ground colours, around these, and a horizon between.
SCENE_PARAMS = {
    "sky_rgb": [0.55, 0.68, 0.88],
    "ground_rgb": [0.47, 0.40, 0.27],
    "colour_std": 0.07,  # per image and channel, around the two colours above
    "horizon_px": [-3.0, 7.0],  # the horizon's height above the image centre
    "horizon_blur_px": 2.5,
    "texture_weight": 0.25,  # how much of the usual texture shows through the scene
    "center_jitter_px": 2.0,  # instead of GENERATOR_PARAMS' 5: the shapes stay central
}

# Everything that decides what the pictures look like. It is stored in the cache, so that a
# change here makes old caches stale. Lengths are in pixels, a shape's own size is about one
# "unit" from its centre to its edge, and colours are in [0, 1].
GENERATOR_PARAMS = {
    "image_size": 32,
    "scale_px": [7.0, 11.5],  # pixels per shape unit: shapes are about 14 to 23 px wide
    "center_jitter_px": 5.0,  # the shape's centre lies this far from the image centre at most
    "max_rotation_deg": 30.0,
    "mirror_prob": 0.5,
    "min_contrast": 0.35,  # least RGB distance between a shape and its background's mean
    "stripes_fill_prob": 0.25,  # share of shapes filled with stripes rather than shading
    "back_clutter_prob": [0.6, 0.3],  # one entry per clutter item behind the shape
    "front_clutter_prob": [0.35],  # one entry per item in front of it (occlusion)
    "noise_std": [0.0, 0.08],  # per-image standard deviation of the (uniform) pixel noise
    "chunk_size": 256,  # images drawn per vectorized batch (a chunk has its own seed)
}


def data_dir() -> Path:
    """Return the folder that holds the data sets.

    It is the environment variable ``LAB_DATA_DIR`` when set, else the repository's
    ``data/`` folder (two levels above this file: ``labs/labkit/../../data``).

    Returns
    -------
    pathlib.Path
        The folder; it may not exist yet.
    """
    env = os.environ.get("LAB_DATA_DIR")
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent.parent / "data"


def _resolve_name(name: str | None) -> str:
    if name is None:
        name = os.environ.get("LAB_DATASET") or "shapes"
    if name not in DATASETS:
        raise ValueError(f"unknown data set {name!r}; valid names are {', '.join(DATASETS)}")
    return name


def class_names(name: str | None = None) -> list[str]:
    """Return the 10 class names of a data set, in label order.

    Parameters
    ----------
    name : str or None
        ``"shapes"``, ``"shapes_target"``, ``"shapes_scenes"`` or ``"cifar10"``; None means
        the environment
        variable ``LAB_DATASET``, or ``"shapes"`` when it is not set.

    Returns
    -------
    list of str
        ``class_names(name)[k]`` is the name of label ``k``.
    """
    name = _resolve_name(name)
    table = {"shapes": SOURCE_CLASSES, "shapes_target": TARGET_CLASSES,
             "shapes_scenes": SOURCE_CLASSES, "cifar10": CIFAR10_CLASSES}
    return list(table[name])


def load_dataset(
    name: str | None = None, split: str = "train", canonical: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Load one split of a data set as numpy arrays.

    Parameters
    ----------
    name : str or None
        ``"shapes"`` (offline, 50,000 train / 10,000 test), ``"shapes_target"`` (offline,
        the transfer-learning target task, 5,000 train / 2,000 test), ``"shapes_scenes"``
        (offline, the classes of ``"shapes"`` in outdoor-like scenes, 10,000 / 2,000) or
        ``"cifar10"``
        (50,000 / 10,000, downloaded beforehand). None means the environment variable
        ``LAB_DATASET``, or ``"shapes"`` when it is not set.
    split : str
        ``"train"`` or ``"test"``.
    canonical : bool
        For the shapes data sets only: when True, the same images (same
        count, labels, colours, scale, background, clutter and noise) with every shape in
        its canonical pose: centred, upright and never mirrored (see ``generate_shapes``).
        Cached apart from the standard images. ``"cifar10"`` has no such option.

    Returns
    -------
    x : np.ndarray of uint8, shape (N, 3, 32, 32)
        The images, channels first, pixel values 0..255.
    y : np.ndarray of int64, shape (N,)
        The labels, 0..9; see ``class_names(name)``.

    Raises
    ------
    ValueError
        For an unknown name or split, or ``canonical=True`` with ``"cifar10"``.
    FileNotFoundError
        For ``"cifar10"`` when it has not been downloaded.
    """
    name = _resolve_name(name)
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid splits are {', '.join(SPLITS)}")
    if name == "cifar10":
        if canonical:
            raise ValueError("canonical=True exists for the shapes data sets only; CIFAR-10's "
                             "photos have no canonical pose.")
        return _load_cifar10(split)
    return _load_shapes(name, split, canonical=bool(canonical))


# ---------------------------------------------------------------------------------------------
# CIFAR-10


def _load_cifar10(split: str) -> tuple[np.ndarray, np.ndarray]:
    # torchvision is imported here only: the shapes sets need nothing but numpy.
    from torchvision.datasets import CIFAR10

    root = data_dir() / "cifar10"
    try:
        ds = CIFAR10(root=str(root), train=(split == "train"), download=False)
    except RuntimeError as err:  # torchvision's "Dataset not found or corrupted."
        raise FileNotFoundError(
            f"CIFAR-10 was not found (or is incomplete) in {root}. Download it once with "
            "`make data-cifar10` (needs internet), or use the offline data set: "
            "load_dataset('shapes') or `export LAB_DATASET=shapes`."
        ) from err
    # torchvision keeps CIFAR as (N, H, W, C); the labs want (N, C, H, W).
    x = np.ascontiguousarray(ds.data.transpose(0, 3, 1, 2), dtype=np.uint8)
    y = np.asarray(ds.targets, dtype=np.int64)
    return x, y


# ---------------------------------------------------------------------------------------------
# Shapes: the cache


def _cache_path(name: str, split: str, canonical: bool = False) -> Path:
    return data_dir() / name / (f"{split}_canonical.npz" if canonical else f"{split}.npz")


def _expected_meta(name: str, split: str, canonical: bool = False) -> dict:
    n, seed = _SPLIT_SIZES[(name, split)]
    meta = {
        "version": FORMAT_VERSION,
        "n": n,
        "seed": seed,
        "task": _TASK_OF[name],
        "params": GENERATOR_PARAMS,
    }
    if canonical:  # only then: the standard caches keep the meta they were written with
        meta["canonical"] = True
    if name == "shapes_scenes":
        meta["scenes"] = SCENE_PARAMS
    return meta


def _read_cache(path: Path, meta: dict) -> tuple[np.ndarray, np.ndarray] | None:
    """Return the cached arrays, or None (with a message) when the file can't be used."""
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            stored = json.loads(str(f["meta"]))
            if stored != meta:
                print(f"labkit.data: {path} was made with other generator settings; regenerating.")
                return None
            x, y = f["x"], f["y"]
    except Exception as err:  # noqa: BLE001 - whatever is wrong with a cache, remake it
        print(f"labkit.data: {path} is unreadable ({type(err).__name__}: {err}); regenerating.")
        return None
    n = meta["n"]
    if x.shape != (n, 3, 32, 32) or x.dtype != np.uint8 or y.shape != (n,) or y.dtype != np.int64:
        print(f"labkit.data: {path} holds arrays of the wrong shape or type; regenerating.")
        return None
    return x, y


def _write_cache(path: Path, x: np.ndarray, y: np.ndarray, meta: dict) -> None:
    """Write the cache atomically: a reader sees either the old file or the whole new one."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                np.savez(f, x=x, y=y, meta=np.array(json.dumps(meta)))
            # mkstemp makes the file private (0600); give it the usual permissions, so that a
            # data folder shared by a class stays readable by all.
            os.chmod(tmp, 0o666 & ~_umask())
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as err:  # a read-only data folder costs the cache, not the lab
        print(f"labkit.data: could not cache {path} ({err}); using the images uncached.")


def _umask() -> int:
    mask = os.umask(0)  # the only way to read the umask is to set it
    os.umask(mask)
    return mask


def _load_shapes(name: str, split: str, canonical: bool = False) -> tuple[np.ndarray, np.ndarray]:
    meta = _expected_meta(name, split, canonical)
    path = _cache_path(name, split, canonical)
    cached = _read_cache(path, meta)
    if cached is not None:
        return cached
    what = f"{name}/{split}" + (" in canonical poses" if canonical else "")
    print(f"labkit.data: generating {what} ({meta['n']} images) into {path} ...")
    x, y = generate_shapes(meta["n"], meta["seed"], task=meta["task"], canonical=canonical,
                           scenes=name == "shapes_scenes")
    _write_cache(path, x, y, meta)
    return x, y


# ---------------------------------------------------------------------------------------------
# Shapes: the generator


def generate_shapes(
    n: int, seed: int, task: str = "source", canonical: bool = False, scenes: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Draw ``n`` images of shapes; the same ``(n, seed, task, canonical, scenes)`` always
    gives the same bytes.

    Each image shows one shape of its class, drawn anti-aliased from a signed-distance
    function at a random position, scale, rotation (within about 30 degrees) and
    mirroring, filled with a shaded or striped colour, on a two-colour textured background
    (gradient, stripes or blotches), with small clutter behind and in front of it (which
    may hide part of it) and pixel noise.

    Parameters
    ----------
    n : int
        Number of images.
    seed : int
        Random seed.
    task : str
        ``"source"`` for the classes of ``"shapes"``, ``"target"`` for those of
        ``"shapes_target"`` (10 other classes, for transfer learning).
    canonical : bool
        False (the default): the pictures described above. True: every shape in its
        canonical pose, centred on the image centre, upright (no rotation) and never
        mirrored; everything else (labels, scale, colours, background, clutter, noise) is
        drawn exactly as with False, so image ``i`` of both is the same picture but for the
        shape's pose. A training set without the variations that the test set has: what
        data augmentation (random crops, flips) can teach back.
    scenes : bool
        True: an outdoor-like scene instead of the textured background (``SCENE_PARAMS``:
        each image's own sky colour above its own ground colour, the usual texture faintly
        over both), and the shape within ``SCENE_PARAMS["center_jitter_px"]`` of the centre.
        What ``"shapes_scenes"`` holds.

    Returns
    -------
    x : np.ndarray of uint8, shape (n, 3, 32, 32)
    y : np.ndarray of int64, shape (n,)
        Balanced labels: every class has ``n // 10`` or ``n // 10 + 1`` images (exactly
        ``n / 10`` when ``n`` is a multiple of 10), in random order.
    """
    if task not in _SDFS:
        raise ValueError(f"unknown task {task!r}; valid tasks are {', '.join(_SDFS)}")
    n = int(n)
    task_id = list(_SDFS).index(task)
    rng = np.random.default_rng([seed, task_id, 0])
    y = rng.permutation(np.arange(n) % 10).astype(np.int64)
    x = np.empty((n, 3, 32, 32), dtype=np.uint8)

    # Chunks are small enough to stay in the CPU cache, and each has its own seed, so the
    # result does not depend on how many threads draw them. numpy releases the GIL inside
    # its array operations, so threads do run in parallel.
    chunk = GENERATOR_PARAMS["chunk_size"]
    starts = range(0, n, chunk)

    def draw(i_start):
        i, start = i_start
        stop = min(start + chunk, n)
        chunk_rng = np.random.default_rng([seed, task_id, i + 1])
        x[start:stop] = _render(y[start:stop], chunk_rng, task, canonical, scenes)

    workers = min(len(starts), os.cpu_count() or 1, 8)
    if workers > 1:
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(draw, enumerate(starts)))
    else:
        for item in enumerate(starts):
            draw(item)
    return x, y


# Signed-distance functions (SDF): negative inside the shape, positive outside, in shape
# units. They take the pixel coordinates already moved into the shape's own frame (x to the
# right, y up, the shape's centre at 0), arrays of any shape. Most are exact or close to it;
# where they are not (max of half-planes), only the 1-pixel anti-aliasing band is affected.
# Many follow Inigo Quilez's catalogue of 2D distance functions.


def _len(x, y):
    return np.sqrt(x * x + y * y)


def _sd_circle(x, y, r):
    return _len(x, y) - r


def _sd_box(x, y, hx, hy):
    qx = np.abs(x) - hx
    qy = np.abs(y) - hy
    outside = _len(np.maximum(qx, 0), np.maximum(qy, 0))
    return outside + np.minimum(np.maximum(qx, qy), 0)


def _sd_convex(x, y, edges):
    """Convex polygon as the intersection of half-planes ``(nx, ny, offset)``."""
    d = None
    for ang, off in edges:
        nx, ny = np.float32(np.cos(ang)), np.float32(np.sin(ang))
        di = x * nx + y * ny - np.float32(off)
        d = di if d is None else np.maximum(d, di)
    return d


def _sd_triangle(x, y, r):
    """Equilateral triangle pointing up, centroid at 0, circumradius ``r``."""
    edges = [(-np.pi / 2, r / 2), (np.pi / 6, r / 2), (5 * np.pi / 6, r / 2)]
    return _sd_convex(x, y, edges)


def _sd_star(x, y, r, n, m):
    """Star with ``n`` points of outer radius ``r``; ``m`` in [2, n] sets how thin they are."""
    an, en = np.pi / n, np.pi / m
    acx, acy = np.cos(an), np.sin(an)
    ecx, ecy = np.cos(en), np.sin(en)
    # Fold the plane into one half-sector of the star: the angle is measured from the y axis
    # so that a point faces up.
    b = np.mod(np.arctan2(x, y), np.float32(2 * an)) - np.float32(an)
    ln = _len(x, y)
    px = ln * np.cos(b) - np.float32(r * acx)
    py = ln * np.abs(np.sin(b)) - np.float32(r * acy)
    h = np.clip(-(px * np.float32(ecx) + py * np.float32(ecy)), 0, np.float32(r * acy / ecy))
    px = px + np.float32(ecx) * h
    py = py + np.float32(ecy) * h
    return _len(px, py) * np.sign(px)


def _sd_heart(x, y):
    # Quilez's heart spans y in [0, 1.07] and x in [-0.62, 0.62]; recentre and enlarge it.
    k = np.float32(0.58)
    px, py = np.abs(x) * k, y * k + np.float32(0.52)
    top = _len(px - 0.25, py - 0.75) - np.float32(np.sqrt(2) / 4)
    t = 0.5 * np.maximum(px + py, 0)
    low = np.sqrt(np.minimum(px * px + (py - 1) ** 2, (px - t) ** 2 + (py - t) ** 2))
    low = low * np.sign(px - py)
    return np.where(px + py > 1, top, low) / k


def _sd_drop(x, y):
    # Quilez's uneven capsule: a round bottom (radius r1) that narrows to a point on top.
    r1, r2, h = 0.55, 0.06, 1.3
    px, py = np.abs(x), y + np.float32(0.4)
    b = (r1 - r2) / h
    a = float(np.sqrt(1 - b * b))  # a Python float keeps the arrays float32
    k = -b * px + a * py
    bottom = _len(px, py) - np.float32(r1)
    top = _len(px, py - np.float32(h)) - np.float32(r2)
    side = a * px + b * py - np.float32(r1)
    return np.where(k < 0, bottom, np.where(k > a * h, top, side))


def _sd_ellipse(x, y, a, b):
    # A cheap approximation (exact on the curve), good enough for a 1-pixel edge.
    k0 = _len(x / a, y / b)
    k1 = _len(x / (a * a), y / (b * b))
    return k0 * (k0 - 1) / np.maximum(k1, np.float32(1e-6))


def _onion(d, width):
    """A frame of the given width along the inside of a shape's outline."""
    return np.abs(d + np.float32(width / 2)) - np.float32(width / 2)


def _union(*ds):
    return np.minimum.reduce(ds)


_f = np.float32  # offsets written as float32, so that the arrays stay float32

# Each shape fits in the unit disk, more or less, and is roughly centred.
_SOURCE_SDFS = {
    "circle": lambda x, y: _sd_circle(x, y, 0.85),
    "square": lambda x, y: _sd_box(x, y, 0.72, 0.72),
    "triangle": lambda x, y: _sd_triangle(x, y + _f(0.2), 1.1),
    "star": lambda x, y: _sd_star(x, y + _f(0.05), 1.0, 5, 2.5),
    "cross": lambda x, y: _union(_sd_box(x, y, 0.9, 0.3), _sd_box(x, y, 0.3, 0.9)),
    "ring": lambda x, y: np.abs(_sd_circle(x, y, 0.67)) - _f(0.23),
    # A disk minus another disk, shifted to the right.
    "crescent": lambda x, y: np.maximum(_sd_circle(x, y, 0.85), -_sd_circle(x - _f(0.45), y, 0.68)),
    "heart": _sd_heart,
    # A disk cut by the horizontal line through its centre.
    "half-disk": lambda x, y: np.maximum(_sd_circle(x, y + _f(0.35), 0.95), -(y + _f(0.35))),
    "drop": _sd_drop,
}

_TARGET_SDFS = {
    "square frame": lambda x, y: _onion(_sd_box(x, y, 0.8, 0.8), 0.3),
    "triangle frame": lambda x, y: _onion(_sd_triangle(x, y + _f(0.2), 1.15), 0.32),
    "4-point star": lambda x, y: _sd_star(x, y, 1.0, 4, 2.4),
    "6-point star": lambda x, y: _sd_star(x, y, 0.95, 6, 3.2),
    "ellipse": lambda x, y: _sd_ellipse(x, y, 0.95, 0.5),
    "T": lambda x, y: _union(
        _sd_box(x, y - _f(0.65), 0.85, 0.22),  # the bar
        _sd_box(x, y + _f(0.2), 0.22, 0.75),  # the stem
    ),
    "L": lambda x, y: _union(
        _sd_box(x + _f(0.45), y, 0.22, 0.9),
        _sd_box(x, y + _f(0.68), 0.67, 0.22),
    ),
    "arrow": lambda x, y: _union(
        _sd_box(x + _f(0.35), y, 0.6, 0.17),  # the shaft
        _sd_convex(x, y, [(np.pi, -0.15), (0.927, 0.57), (-0.927, 0.57)]),  # the head
    ),
    # A double cone |y| >= 1.25 |x| - 0.12 (1.6 is the length of its normal), cut by a box.
    "hourglass": lambda x, y: np.maximum(
        _sd_box(x, y, 0.7, 0.9), (1.25 * np.abs(x) - np.abs(y) - _f(0.12)) / _f(1.6)
    ),
    "dumbbell": lambda x, y: _union(
        _sd_circle(np.abs(x) - _f(0.62), y, 0.34),  # both weights, by symmetry
        _sd_box(x, y, 0.6, 0.1),  # the bar
    ),
}
assert list(_SOURCE_SDFS) == SOURCE_CLASSES and list(_TARGET_SDFS) == TARGET_CLASSES

# The distance functions of each task, in label order.
_SDFS = {"source": list(_SOURCE_SDFS.values()), "target": list(_TARGET_SDFS.values())}


# Rendering. A chunk of B images is drawn at once: per-image parameters are arrays of shape
# (B, 1, 1) that broadcast against the (H, W) pixel grid.


def _grid(size):
    # Pixel centres, in pixels from the image centre, y pointing up.
    c = np.arange(size, dtype=np.float32) + np.float32(0.5 - size / 2)
    return c[None, None, :], -c[None, :, None]


def _u(rng, lo, hi, b):
    """``b`` uniform draws in [lo, hi) shaped (b, 1, 1) for broadcasting."""
    return rng.uniform(lo, hi, size=(b, 1, 1)).astype(np.float32)


def _coverage(d_px):
    """Anti-aliased coverage of a pixel whose centre is ``d_px`` pixels from an edge."""
    return np.clip(np.float32(0.5) - d_px, 0, 1)


def _blend(img, alpha, colour):
    """Paint ``colour`` (B, 3, 1, 1) or (B, 3, H, W) over ``img`` with coverage ``alpha``."""
    # In place, with one temporary: this is the hottest line of the generator.
    tmp = np.subtract(colour, img)
    tmp *= alpha[:, None]
    img += tmp


def _upsample_matrix(cells, size):
    """The (size, cells) matrix of a bilinear interpolation from ``cells`` to ``size`` points."""
    pos = (np.arange(size) + 0.5) / size * (cells - 1)
    i0 = np.minimum(np.floor(pos).astype(int), cells - 2)
    w = pos - i0
    m = np.zeros((size, cells), dtype=np.float32)
    m[np.arange(size), i0] = 1 - w
    m[np.arange(size), i0 + 1] = w
    return m


def _background(rng, b, x, y):
    """Two-colour textured backgrounds: a pattern t in [0, 1] mixes colours c1 and c2."""
    size = x.shape[-1]
    kind = rng.integers(0, 4, size=b)
    ang = _u(rng, 0, 2 * np.pi, b)
    proj = x * np.cos(ang) + y * np.sin(ang)
    t = np.empty((b, size, size), dtype=np.float32)

    # Linear gradient over a random length.
    g = kind == 0
    t[g] = np.clip(0.5 + proj[g] / _u(rng, 12, 40, b)[g], 0, 1)
    # Radial gradient around a random point.
    g = kind == 1
    cx, cy = _u(rng, -16, 16, b), _u(rng, -16, 16, b)
    t[g] = np.clip(_len(x - cx[g], y - cy[g]) / _u(rng, 12, 36, b)[g], 0, 1)
    # Stripes, from soft waves to hard bands.
    g = kind == 2
    period, phase, hard = _u(rng, 4, 12, b), _u(rng, 0, 2 * np.pi, b), _u(rng, 1, 6, b)
    wave = np.sin(proj[g] * (2 * np.pi / period[g]) + phase[g])
    t[g] = np.clip(0.5 + 0.5 * hard[g] * wave, 0, 1)
    # Blotches: a coarse random grid, smoothly interpolated.
    g = kind == 3
    cells = 5
    m = _upsample_matrix(cells, size)
    coarse = rng.random((int(g.sum()), cells, cells), dtype=np.float32)
    t[g] = m @ coarse @ m.T

    c1 = rng.random((b, 3, 1, 1), dtype=np.float32)
    c2 = rng.random((b, 3, 1, 1), dtype=np.float32)
    # Keep the two colours apart enough for the texture to show, but not always by much.
    c2 = c1 + (c2 - c1) * _u(rng, 0.3, 1.0, b)[:, None]
    img = c1 + t[:, None] * (c2 - c1)
    return img, (c1 + c2)[:, :, 0, 0] / 2


def _clutter(img, rng, x, y, prob):
    """Paint one small item (a disk, a stick or a rectangle) on a random subset of images."""
    b = img.shape[0]
    # Images without the item get it far outside the picture, where it covers nothing.
    on = rng.random((b, 1, 1)) < prob
    cx = np.where(on, _u(rng, -15, 15, b), np.float32(1e3))
    cy = _u(rng, -15, 15, b)
    ang = _u(rng, 0, np.pi, b)
    ca, sa = np.cos(ang), np.sin(ang)
    u, v = (x - cx) * ca + (y - cy) * sa, -(x - cx) * sa + (y - cy) * ca
    # All three kinds are rounded rectangles (half sizes hx, hy, corner radius r), so one
    # distance function draws them all: a disk has hx = hy = r, a stick is long with r = hy.
    kind = rng.integers(0, 3, size=(b, 1, 1))
    r_disk, long_stick, thin = _u(rng, 1.0, 3.5, b), _u(rng, 3.0, 9.0, b), _u(rng, 0.5, 1.2, b)
    hx = np.choose(kind, [r_disk, long_stick, _u(rng, 1.0, 4.5, b)])
    hy = np.choose(kind, [r_disk, thin, _u(rng, 1.0, 4.5, b)])
    r = np.choose(kind, [r_disk, thin, np.full_like(thin, 0.5)])
    # The distance is exact outside and -r inside, which is all the coverage needs since r is
    # at least half a pixel; it is cheaper than _sd_box.
    qx = np.maximum(np.abs(u) - (hx - r), 0)
    qy = np.maximum(np.abs(v) - (hy - r), 0)
    d = _len(qx, qy) - r
    colour = rng.random((b, 3, 1, 1), dtype=np.float32)
    _blend(img, _coverage(d), colour)


def _contrasting_colour(rng, b, bg_mean, min_dist):
    """Random colours, moved away from each background's mean when closer than ``min_dist``.

    Distances are RGB distances, colours in [0, 1]. After clipping into the RGB cube a few in
    a thousand end up closer than ``min_dist``.
    """
    col = rng.random((b, 3), dtype=np.float32)
    diff = col - bg_mean
    dist = np.linalg.norm(diff, axis=1, keepdims=True)
    # Push colours that are too close away from the background, along the same direction
    # (or towards the opposite colour when they coincide), and clip into the RGB cube.
    direction = np.where(dist > 1e-3, diff / np.maximum(dist, 1e-3), 0.5 - bg_mean)
    pushed = bg_mean + direction * np.float32(min_dist * 1.5)
    col = np.where(dist < min_dist, np.clip(pushed, 0, 1), col)
    return col[:, :, None, None]


def _shape_fill(rng, b, lx, ly, col, p_stripes):
    """The colour of every pixel of the shape: shaded, or striped with a second colour."""
    ang = _u(rng, 0, 2 * np.pi, b)
    proj = lx * np.cos(ang) + ly * np.sin(ang)  # in shape units, about -1..1
    shade = 1 + _u(rng, -0.45, 0.45, b) * proj
    striped = _u(rng, 0, 1, b) < p_stripes
    period = _u(rng, 0.35, 0.8, b)
    bands = (np.sin(proj * (2 * np.pi / period)) > 0) & striped
    col2 = rng.random((b, 3, 1, 1), dtype=np.float32)
    # Mixed on one channel first, so that only two passes run over the three channels. Values
    # a little above 1 are clipped at the end, with the whole image.
    shade = np.where(bands, np.float32(0), shade)
    return col * shade[:, None] + col2 * bands[:, None]


def _scene(img, rng, y):
    """Paint a sky over a ground on the textured ``img`` (in place), which keeps
    ``SCENE_PARAMS["texture_weight"]`` of its texture; returns each image's mean colour."""
    q = SCENE_PARAMS
    b = img.shape[0]
    std = np.float32(q["colour_std"])
    sky = np.float32(q["sky_rgb"]) + std * rng.standard_normal((b, 3), dtype=np.float32)
    ground = np.float32(q["ground_rgb"]) + std * rng.standard_normal((b, 3), dtype=np.float32)
    horizon = _u(rng, *q["horizon_px"], b)
    t = 1 / (1 + np.exp(-(y - horizon) / np.float32(q["horizon_blur_px"])))  # 1 in the sky
    scene = ground[:, :, None, None] + t[:, None] * (sky - ground)[:, :, None, None]
    w = np.float32(q["texture_weight"])
    img *= w
    img += (1 - w) * scene
    return img.mean(axis=(2, 3))


def _render(
    labels: np.ndarray, rng: np.random.Generator, task: str, canonical: bool = False,
    scenes: bool = False,
) -> np.ndarray:
    """Draw one chunk of images of the given labels; returns (B, 3, H, W) uint8.

    ``canonical``: the pose (centre, rotation, mirroring) is drawn as usual, so that every
    later draw is the same, then replaced by the canonical one (centred, upright, unmirrored).
    """
    p = GENERATOR_PARAMS
    b = len(labels)
    x, y = _grid(p["image_size"])

    img, bg_mean = _background(rng, b, x, y)
    if scenes:
        bg_mean = _scene(img, rng, y)
    for prob in p["back_clutter_prob"]:
        _clutter(img, rng, x, y, prob)

    # The shape's frame: move, rotate, scale and mirror the pixel grid into shape units.
    j = np.float32(SCENE_PARAMS["center_jitter_px"] if scenes else p["center_jitter_px"])
    cx, cy = _u(rng, -j, j, b), _u(rng, -j, j, b)
    rot = np.deg2rad(p["max_rotation_deg"])
    ang = _u(rng, -rot, rot, b)
    scale = _u(rng, *p["scale_px"], b)
    mirror = np.where(rng.random((b, 1, 1)) < p["mirror_prob"], -1, 1).astype(np.float32)
    if canonical:
        cx, cy, ang, mirror = (np.zeros_like(cx), np.zeros_like(cy), np.zeros_like(ang),
                               np.ones_like(mirror))
    ca, sa = np.cos(ang), np.sin(ang)
    lx = ((x - cx) * ca + (y - cy) * sa) * (mirror / scale)
    ly = (-(x - cx) * sa + (y - cy) * ca) / scale

    d = np.empty((b, *lx.shape[1:]), dtype=np.float32)
    for k, sdf in enumerate(_SDFS[task]):
        sel = labels == k
        if sel.any():
            d[sel] = sdf(lx[sel], ly[sel])
    col = _contrasting_colour(rng, b, bg_mean, p["min_contrast"])
    fill = _shape_fill(rng, b, lx, ly, col, p["stripes_fill_prob"])
    _blend(img, _coverage(d * scale), fill)

    for prob in p["front_clutter_prob"]:
        _clutter(img, rng, x, y, prob)

    # Uniform noise from raw random bytes: several times cheaper than Gaussian noise, and the
    # eye (or a CNN) can hardly tell them apart.
    noise = np.frombuffer(rng.bytes(img.size), dtype=np.int8).reshape(img.shape)
    sigma = _u(rng, *p["noise_std"], b)[:, None] / np.float32(73.9)  # int8's std is 73.9
    img += noise * sigma
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
