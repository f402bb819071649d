"""Tests of labkit.data: the shapes generator, its cache, and the data set loaders.

They are fast: the cached splits are shrunk to a few dozen images and every file goes to a
temporary LAB_DATA_DIR.
"""

import hashlib
import io
import json
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest

from labkit import data

SMALL_SIZES = {
    ("shapes", "train"): (60, 1),
    ("shapes", "test"): (30, 2),
    ("shapes_target", "train"): (40, 3),
    ("shapes_target", "test"): (20, 4),
    ("shapes_scenes", "train"): (40, 5),
    ("shapes_scenes", "test"): (20, 6),
}


@pytest.fixture
def data_env(tmp_path, monkeypatch):
    """A temporary data folder, small splits, and no LAB_DATASET from the caller's shell."""
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LAB_DATASET", raising=False)
    monkeypatch.setattr(data, "_SPLIT_SIZES", SMALL_SIZES)
    return tmp_path


# ---------------------------------------------------------------------------------------------
# The generator


def test_generate_shapes_types_and_shapes():
    x, y = data.generate_shapes(25, seed=0)
    assert x.shape == (25, 3, 32, 32) and x.dtype == np.uint8
    assert y.shape == (25,) and y.dtype == np.int64
    assert set(np.unique(y)) <= set(range(10))
    # Real pictures, not a blank or saturated canvas.
    per_image_std = x.reshape(25, -1).std(axis=1)
    assert per_image_std.min() > 5, per_image_std
    assert 40 < x.mean() < 215


def test_generate_shapes_is_deterministic():
    x1, y1 = data.generate_shapes(30, seed=5)
    x2, y2 = data.generate_shapes(30, seed=5)
    assert x1.tobytes() == x2.tobytes() and y1.tobytes() == y2.tobytes()
    x3, _ = data.generate_shapes(30, seed=6)
    assert x1.tobytes() != x3.tobytes()
    x4, _ = data.generate_shapes(30, seed=5, task="target")
    assert x1.tobytes() != x4.tobytes()


def test_generate_shapes_does_not_depend_on_thread_count(monkeypatch):
    n = data.GENERATOR_PARAMS["chunk_size"] * 2 + 7  # three chunks, the last one partial
    x_many, y_many = data.generate_shapes(n, seed=1)
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    x_one, y_one = data.generate_shapes(n, seed=1)
    assert np.array_equal(x_many, x_one) and np.array_equal(y_many, y_one)


@pytest.mark.parametrize("n", [50, 57])
@pytest.mark.parametrize("task", ["source", "target"])
def test_generate_shapes_classes_are_balanced(n, task):
    _, y = data.generate_shapes(n, seed=2, task=task)
    counts = np.bincount(y, minlength=10)
    assert counts.min() == n // 10 and counts.max() == -(-n // 10), counts
    # Shuffled, not sorted by class.
    assert not np.all(np.diff(y) >= 0)


def test_generate_shapes_rejects_unknown_task():
    with pytest.raises(ValueError, match="source.*target"):
        data.generate_shapes(10, seed=0, task="sources")


def _canonical_masks(task):
    """Each class's shape in its own frame (no rotation, no scale), on a fine grid."""
    c = np.linspace(-1.2, 1.2, 96, dtype=np.float32)
    x, y = np.meshgrid(c, -c)
    return [sdf(x, y) < 0 for sdf in data._SDFS[task]]


def test_all_twenty_shapes_differ():
    # The source and target tasks must have different classes, and each task's classes must
    # differ from one another: no two shapes overlap by more than 85% (intersection over
    # union); the closest pair, square and circle, is at 80%.
    masks = _canonical_masks("source") + _canonical_masks("target")
    names = data.SOURCE_CLASSES + data.TARGET_CLASSES
    assert len(set(names)) == 20
    for i in range(20):
        assert masks[i].mean() > 0.05, f"{names[i]} is (almost) empty"
        for j in range(i):
            iou = (masks[i] & masks[j]).sum() / (masks[i] | masks[j]).sum()
            assert iou < 0.85, f"{names[i]} and {names[j]} look alike (IoU {iou:.2f})"


