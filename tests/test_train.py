"""Tests of labkit.train and labkit.plot on tiny synthetic data (seconds, CPU only)."""

from __future__ import annotations

import math

import matplotlib
import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch
from torch import nn

from labkit import plot, train

matplotlib.use("Agg")  # headless, as in CI and the grader (switching after import is allowed)

CPU = "cpu"


def separable_images(n=240, seed=0):
    """Three classes of 3x8x8 uint8 images: class c has a bright channel c.

    Returns x uint8 of shape (n, 3, 8, 8) and y int64 of shape (n,).
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    x = rng.integers(0, 120, size=(n, 3, 8, 8))
    x[np.arange(n), y] += 120
    return x.astype(np.uint8), y.astype(np.int64)


def small_cnn(dropout=0.0):
    """Conv -> batch norm -> ReLU -> global average pool -> dropout -> linear, 3 classes."""
    return nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Dropout(dropout),
        nn.Linear(8, 3),
    )


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models gain nothing from threads, and on a busy CI machine 2 threads
    competing with other processes made these tests 10x slower (20 s vs 2 s)."""
    before = torch.get_num_threads()
    train.configure_cpu(1)
    yield
    train._CPU_THREADS = None
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


# ---------------------------------------------------------------------------- data


def test_make_loader_keeps_uint8_values_as_float32():
    x = np.arange(2 * 3 * 2 * 2, dtype=np.uint8).reshape(2, 3, 2, 2) * 10
    y = np.array([1, 0], dtype=np.int32)
    xb, yb = next(iter(train.make_loader(x, y, batch_size=2)))
    assert xb.dtype == torch.float32 and yb.dtype == torch.int64
    # Values unchanged: no silent scaling to [0, 1].
    np.testing.assert_array_equal(xb.numpy(), x.astype(np.float32))
    np.testing.assert_array_equal(yb.numpy(), [1, 0])


def test_make_loader_float64_and_tensors():
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64)
    y = torch.tensor([0.0, 1.0, 2.0, 1.0, 0.0])  # whole-number float labels are accepted
    batches = list(train.make_loader(x, y, batch_size=2))
    assert [len(b[0]) for b in batches] == [2, 2, 1]
    xb = torch.cat([b[0] for b in batches])
    assert xb.dtype == torch.float32
    torch.testing.assert_close(xb, x.float())
    assert torch.cat([b[1] for b in batches]).tolist() == [0, 1, 2, 1, 0]


def test_make_loader_rejects_bad_inputs():
    with pytest.raises(ValueError, match="same number of samples"):
        train.make_loader(np.zeros((4, 3, 2, 2)), np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="whole numbers"):
        train.make_loader(np.zeros((2, 3, 2, 2)), np.array([0.5, 1.0]))


def _order(loader):
    return torch.cat([yb for _, yb in loader]).tolist()


def test_make_loader_shuffle_is_seeded():
    x = np.zeros((50, 1, 2, 2), dtype=np.float32)
    y = np.arange(50)
    assert _order(train.make_loader(x, y, batch_size=8)) == list(range(50))
    a = train.make_loader(x, y, batch_size=8, shuffle=True, seed=3)
    b = train.make_loader(x, y, batch_size=8, shuffle=True, seed=3)
    c = train.make_loader(x, y, batch_size=8, shuffle=True, seed=4)
    orders_a = [_order(a) for _ in range(3)]
    orders_b = [_order(b) for _ in range(3)]
    assert sorted(orders_a[0]) == list(range(50))
    assert orders_a == orders_b  # the same sequence of epoch orders for the same seed
    assert orders_a[0] != orders_a[1]  # a new order at every epoch
    assert orders_a[0] != _order(c)  # another seed, another order


def test_to_tensor_dataset_stores_uint8_and_returns_float():
    x, y = separable_images(10)
    ds = train.to_tensor_dataset(x, y)
    assert len(ds) == 10 and ds.x.dtype == torch.uint8
    xi, yi = ds[3]
    assert xi.dtype == torch.float32 and xi.shape == (3, 8, 8) and yi.dtype == torch.int64
    xb, _ = ds[[0, 2]]
    assert xb.shape == (2, 3, 8, 8)


# ---------------------------------------------------------------------------- fit


def test_fit_learns_a_separable_problem():
    x, y = separable_images(300, seed=0)
    xv, yv = separable_images(120, seed=1)
    x, xv = x / 255.0, xv / 255.0  # the student's preprocessing
    train.seed_everything(0)
    model = small_cnn()
    hist = train.fit(
        model, (x, y), val=(xv, yv), epochs=8, batch_size=32, device=CPU, progress=False, seed=0
    )
    assert hist.epochs == 8
    assert hist.val_acc[-1] >= 0.95, hist.val_acc
    assert hist.train_loss[-1] < hist.train_loss[0]
    assert hist.best_val_acc == max(hist.val_acc)
    assert not model.training  # fit leaves the model ready for inference
    assert train.evaluate(model, (xv, yv), device=CPU)["acc"] == pytest.approx(hist.val_acc[-1])


