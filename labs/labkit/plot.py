"""Plots for the labs: training curves and image grids.

- ``plot_history(history_or_dict, metrics=("loss", "acc"), ax=None)``: train
  (solid) and validation (dashed) curves per epoch, one panel per metric; a
  dict name -> History draws several runs on the same panels, one colour per
  run, to compare them (e.g. with and without batch norm).
- ``show_images(x, labels=None, class_names=None, ncols=10, title=None)``: a
  grid of (N, C, H, W) images, uint8 or float.

Both return the matplotlib figure and axes and work with any backend
(including Agg, used by the tests and the grader).
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.ticker import MaxNLocator

__all__ = ["plot_history", "show_images"]

_LABELS = {"loss": "loss", "acc": "accuracy", "seconds": "seconds per epoch", "lr": "learning rate"}


def _as_series(history):
    """A History, or a dict like ``History.as_dict()``, as a dict name -> list of floats."""
    if hasattr(history, "as_dict"):
        return history.as_dict()
    if isinstance(history, dict):
        return {k: list(v) for k, v in history.items()}
    raise TypeError(f"expected a History or a dict of lists, got {type(history)}")


def _is_single_run(obj):
    """True for one History (or its as_dict()), False for a dict name -> run."""
    if hasattr(obj, "as_dict"):
        return True
    return isinstance(obj, dict) and any(
        isinstance(v, (list, tuple, np.ndarray)) for v in obj.values()
    )


def _panel_axes(ax, n):
    """A figure and ``n`` axes: new ones, or the given ``ax`` (one Axes or a sequence)."""
    if ax is None:
        fig, axes = plt.subplots(1, n, figsize=(4.5 * n, 3.5), squeeze=False)
        return fig, list(axes[0])
    axes = list(np.ravel(ax)) if isinstance(ax, (list, tuple, np.ndarray)) else [ax]
    if len(axes) != n:
        raise ValueError(f"got {len(axes)} axes for {n} metrics; pass one Axes per metric")
    return axes[0].figure, axes


def _plot_metric(axis, series, metric, name, color):
    """Draw one run's curves of one metric on ``axis``; returns the number of lines drawn."""
    curves = [(f"train_{metric}", "-", "train"), (f"val_{metric}", "--", "val")]
    if metric in series:  # a metric without a train/val split, e.g. "seconds" or "lr"
        curves = [(metric, "-", None)]
    drawn = 0
    for key, style, split in curves:
        values = series.get(key) or []
        if len(values) == 0:
            continue
        label = " ".join(s for s in (name, split) if s) or metric
        epochs = np.arange(1, len(values) + 1)
        axis.plot(epochs, values, style, color=color, label=label, marker=".")
        drawn += 1
    return drawn


def plot_history(history_or_dict, metrics=("loss", "acc"), ax=None):
    """Plot training curves per epoch: train solid, validation dashed.

    Inputs:
    - history_or_dict: a History returned by ``fit`` (or its ``as_dict()``), or
      a dict run name -> History to compare runs on the same axes (one colour
      per run, with a legend).
    - metrics: sequence of metric names; "loss" and "acc" draw the train_ and
      val_ series, a name without that split ("seconds", "lr") draws itself.
    - ax: None (make a new figure), or one matplotlib Axes per metric (a single
      Axes when there is one metric).

    Returns:
    - fig: the matplotlib Figure.
    - axes: list of Axes, one per metric.
    """
    if isinstance(metrics, str):
        metrics = (metrics,)
    if _is_single_run(history_or_dict):
        runs = {"": _as_series(history_or_dict)}
    else:
        runs = {str(name): _as_series(h) for name, h in history_or_dict.items()}
    fig, axes = _panel_axes(ax, len(metrics))
    colors = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    for axis, metric in zip(axes, metrics, strict=True):
        drawn = 0
        for i, (name, series) in enumerate(runs.items()):
            drawn += _plot_metric(axis, series, metric, name, colors[i % len(colors)])
        if drawn == 0:
            raise KeyError(
                f"no series for metric {metric!r}; known: {sorted(runs[next(iter(runs))])}"
            )
        axis.set_xlabel("epoch")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))  # no epoch 1.5
        axis.set_ylabel(_LABELS.get(metric, metric))
        axis.grid(True, alpha=0.3)
        axis.legend(fontsize="small")
    fig.tight_layout()
    return fig, axes


def _to_numpy(x):
    """A numpy array from an array or a torch tensor (detached, on the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def _display_image(img):
    """One (C, H, W) image as (H, W, 3) or (H, W) values imshow shows as intended.

    uint8 is shown as is; floats are rescaled to [0, 1] per image (min-max),
    so normalized images (mean 0, std 1) are still visible.
    """
    img = np.moveaxis(img, 0, -1)  # (H, W, C)
    if img.shape[-1] == 1:
        img = img[..., 0]
    if img.dtype == np.uint8:
        return img
    img = img.astype(np.float64)
    low, high = np.min(img), np.max(img)
    return (img - low) / (high - low) if high > low else np.zeros_like(img)


def _caption(label, class_names):
    """The caption of one image: its class name when known, else the label itself."""
    if class_names is not None and np.issubdtype(type(label), np.integer):
        return str(class_names[int(label)])
    return str(label)


def show_images(x, labels=None, class_names=None, ncols=10, title=None):
    """Show images in a grid.

    Inputs:
    - x: numpy array or tensor of shape (N, C, H, W) with C = 1 or 3, or
      (N, H, W) grayscale; uint8 (shown as is) or float (rescaled to [0, 1]
      per image for display only).
    - labels: None or a sequence of N labels (ints, or strings) shown above the
      images.
    - class_names: None or a sequence mapping an int label to its name.
    - ncols: int, images per row.
    - title: None or str, the figure's title.

    Returns:
    - fig: the matplotlib Figure.
    - axes: 2D numpy array of Axes of shape (rows, ncols); unused ones are hidden.
    """
    x = _to_numpy(x)
    if x.ndim == 3:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"x must have shape (N, C, H, W) with C = 1 or 3, got {x.shape}")
    n = x.shape[0]
    if labels is not None:
        labels = list(_to_numpy(labels)) if not isinstance(labels, (list, tuple)) else labels
        if len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for {n} images")
    ncols = max(1, min(int(ncols), n))
    nrows = max(1, math.ceil(n / ncols))
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(1.3 * ncols, 1.45 * nrows + (0.4 if title else 0)), squeeze=False
    )
    for i, axis in enumerate(axes.flat):
        axis.axis("off")
        if i >= n:
            continue
        image = _display_image(x[i])
        axis.imshow(image, cmap="gray" if image.ndim == 2 else None, vmin=0, vmax=_vmax(image))
        if labels is not None:
            axis.set_title(_caption(labels[i], class_names), fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig, axes


def _vmax(image):
    """The display range's top: 255 for uint8, 1 for rescaled floats."""
    return 255 if image.dtype == np.uint8 else 1