def test_class_names():
    assert data.class_names("shapes") == data.SOURCE_CLASSES
    assert data.class_names("shapes_target") == data.TARGET_CLASSES
    assert data.class_names("cifar10")[:2] == ["airplane", "automobile"]
    for name in data.DATASETS:
        assert len(data.class_names(name)) == 10
    assert not set(data.class_names("shapes")) & set(data.class_names("shapes_target"))


# ---------------------------------------------------------------------------------------------
# load_dataset and the cache


def test_data_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("LAB_DATA_DIR", raising=False)
    repo = Path(data.__file__).resolve().parents[2]
    assert data.data_dir() == repo / "data"
    monkeypatch.setenv("LAB_DATA_DIR", str(tmp_path))
    assert data.data_dir() == tmp_path


@pytest.fixture
def umask_022():
    previous = os.umask(0o022)
    yield
    os.umask(previous)


def test_load_dataset_generates_then_reads_the_cache(data_env, monkeypatch, umask_022):
    x, y = data.load_dataset("shapes", "train")
    assert x.shape == (60, 3, 32, 32) and x.dtype == np.uint8
    assert y.shape == (60,) and y.dtype == np.int64
    path = data_env / "shapes" / "train.npz"
    assert path.is_file()
    assert [p.name for p in path.parent.iterdir()] == ["train.npz"]  # no temporary file left
    assert path.stat().st_mode & 0o044 == 0o044  # readable by others (with umask 022)

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(data, "generate_shapes", must_not_run)
    x2, y2 = data.load_dataset("shapes", "train")
    assert np.array_equal(x, x2) and np.array_equal(y, y2)


def test_load_dataset_matches_generate_shapes(data_env):
    x, y = data.load_dataset("shapes_target", "test")
    n, seed = SMALL_SIZES[("shapes_target", "test")]
    xg, yg = data.generate_shapes(n, seed, task="target")
    assert np.array_equal(x, xg) and np.array_equal(y, yg)


def test_splits_differ(data_env):
    x_train, _ = data.load_dataset("shapes", "train")
    x_test, _ = data.load_dataset("shapes", "test")
    train_images = {img.tobytes() for img in x_train}
    assert not any(img.tobytes() in train_images for img in x_test)


def _fresh_reference(data_env):
    """Generate the train split once, and return its path and arrays."""
    x, y = data.load_dataset("shapes", "train")
    return data_env / "shapes" / "train.npz", x, y


@pytest.mark.parametrize(
    "damage",
    ["truncated", "not_a_zip", "empty", "wrong_shape", "missing_array"],
)
def test_corrupt_cache_is_regenerated(data_env, capsys, damage):
    path, x, y = _fresh_reference(data_env)
    good = path.read_bytes()
    meta = data._expected_meta("shapes", "train")
    if damage == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif damage == "not_a_zip":
        path.write_bytes(b"this is not an npz file\n" * 10)
    elif damage == "empty":
        path.write_bytes(b"")
    elif damage == "wrong_shape":
        np.savez(path, x=x[:, :, :16], y=y, meta=np.array(json.dumps(meta)))
    elif damage == "missing_array":
        np.savez(path, x=x, meta=np.array(json.dumps(meta)))
    capsys.readouterr()

    x2, y2 = data.load_dataset("shapes", "train")

    assert "regenerating" in capsys.readouterr().out
    assert np.array_equal(x, x2) and np.array_equal(y, y2)
    assert path.read_bytes() == good  # the cache was repaired


@pytest.mark.parametrize("change", ["version", "params", "n"])
def test_stale_cache_is_regenerated(data_env, capsys, change):
    path, x, y = _fresh_reference(data_env)
    meta = data._expected_meta("shapes", "train")
    if change == "version":
        meta["version"] = data.FORMAT_VERSION - 1
    elif change == "params":
        meta["params"] = {**meta["params"], "noise_std": [0.0, 0.5]}
    else:
        meta["n"] += 1
    np.savez(path, x=np.zeros_like(x), y=y, meta=np.array(json.dumps(meta)))
    capsys.readouterr()

    x2, _ = data.load_dataset("shapes", "train")

    assert "other generator settings" in capsys.readouterr().out
    assert np.array_equal(x, x2)
    with np.load(path) as f:
        assert json.loads(str(f["meta"]))["version"] == data.FORMAT_VERSION