def _run(seed, model_seed=0):
    x, y = separable_images(96)
    train.seed_everything(model_seed)
    model = small_cnn(dropout=0.3)
    hist = train.fit(
        model,
        (x / 255.0, y),
        val=(x / 255.0, y),
        epochs=3,
        batch_size=16,
        device=CPU,
        progress=False,
        seed=seed,
    )
    return hist


def test_fit_is_deterministic_with_a_seed():
    a, b = _run(seed=7), _run(seed=7)
    assert a.train_loss == b.train_loss and a.val_loss == b.val_loss
    # The seed matters (shuffling and dropout), so the equality above is not vacuous.
    assert _run(seed=8).train_loss != a.train_loss


def test_fit_history_shape_without_validation_and_with_loader():
    x, y = separable_images(40)
    loader = train.make_loader(x / 255.0, y, batch_size=16, shuffle=True, seed=0)
    hist = train.fit(small_cnn(), loader, epochs=3, device=CPU, progress=False)
    assert isinstance(hist, train.History)
    assert len(hist.train_loss) == len(hist.train_acc) == len(hist.seconds) == 3
    assert hist.val_loss == [] and hist.val_acc == [] and hist.best_val_acc is None
    assert all(s > 0 for s in hist.seconds)
    d = hist.as_dict()
    assert set(d) >= {"train_loss", "train_acc", "val_loss", "val_acc", "seconds"}
    d["train_loss"].append(0.0)
    assert len(hist.train_loss) == 3  # as_dict copies


def test_fit_converts_uint8_batches_from_a_user_loader():
    x, y = separable_images(20)
    loader = torch.utils.data.DataLoader(
        torch.utils.data.TensorDataset(torch.from_numpy(x), torch.from_numpy(y)), batch_size=8
    )
    hist = train.fit(small_cnn(), loader, val=loader, epochs=1, device=CPU, progress=False)
    assert math.isfinite(hist.train_loss[0]) and math.isfinite(hist.val_loss[0])


def test_fit_steps_a_scheduler_per_epoch():
    x, y = separable_images(32)
    model = small_cnn()
    hist = train.fit(
        model,
        (x / 255.0, y),
        epochs=3,
        device=CPU,
        progress=False,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        scheduler=lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5),
    )
    assert hist.lr == pytest.approx([0.1, 0.05, 0.025])


def test_fit_with_reduce_on_plateau_and_progress_bar(capsys):
    x, y = separable_images(32)
    model = small_cnn()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, patience=0)
    hist = train.fit(
        model,
        (x, y),
        val=(x, y),
        epochs=2,
        optimizer=opt,
        scheduler=sched,
        device=CPU,
        progress=True,
    )
    assert hist.epochs == 2
    err = capsys.readouterr().err
    assert "epoch 2/2" in err and "val_acc" in err


def test_configure_cpu_keeps_an_explicit_choice(monkeypatch):
    monkeypatch.setattr(train, "_busy_cpus_elsewhere", lambda: 0)  # an idle machine
    try:
        train._CPU_THREADS = None
        # Without a choice: torch's default (physical cores), capped by the usable CPUs.
        expected = min(train._TORCH_DEFAULT_THREADS, train._available_cpus())
        assert train.configure_cpu() == expected == torch.get_num_threads()
        assert train.configure_cpu(1) == 1 and torch.get_num_threads() == 1
        assert train.configure_cpu() == 1  # what fit calls: keeps the explicit choice
    finally:
        train.configure_cpu(1)  # back to this module's setting


@pytest.mark.parametrize(("cpus", "default", "busy", "threads"), [
    (2, 2, 0, 2),  # an idle 2-core laptop: both cores
    (2, 2, 1, 1),  # another program computing: one thread, not two waiting on each other
    (2, 2, 5, 1),  # however busy, at least one
    (8, 4, 3, 4),  # free cores beyond torch's default: the default
    (8, 4, 6, 2),
    (1, 1, 3, 1),
])
def test_configure_cpu_leaves_the_cores_other_programs_use(monkeypatch, cpus, default, busy,
                                                            threads):
    monkeypatch.setattr(train, "_available_cpus", lambda: cpus)
    monkeypatch.setattr(train, "_TORCH_DEFAULT_THREADS", default)
    monkeypatch.setattr(train, "_busy_cpus_elsewhere", lambda: busy)
    try:
        train._CPU_THREADS = None
        assert train.configure_cpu() == threads == torch.get_num_threads()
    finally:
        train.configure_cpu(1)


def test_busy_cpus_are_read_from_the_runnable_threads(tmp_path):
    loadavg = tmp_path / "loadavg"
    loadavg.write_text("2.77 1.59 1.17 3/186 7568\n")  # 3 runnable, this reader among them
    assert train._busy_cpus_elsewhere(samples=3, interval_s=0, loadavg=loadavg) == 2
    loadavg.write_text("0.00 0.01 0.00 1/186 7568\n")
    assert train._busy_cpus_elsewhere(samples=1, loadavg=loadavg) == 0
    assert train._busy_cpus_elsewhere(loadavg=tmp_path / "missing") == 0  # not Linux
    loadavg.write_text("garbage")
    assert train._busy_cpus_elsewhere(loadavg=loadavg) == 0