def test_unwritable_data_dir_still_gives_the_data(tmp_path, monkeypatch, capsys):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("LAB_DATA_DIR", str(blocker / "data"))
    monkeypatch.setattr(data, "_SPLIT_SIZES", SMALL_SIZES)
    x, y = data.load_dataset("shapes", "test")
    assert x.shape == (30, 3, 32, 32) and y.shape == (30,)
    assert "could not cache" in capsys.readouterr().out


def test_lab_dataset_env_chooses_the_default(data_env, monkeypatch):
    x, y = data.load_dataset(split="test")
    assert x.shape[0] == SMALL_SIZES[("shapes", "test")][0]
    assert data.class_names() == data.SOURCE_CLASSES

    monkeypatch.setenv("LAB_DATASET", "shapes_target")
    x, y = data.load_dataset(split="test")
    assert x.shape[0] == SMALL_SIZES[("shapes_target", "test")][0]
    assert data.class_names() == data.TARGET_CLASSES
    # An explicit name wins over the environment.
    assert data.load_dataset("shapes", "test")[0].shape[0] == SMALL_SIZES[("shapes", "test")][0]


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"name": "mnist"}, "'mnist'.*shapes, shapes_target, shapes_scenes, cifar10"),
        ({"name": "Shapes"}, "valid names"),
        ({"name": "shapes", "split": "val"}, "'val'.*train, test"),
    ],
)
def test_bad_name_or_split_is_a_clear_error(data_env, kwargs, pattern):
    with pytest.raises(ValueError, match=pattern):
        data.load_dataset(**kwargs)


def test_bad_lab_dataset_env_is_a_clear_error(data_env, monkeypatch):
    monkeypatch.setenv("LAB_DATASET", "cifar100")
    with pytest.raises(ValueError, match="'cifar100'.*valid names"):
        data.load_dataset()
    with pytest.raises(ValueError, match="'cifar100'"):
        data.class_names()


# ---------------------------------------------------------------------------------------------
# CIFAR-10, on a tiny fake copy in CIFAR's own file format


class _Py2Pickler(pickle._Pickler):
    """Pickles text and bytes as Python 2's ``str``, as the CIFAR-10 files were written.

    Python 3 writes text with the BINUNICODE opcode and bytes through ``_codecs.encode``;
    Python 2 wrote both with (SHORT_)BINSTRING. Read back with ``encoding="latin1"`` (as
    torchvision does) these give ``str``, and with ``encoding="bytes"`` they give ``bytes``
    (the b"data" keys of the CIFAR-10 web page), exactly as the real files do.
    """

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj):
        raw = obj.encode("latin1") if isinstance(obj, str) else bytes(obj)
        if len(raw) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(raw)) + raw)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


def _py2_pickle(obj):
    buffer = io.BytesIO()
    _Py2Pickler(buffer, protocol=2).dump(obj)
    return buffer.getvalue()


def _write_fake_cifar(root, rng):
    """Five training batches of 2 images and a test batch of 3, plus batches.meta."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    batches = {f"data_batch_{i}": 2 for i in range(1, 6)} | {"test_batch": 3}
    written = {}
    for name, count in batches.items():
        rows = rng.integers(0, 256, size=(count, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, size=count)]
        batch = {"batch_label": name, "labels": labels, "data": rows, "filenames": ["a.png"]}
        (folder / name).write_bytes(_py2_pickle(batch))
        written[name] = (rows, labels)
    meta = {"num_cases_per_batch": 2, "label_names": data.CIFAR10_CLASSES, "num_vis": 3072}
    (folder / "batches.meta").write_bytes(_py2_pickle(meta))
    return folder, written


def _md5(path):
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def fake_cifar(data_env, monkeypatch):
    """A fake CIFAR-10 in LAB_DATA_DIR/cifar10, with torchvision's checksums set to match."""
    from torchvision.datasets import CIFAR10

    folder, written = _write_fake_cifar(data_env / "cifar10", np.random.default_rng(0))
    # torchvision checks every file against the real data set's md5; point it at ours.
    train = [[f"data_batch_{i}", _md5(folder / f"data_batch_{i}")] for i in range(1, 6)]
    monkeypatch.setattr(CIFAR10, "train_list", train)
    monkeypatch.setattr(CIFAR10, "test_list", [["test_batch", _md5(folder / "test_batch")]])
    meta = {**CIFAR10.meta, "md5": _md5(folder / "batches.meta")}
    monkeypatch.setattr(CIFAR10, "meta", meta)
    return written


def test_fake_cifar_is_in_cifar_format(data_env, fake_cifar):
    path = data_env / "cifar10" / "cifar-10-batches-py" / "data_batch_1"
    with open(path, "rb") as f:
        batch = pickle.load(f, encoding="bytes")  # the recipe of the CIFAR-10 web page
    assert batch[b"data"].shape == (2, 3072) and batch[b"data"].dtype == np.uint8
    assert batch[b"labels"] == fake_cifar["data_batch_1"][1]


@pytest.mark.parametrize("split", ["train", "test"])
def test_cifar10_loader(fake_cifar, split):
    x, y = data.load_dataset("cifar10", split)
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    rows = np.concatenate([fake_cifar[n][0] for n in names])
    labels = sum((fake_cifar[n][1] for n in names), [])
    assert x.shape == (len(rows), 3, 32, 32) and x.dtype == np.uint8 and x.flags.c_contiguous
    assert y.dtype == np.int64 and y.tolist() == labels
    # A CIFAR row is the red plane, then green, then blue, each 32 rows of 32 pixels.
    assert np.array_equal(x, rows.reshape(-1, 3, 32, 32))


def test_cifar10_from_lab_dataset_env(fake_cifar, monkeypatch):
    monkeypatch.setenv("LAB_DATASET", "cifar10")
    x, _ = data.load_dataset(split="test")
    assert x.shape == (3, 3, 32, 32)
    assert data.class_names() == data.CIFAR10_CLASSES


def test_missing_cifar10_says_how_to_get_it(data_env):
    with pytest.raises(FileNotFoundError) as err:
        data.load_dataset("cifar10", "train")
    message = str(err.value)
    assert "make data-cifar10" in message
    assert "shapes" in message
    assert str(data_env / "cifar10") in message


def test_corrupt_cifar10_says_how_to_get_it(fake_cifar, data_env):
    batch = data_env / "cifar10" / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-10])
    with pytest.raises(FileNotFoundError, match="make data-cifar10"):
        data.load_dataset("cifar10", "test")


@pytest.mark.parametrize("encoding", ["latin1", "bytes"])
def test_py2_pickle_helper_round_trips(encoding):
    # The helper of the fake CIFAR files must keep what it pickles, read either way.
    obj = {"data": np.arange(600, dtype=np.uint8).reshape(2, 300), "labels": [1, 2]}
    back = pickle.load(io.BytesIO(_py2_pickle(obj)), encoding=encoding)
    key = (lambda k: k.encode()) if encoding == "bytes" else (lambda k: k)
    assert back[key("labels")] == [1, 2]
    assert np.array_equal(back[key("data")], obj["data"])


# ---------------------------------------------------------------------------------------------
# Canonical poses (the data-augmentation lab): centred, upright, never mirrored


def test_canonical_shapes_are_deterministic_and_keep_labels():
    x1, y1 = data.generate_shapes(40, seed=5, canonical=True)
    x2, y2 = data.generate_shapes(40, seed=5, canonical=True)
    assert x1.tobytes() == x2.tobytes() and y1.tobytes() == y2.tobytes()
    assert x1.shape == (40, 3, 32, 32) and x1.dtype == np.uint8 and y1.dtype == np.int64
    x_std, y_std = data.generate_shapes(40, seed=5)
    assert np.array_equal(y1, y_std)  # the same labels, in the same order
    assert x1.tobytes() != x_std.tobytes()  # but other pictures


def test_canonical_option_leaves_the_default_images_unchanged():
    # canonical=False is the default, byte for byte, and the meta of the standard caches is
    # the one they were written with (no new key), so that no cache is made stale.
    for task in ("source", "target"):
        a = data.generate_shapes(30, seed=7, task=task)
        b = data.generate_shapes(30, seed=7, task=task, canonical=False)
        assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert "canonical" not in data._expected_meta("shapes", "train")
    assert data._expected_meta("shapes", "train", canonical=True)["canonical"] is True
    assert data.FORMAT_VERSION == 1