def test_get_device_returns_a_usable_device():
    device = train.get_device()
    assert isinstance(device, torch.device)
    assert torch.zeros(1, device=device).device.type == device.type


# ---------------------------------------------------------------------------- evaluate, predict


def test_evaluate_is_exact_eval_mode_and_touches_no_gradient():
    x = torch.randn(100, 3, 8, 8)
    y = torch.randint(0, 3, (100,))
    train.seed_everything(0)
    model = small_cnn(dropout=0.5)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    seen = []  # (grad enabled, train mode) during each forward pass
    model.register_forward_hook(lambda m, i, o: seen.append((torch.is_grad_enabled(), m.training)))
    result = train.evaluate(model, (x, y), batch_size=32, device=CPU)  # uneven last batch

    assert seen == [(False, False)] * 4  # 100 samples in batches of 32

    assert not any(m.training for m in model.modules())
    assert all(p.grad is None and p.requires_grad for p in model.parameters())
    assert torch.is_grad_enabled()
    for k, v in model.state_dict().items():  # batch-norm statistics unchanged
        torch.testing.assert_close(v, state[k], rtol=0, atol=0)
    with torch.no_grad():
        out = model(x)
    assert result["loss"] == pytest.approx(nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert result["acc"] == pytest.approx((out.argmax(1) == y).float().mean().item())
    assert train.evaluate(model, (x, y), batch_size=7)["loss"] == pytest.approx(result["loss"])


def test_predict_returns_cpu_logits_in_input_order():
    x, _ = separable_images(37)
    model = small_cnn(dropout=0.5)
    logits = train.predict(model, x, batch_size=10)
    assert logits.shape == (37, 3) and logits.device.type == "cpu"
    assert not model.training and not logits.requires_grad
    with torch.no_grad():
        torch.testing.assert_close(logits, model(torch.from_numpy(x).float()))


# ---------------------------------------------------------------------------- plots


def _history(epochs, val=True, offset=0.0):
    h = train.History()
    for e in range(epochs):
        h.train_loss.append(1.0 / (e + 1) + offset)
        h.train_acc.append(0.5 + 0.05 * e)
        if val:
            h.val_loss.append(1.2 / (e + 1) + offset)
            h.val_acc.append(0.45 + 0.05 * e)
        h.seconds.append(1.0)
        h.lr.append(1e-3)
    return h


def test_plot_history_one_run():
    fig, axes = plot.plot_history(_history(4))
    assert fig is axes[0].figure and len(axes) == 2
    assert [len(a.get_lines()) for a in axes] == [2, 2]
    np.testing.assert_allclose(axes[0].get_lines()[0].get_xdata(), [1, 2, 3, 4])
    # Without validation data only the training curves are drawn; as_dict() works too.
    _, axes = plot.plot_history(_history(3, val=False).as_dict(), metrics=("loss",))
    assert len(axes) == 1 and len(axes[0].get_lines()) == 1


def test_plot_history_compares_runs_on_shared_axes():
    runs = {"batch norm": _history(5), "no batch norm": _history(5, offset=0.3), "x": _history(2)}
    fig, axes = plot.plot_history(runs)
    assert [len(a.get_lines()) for a in axes] == [6, 6]
    legend = [t.get_text() for t in axes[0].get_legend().get_texts()]
    assert "batch norm train" in legend and "no batch norm val" in legend
    colors = {line.get_label(): line.get_color() for line in axes[0].get_lines()}
    assert colors["batch norm train"] == colors["batch norm val"] != colors["no batch norm val"]


def test_plot_history_on_given_axes_and_unknown_metric():
    fig, ax = plt.subplots()
    out_fig, axes = plot.plot_history(_history(3), metrics=("acc",), ax=ax)
    assert out_fig is fig and axes == [ax] and len(ax.get_lines()) == 2
    with pytest.raises(KeyError, match="f1"):
        plot.plot_history(_history(3), metrics=("f1",))


def test_show_images_grid_labels_and_rescaling():
    x = np.random.default_rng(0).normal(size=(12, 3, 5, 5))  # float, not in [0, 1]
    fig, axes = plot.show_images(
        x, labels=[i % 3 for i in range(12)], class_names=["a", "b", "c"], ncols=5, title="samples"
    )
    assert axes.shape == (3, 5)
    shown = [a for a in axes.flat if a.get_images()]
    assert len(shown) == 12
    data = shown[0].get_images()[0].get_array()
    assert data.shape == (5, 5, 3) and data.min() == 0.0 and data.max() == pytest.approx(1.0)
    assert [a.get_title() for a in shown[:4]] == ["a", "b", "c", "a"]
    assert fig._suptitle.get_text() == "samples"


def test_show_images_uint8_is_shown_unchanged():
    x, y = separable_images(4)
    _, axes = plot.show_images(torch.from_numpy(x), labels=torch.from_numpy(y))
    assert axes.shape == (1, 4)
    np.testing.assert_array_equal(axes[0, 1].get_images()[0].get_array(), x[1].transpose(1, 2, 0))
    assert axes[0, 1].get_title() == str(y[1])