def _pose_free_render(monkeypatch, canonical, **params):
    """Render with everything but the shape switched off: a flat background, no clutter,
    no noise, no shading, so that the pixels show the shape's mask alone."""
    monkeypatch.setitem(data.GENERATOR_PARAMS, "back_clutter_prob", [])
    monkeypatch.setitem(data.GENERATOR_PARAMS, "front_clutter_prob", [])
    monkeypatch.setitem(data.GENERATOR_PARAMS, "noise_std", [0.0, 0.0])
    monkeypatch.setitem(data.GENERATOR_PARAMS, "stripes_fill_prob", 0.0)
    for key, value in params.items():
        monkeypatch.setitem(data.GENERATOR_PARAMS, key, value)
    return data.generate_shapes(200, seed=11, canonical=canonical)


def _masks(x):
    """Where each image differs from its own corner pixel: the shape (flat backgrounds)."""
    corner = x[:, :, :1, :1].astype(int)
    return (np.abs(x.astype(int) - corner).sum(axis=1) > 60)


def test_canonical_shapes_are_centred_upright_and_unmirrored(monkeypatch):
    monkeypatch.setattr(data, "_background", _flat_background)
    x, y = _pose_free_render(monkeypatch, canonical=True)
    masks = _masks(x)
    coords = np.arange(32) - 15.5
    for k in range(10):
        sel = masks[y == k]
        assert len(sel) >= 10
        # Centred: every image of a class has its shape at the same place (up to scale),
        # and a class symmetric about the vertical axis is centred horizontally.
        cx = (sel * coords[None, None, :]).sum(axis=(1, 2)) / sel.sum(axis=(1, 2))
        cy = (sel * coords[None, :, None]).sum(axis=(1, 2)) / sel.sum(axis=(1, 2))
        assert cx.std() < 0.6 and cy.std() < 0.8, (data.SOURCE_CLASSES[k], cx.std(), cy.std())
        if data.SOURCE_CLASSES[k] != "crescent":  # the only shape that is not symmetric
            assert abs(cx.mean()) < 0.5, (data.SOURCE_CLASSES[k], cx.mean())
    # Never mirrored, never rotated: the crescent always opens to the right, so its mass
    # sits on the left of the centre in every image.
    crescents = masks[y == data.SOURCE_CLASSES.index("crescent")]
    cx = (crescents * coords[None, None, :]).sum(axis=(1, 2)) / crescents.sum(axis=(1, 2))
    assert (cx < -0.5).all(), cx


def test_standard_shapes_do_move_rotate_and_mirror(monkeypatch):
    # The same measure on the default images: what canonical=True removes is there.
    monkeypatch.setattr(data, "_background", _flat_background)
    x, y = _pose_free_render(monkeypatch, canonical=False)
    masks = _masks(x)
    coords = np.arange(32) - 15.5
    crescents = masks[y == data.SOURCE_CLASSES.index("crescent")]
    cx = (crescents * coords[None, None, :]).sum(axis=(1, 2)) / crescents.sum(axis=(1, 2))
    assert cx.std() > 1.5 and (cx > 0.5).any() and (cx < -0.5).any(), cx


def _flat_background(rng, b, x, y):
    """A mid-grey background (the generator's draws are not needed for it)."""
    img = np.full((b, 3, x.shape[-1], x.shape[-1]), 0.5, dtype=np.float32)
    return img, np.full((b, 3), 0.5, dtype=np.float32)


def test_load_dataset_canonical_has_its_own_cache(data_env, monkeypatch):
    x_std, y_std = data.load_dataset("shapes", "train")
    x_can, y_can = data.load_dataset("shapes", "train", canonical=True)
    n, seed = SMALL_SIZES[("shapes", "train")]
    xg, yg = data.generate_shapes(n, seed, canonical=True)
    assert np.array_equal(x_can, xg) and np.array_equal(y_can, yg)
    assert np.array_equal(y_can, y_std) and not np.array_equal(x_can, x_std)
    folder = data_env / "shapes"
    assert sorted(p.name for p in folder.iterdir()) == ["train.npz", "train_canonical.npz"]
    with np.load(folder / "train_canonical.npz") as f:
        assert json.loads(str(f["meta"])) == data._expected_meta("shapes", "train", True)
    with np.load(folder / "train.npz") as f:
        assert json.loads(str(f["meta"])) == data._expected_meta("shapes", "train")

    def must_not_run(*args, **kwargs):
        raise AssertionError("the cache was not used")

    monkeypatch.setattr(data, "generate_shapes", must_not_run)
    # Each reads its own file: neither is taken for the other.
    assert np.array_equal(data.load_dataset("shapes", "train", canonical=True)[0], x_can)
    assert np.array_equal(data.load_dataset("shapes", "train")[0], x_std)


def test_canonical_cifar10_is_a_clear_error(data_env):
    with pytest.raises(ValueError, match="canonical.*shapes"):
        data.load_dataset("cifar10", "train", canonical=True)


# ---------------------------------------------------------------------------------------------
# Scenes (the preprocessing lab): a sky over a ground, so that the mean image and the channel
# statistics are worth looking at


def test_scenes_are_deterministic_keep_labels_and_leave_the_default_unchanged():
    x1, y1 = data.generate_shapes(40, seed=5, scenes=True)
    x2, y2 = data.generate_shapes(40, seed=5, scenes=True)
    assert x1.tobytes() == x2.tobytes() and y1.tobytes() == y2.tobytes()
    assert x1.shape == (40, 3, 32, 32) and x1.dtype == np.uint8 and y1.dtype == np.int64
    x_std, y_std = data.generate_shapes(40, seed=5)
    assert np.array_equal(y1, y_std) and x1.tobytes() != x_std.tobytes()
    x_default, _ = data.generate_shapes(40, seed=5, scenes=False)
    assert x_default.tobytes() == x_std.tobytes()
    assert "scenes" not in data._expected_meta("shapes", "train")
    assert data._expected_meta("shapes_scenes", "train")["scenes"] == data.SCENE_PARAMS


def test_scenes_mean_image_is_a_picture_and_channels_differ():
    # What the preprocessing lab shows: the mean image of "shapes" is a flat grey, that of the
    # scenes a bright sky over a darker ground; the scenes' channels have their own statistics.
    n = 600
    flat, _ = data.generate_shapes(n, seed=3)
    scene, _ = data.generate_shapes(n, seed=3, scenes=True)
    flat_mean = flat.mean(axis=0).mean(axis=0)  # (H, W)
    scene_mean = scene.mean(axis=0).mean(axis=0)
    assert flat_mean.max() - flat_mean.min() < 25, (flat_mean.min(), flat_mean.max())
    assert scene_mean[:4].mean() - scene_mean[-4:].mean() > 40  # sky above ground
    channel_mean = scene.mean(axis=(0, 2, 3))
    channel_std = scene.std(axis=(0, 2, 3))
    assert channel_mean[2] - channel_mean[0] > 3, channel_mean  # bluer than red
    assert channel_std.max() - channel_std.min() > 10, channel_std
    flat_std = flat.std(axis=(0, 2, 3))
    assert flat_std.max() - flat_std.min() < 10, flat_std


def test_load_dataset_scenes_matches_generate_shapes(data_env):
    x, y = data.load_dataset("shapes_scenes", "test")
    xg, yg = data.generate_shapes(20, 6, scenes=True)
    assert np.array_equal(x, xg) and np.array_equal(y, yg)
    assert data.class_names("shapes_scenes") == data.SOURCE_CLASSES


def test_load_dataset_scenes_in_canonical_poses(data_env):
    # Lab 01's data: "shapes_scenes" with every shape centred, cached apart, the same labels
    # and scenes as the standard images, generated with both options.
    x_std, y_std = data.load_dataset("shapes_scenes", "train")
    x_can, y_can = data.load_dataset("shapes_scenes", "train", canonical=True)
    n, seed = SMALL_SIZES[("shapes_scenes", "train")]
    xg, yg = data.generate_shapes(n, seed, canonical=True, scenes=True)
    assert np.array_equal(x_can, xg) and np.array_equal(y_can, yg)
    assert np.array_equal(y_can, y_std) and not np.array_equal(x_can, x_std)
    assert (data_env / "shapes_scenes" / "train_canonical.npz").exists()
    meta = data._expected_meta("shapes_scenes", "train", True)
    assert meta["canonical"] is True and meta["scenes"] == data.SCENE_PARAMS
