"""Training toolkit for the labs: loaders, a training loop, evaluation and prediction.

Students call these helpers in every lab; they never need to edit them, and
they contain no solution code.

- ``get_device()``: CUDA if available, then Apple's MPS, then the CPU.
- ``seed_everything(seed)``: seed Python, numpy and torch (CPU and CUDA).
- ``configure_cpu(num_threads=None)``: the CPU settings ``fit`` uses (thread count;
  the measurements behind the defaults are in a comment above it).
- ``to_tensor_dataset(x, y)`` / ``make_loader(x, y, ...)``: in-memory data as a
  dataset / a DataLoader of float32 images and int64 labels.
- ``fit(model, train, val=None, epochs=1, ...)``: train, return a ``History``.
- ``evaluate(model, data)``: ``{"loss": ..., "acc": ...}`` on a data set.
- ``predict(model, x)``: the model's outputs (logits) as a CPU tensor.

Conventions:

- Images are ``(N, C, H, W)``. Nothing here normalizes them: uint8 images come
  out as float32 with their values unchanged (0..255). Preprocessing (scaling,
  mean/std normalization) is the student's job, taught in lab 1.
- ``train`` / ``val`` / ``data`` arguments are a DataLoader, a Dataset, or an
  ``(x, y)`` pair of numpy arrays or tensors.
- ``fit`` and ``evaluate`` use cross-entropy by default and report accuracy as
  the fraction of ``argmax(output, dim=1) == y`` (per pixel for dense outputs).
- ``evaluate``, ``predict`` and the end of ``fit`` leave the model in eval mode.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass, field, fields

import numpy as np
import torch
from torch import nn
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
)
from tqdm.auto import tqdm

__all__ = [
    "History",
    "TensorPairDataset",
    "configure_cpu",
    "evaluate",
    "fit",
    "get_device",
    "make_loader",
    "predict",
    "seed_everything",
    "to_tensor_dataset",
]


# ----------------------------------------------------------------------------
# Device, seeds and CPU settings
# ----------------------------------------------------------------------------


def get_device():
    """The best available device: CUDA, then MPS (Apple silicon), then the CPU.

    Returns:
    - torch.device
    """
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed):
    """Seed every random number generator a lab uses.

    Seeds Python's ``random``, numpy's global generator and torch's generators
    (CPU and every CUDA device). With the same seed, building a model and
    calling ``fit(..., seed=seed)`` on the CPU gives the same history.

    Inputs:
    - seed: int.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    torch.cuda.manual_seed_all(seed)  # explicit, and harmless without CUDA


# CPU defaults, measured on the course's reference machine (2-core AMD EPYC VM,
# torch 2.14.1) with a small CIFAR-sized CNN (4 conv 3x3 + batch norm layers,
# 32-64 channels, batch 128, forward + backward + Adam step):
#
# - Threads: 2 threads ~290 ms per training step vs 460-545 ms with 1 thread
#   (1.6-1.9x faster) when the notebook has the machine to itself. That is
#   torch's own default (one thread per physical core), which we keep, capped
#   by the CPUs the process may use. When other processes keep the cores busy,
#   2 threads were much *slower* (1000-1150 ms vs 420-530 ms with 1 thread:
#   the threads wait for each other), hence configure_cpu(1) / OMP_NUM_THREADS=1
#   for runs in parallel. More threads than physical cores (hyper-threads) do
#   not help compute-bound convolutions, so we never go above torch's default.
# - channels_last memory format: NOT used. Training steps were 0-12% faster
#   (477 -> 418 ms with 1 thread, within noise with 2), evaluation 1.3-1.4x
#   faster; but a channels_last conv output is not contiguous, so the
#   ``x.view(N, -1)`` students often write before a linear layer raises an
#   error, and their own layers would see unusual strides. Too small a gain
#   for that surprise; training can opt in with model.to(memory_format=...).

# Torch's thread count at import: one per physical core, or OMP_NUM_THREADS.
_TORCH_DEFAULT_THREADS = torch.get_num_threads()

# The thread count chosen by an explicit configure_cpu(n) call; fit keeps it.
_CPU_THREADS = None


def _available_cpus():
    """Number of CPUs this process may run on (respects taskset / cgroup cpusets)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _busy_cpus_elsewhere(samples=5, interval_s=0.01, loadavg="/proc/loadavg"):
    """About how many CPUs other programs keep busy right now: the number of runnable
    threads of the whole machine (the 4th field of /proc/loadavg), less the one reading it,
    median of a few samples. 0 where /proc/loadavg does not exist (macOS, Windows)."""
    counts = []
    for k in range(samples):
        try:
            with open(loadavg) as f:
                running = int(f.read().split()[3].split("/")[0])
        except (OSError, ValueError, IndexError):
            return 0
        counts.append(max(0, running - 1))
        if k + 1 < samples:
            time.sleep(interval_s)
    return sorted(counts)[len(counts) // 2]


def configure_cpu(num_threads=None):
    """Set torch's CPU thread count; ``fit`` calls this when it trains on the CPU.

    The choice, in order: ``num_threads`` when given (and remembered, so later
    ``fit`` calls keep it); else the value of an earlier explicit call; else
    torch's default at import (one thread per physical core, or
    ``OMP_NUM_THREADS`` when set), capped by the number of CPUs this process
    may use and by the CPUs that other programs leave free right now (at least
    one). On an idle 2-core laptop that is 2 threads, 1.6-1.9x faster than 1; with
    another program computing beside the notebook it is 1, since threads
    competing for the same cores make a run several times slower. If you run two
    trainings at the same time, call ``configure_cpu(1)`` in each (or set
    ``OMP_NUM_THREADS=1``).

    Inputs:
    - num_threads: int or None.

    Returns:
    - int: the number of threads torch now uses.
    """
    global _CPU_THREADS
    if num_threads is not None:
        _CPU_THREADS = int(num_threads)
    if _CPU_THREADS is not None:
        wanted = _CPU_THREADS
    else:
        cpus = _available_cpus()
        wanted = min(_TORCH_DEFAULT_THREADS, cpus)
        if wanted > 1:  # only then is there a choice to make (and /proc to read)
            wanted = min(wanted, cpus - _busy_cpus_elsewhere())
    wanted = max(1, wanted)
    if torch.get_num_threads() != wanted:
        torch.set_num_threads(wanted)
    return torch.get_num_threads()


# ----------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------


def _as_tensor(a, name):
    """A torch tensor sharing memory with ``a`` when possible (numpy, tensor, list)."""
    if isinstance(a, torch.Tensor):
        return a
    if isinstance(a, np.ndarray):
        # from_numpy refuses negative strides (e.g. after a[::-1]); copy only then.
        return torch.from_numpy(np.ascontiguousarray(a))
    try:
        return torch.as_tensor(np.asarray(a))
    except (TypeError, ValueError) as err:
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(a)}") from err


def _as_labels(y):
    """Labels as an int64 tensor; float labels must hold whole numbers."""
    y = _as_tensor(y, "y")
    if y.dtype == torch.int64:
        return y
    if y.is_floating_point() and not torch.equal(y, y.round()):
        raise ValueError(
            "y must hold class indices (whole numbers); got float labels with a fractional part"
        )
    return y.to(torch.int64)


class TensorPairDataset(Dataset):
    """In-memory images and labels that come out as float32 images and int64 labels.

    uint8 images are stored as uint8 (CIFAR-10's training set is 150 MB as uint8
    and 600 MB as float32) and converted to float32 batch by batch, values
    unchanged (0..255). Float images are stored as float32. Any other image
    dtype is converted to float32 once.

    The dataset can be indexed by one index or by a list / tensor of indices;
    ``make_loader`` uses the latter to fetch a whole batch in one indexing
    operation instead of stacking N single images.

    Attributes:
    - x: tensor of shape (N, ...), uint8 or float32 (the stored images).
    - y: int64 tensor of shape (N,) or (N, ...) (the labels).
    """

    def __init__(self, x, y):
        x = _as_tensor(x, "x")
        y = _as_labels(y)
        if x.shape[0] != y.shape[0]:
            raise ValueError(
                f"x and y must have the same number of samples, got {x.shape[0]} and {y.shape[0]}"
            )
        if x.dtype != torch.uint8:
            x = x.to(torch.float32)
        self.x = x
        self.y = y

    def __len__(self):
        return self.x.shape[0]

    def __getitem__(self, index):
        return self.x[index].to(torch.float32), self.y[index]


def to_tensor_dataset(x, y):
    """Wrap in-memory images and labels as a Dataset (see ``TensorPairDataset``).

    Inputs:
    - x: numpy array or tensor of shape (N, C, H, W) (or (N, D)); uint8 or float.
      Not normalized: uint8 values stay 0..255 (as float32).
    - y: numpy array or tensor of shape (N,) of class indices (any integer
      dtype, or floats holding whole numbers).

    Returns:
    - TensorPairDataset whose items are (float32 image(s), int64 label(s)).
    """
    return TensorPairDataset(x, y)


def make_loader(x, y, batch_size=128, shuffle=False, seed=None):
    """A DataLoader over in-memory images and labels.

    Batches are float32 images (uint8 values kept as 0..255, no normalization)
    and int64 labels. The loader fetches each batch with one indexing operation
    and runs in the main process (no workers): for in-memory tensors this is the
    fastest choice on a 2-core machine.

    Inputs:
    - x: numpy array or tensor of shape (N, C, H, W); uint8 or float.
    - y: numpy array or tensor of shape (N,) of class indices.
    - batch_size: int; the last batch may be smaller.
    - shuffle: bool; reshuffle at every epoch (every new iteration).
    - seed: int or None. With shuffle, a seed makes the sequence of epoch orders
      reproducible; without one, the order comes from torch's global generator
      (so ``seed_everything`` also makes it reproducible).

    Returns:
    - DataLoader yielding (xb, yb): xb float32 of shape (B, C, H, W), yb int64
      of shape (B,). ``len(loader)`` is the number of batches.
    """
    dataset = TensorPairDataset(x, y)
    if shuffle:
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        sampler = RandomSampler(dataset, generator=generator)
    else:
        sampler = SequentialSampler(dataset)
    # batch_size=None turns off per-item collation: each index the loader
    # receives is already a list of batch_size indices.
    return DataLoader(
        dataset, sampler=BatchSampler(sampler, int(batch_size), drop_last=False), batch_size=None
    )


def _as_loader(data, batch_size, shuffle=False, seed=None, name="data"):
    """A DataLoader from a DataLoader (returned as is), a Dataset or an (x, y) pair."""
    if isinstance(data, DataLoader):
        return data
    if isinstance(data, Dataset):
        generator = None if seed is None else torch.Generator().manual_seed(int(seed))
        return DataLoader(data, batch_size=batch_size, shuffle=shuffle, generator=generator)
    if isinstance(data, (tuple, list)) and len(data) == 2:
        return make_loader(data[0], data[1], batch_size=batch_size, shuffle=shuffle, seed=seed)
    raise TypeError(
        f"{name} must be a DataLoader, a Dataset or an (x, y) pair of arrays, got {type(data)}"
    )


def _to_device(xb, yb, device):
    """Move a batch to ``device``; integer images (from a user's loader) become float32."""
    xb = xb.to(device)
    if not xb.is_floating_point():
        xb = xb.to(torch.float32)
    return xb, yb.to(device)


# ----------------------------------------------------------------------------
# Metrics, history
# ----------------------------------------------------------------------------


@dataclass
class History:
    """What ``fit`` measured, one entry per epoch.

    Attributes (lists of floats, one per epoch):
    - train_loss, train_acc: averages over the epoch's training batches,
      measured while the weights change and in train mode (dropout on).
    - val_loss, val_acc: on the validation data after the epoch, in eval mode.
      Empty when ``fit`` had no validation data.
    - seconds: wall-clock time of the epoch (training and validation).
    - lr: learning rate of the first parameter group during the epoch.
    """

    train_loss: list = field(default_factory=list)
    train_acc: list = field(default_factory=list)
    val_loss: list = field(default_factory=list)
    val_acc: list = field(default_factory=list)
    seconds: list = field(default_factory=list)
    lr: list = field(default_factory=list)

    @property
    def epochs(self):
        """Number of epochs recorded."""
        return len(self.train_loss)

    @property
    def best_val_acc(self):
        """Highest validation accuracy over the epochs, or None without validation data."""
        return max(self.val_acc) if self.val_acc else None

    def __repr__(self):
        # Short, for a notebook cell that ends with fit(...): the last epoch's numbers.
        last = ", ".join(
            f"{name} {values[-1]:.4g}"
            for name, values in (
                ("train_loss", self.train_loss),
                ("train_acc", self.train_acc),
                ("val_loss", self.val_loss),
                ("val_acc", self.val_acc),
            )
            if values
        )
        return f"History({self.epochs} epochs{', last: ' + last if last else ''})"

    def as_dict(self):
        """A plain dict name -> list of floats (copies), e.g. to save as JSON."""
        return {f.name: list(getattr(self, f.name)) for f in fields(self)}


class _Meter:
    """Sums of loss and correct predictions, kept on the device to avoid a sync per batch."""

    def __init__(self):
        self.loss_sum = 0.0
        self.correct = 0.0
        self.n_loss = 0
        self.n_acc = 0

    def update(self, out, yb, loss):
        """Add one batch: loss is the batch mean, weighted here by the batch size."""
        n = yb.shape[0]
        self.loss_sum = self.loss_sum + loss.detach() * n
        self.n_loss += n
        # Classification: out (B, C) and y (B,); dense: out (B, C, H, W) and y (B, H, W).
        if not yb.is_floating_point() and out.dim() == yb.dim() + 1:
            self.correct = self.correct + (out.detach().argmax(dim=1) == yb).sum()
            self.n_acc += yb.numel()

    def result(self):
        """{"loss": mean loss, "acc": accuracy (nan when not a classification output)}."""
        loss = float(self.loss_sum) / self.n_loss if self.n_loss else math.nan
        acc = float(self.correct) / self.n_acc if self.n_acc else math.nan
        return {"loss": loss, "acc": acc}


def _model_device(model):
    """The device of the model's first parameter or buffer (CPU for an empty model)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def _resolve_device(device, model):
    """``device`` as a torch.device; None means the model's current device."""
    return _model_device(model) if device is None else torch.device(device)


# ----------------------------------------------------------------------------
# Evaluation and prediction
# ----------------------------------------------------------------------------


def evaluate(model, data, batch_size=512, device=None, loss_fn=None):
    """Mean loss and accuracy of a model on a data set, in eval mode without gradients.

    The model is left in eval mode; its parameters, gradients and
    ``requires_grad`` flags are untouched.

    Inputs:
    - model: nn.Module mapping (B, C, H, W) float32 images to (B, num_classes) logits.
    - data: DataLoader, Dataset or (x, y) pair; x of shape (N, C, H, W), y of shape (N,).
    - batch_size: int, used when ``data`` is not a DataLoader.
    - device: torch.device, str or None (None: where the model's parameters are;
      otherwise the model is moved there).
    - loss_fn: callable (outputs, y) -> mean loss; default cross-entropy.

    Returns:
    - dict with "loss" (float, mean over samples) and "acc" (float in [0, 1]).
    """
    loader = _as_loader(data, batch_size, shuffle=False)
    device = _resolve_device(device, model)
    model.to(device)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    model.eval()
    meter = _Meter()
    with torch.no_grad():
        for xb, yb in loader:
            xb, yb = _to_device(xb, yb, device)
            out = model(xb)
            meter.update(out, yb, loss_fn(out, yb))
    if meter.n_loss == 0:
        raise ValueError("evaluate got an empty data set")
    return meter.result()


def _iter_inputs(x, batch_size):
    """Yield input batches from a DataLoader (first item of each batch) or an array/tensor."""
    if isinstance(x, DataLoader):
        for batch in x:
            yield batch[0] if isinstance(batch, (tuple, list)) else batch
        return
    x = _as_tensor(x, "x")
    for start in range(0, x.shape[0], batch_size):
        yield x[start : start + batch_size]


def predict(model, x, batch_size=512, device=None):
    """The model's outputs on inputs, in eval mode without gradients.

    Inputs:
    - model: nn.Module.
    - x: numpy array or tensor of shape (N, C, H, W) (uint8 values are used as
      0..255 floats, like ``make_loader``), or a DataLoader of (x, y) batches.
    - batch_size: int, used when ``x`` is an array or tensor.
    - device: torch.device, str or None (None: where the model's parameters are).

    Returns:
    - logits: float32 CPU tensor of shape (N, num_classes) (whatever the model
      returns per batch, concatenated along dim 0). ``logits.argmax(1)`` gives
      the predicted classes.
    """
    device = _resolve_device(device, model)
    model.to(device)
    model.eval()
    outputs = []
    with torch.no_grad():
        for xb in _iter_inputs(x, batch_size):
            xb = xb.to(device)
            if not xb.is_floating_point():
                xb = xb.to(torch.float32)
            outputs.append(model(xb).cpu())
    if not outputs:
        raise ValueError("predict got no inputs")
    return torch.cat(outputs, dim=0)


# ----------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------


def _make_scheduler(scheduler, optimizer):
    """A scheduler instance, or a callable optimizer -> scheduler, or None."""
    if scheduler is None or hasattr(scheduler, "step"):
        return scheduler
    if callable(scheduler):
        return scheduler(optimizer)
    raise TypeError("scheduler must be an LR scheduler or a callable optimizer -> scheduler")


def _step_scheduler(scheduler, metric):
    """Step once per epoch; ReduceLROnPlateau needs the monitored loss."""
    if scheduler is None:
        return
    if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
        scheduler.step(metric)
    else:
        scheduler.step()


def _train_epoch(model, loader, optimizer, loss_fn, device, bar):
    """One pass over ``loader`` in train mode; returns {"loss", "acc"} of the epoch."""
    model.train()
    meter = _Meter()
    for i, (xb, yb) in enumerate(loader):
        xb, yb = _to_device(xb, yb, device)
        optimizer.zero_grad(set_to_none=True)
        out = model(xb)
        loss = loss_fn(out, yb)
        loss.backward()
        optimizer.step()
        meter.update(out, yb, loss)
        bar.update(1)
        # Reading the running values syncs with the GPU: do it every 20 batches only.
        if not bar.disable and i % 20 == 0:
            r = meter.result()
            bar.set_postfix({"loss": f"{r['loss']:.3f}", "acc": f"{r['acc']:.3f}"}, refresh=False)
    if meter.n_loss == 0:
        raise ValueError("fit got an empty training set")
    return meter.result()


def fit(
    model,
    train,
    val=None,
    epochs=1,
    optimizer=None,
    loss_fn=None,
    batch_size=128,
    device=None,
    scheduler=None,
    progress=True,
    seed=None,
):
    """Train a model, evaluating it on validation data after each epoch.

    Shows one progress bar for the whole run (batches of all epochs) with the
    running training loss/accuracy and the last validation accuracy. On the CPU
    it first calls ``configure_cpu()`` (thread count, see there). The model is
    moved to ``device`` and left in eval mode at the end.

    Inputs:
    - model: nn.Module mapping (B, C, H, W) float32 images to (B, num_classes) logits.
    - train: DataLoader, Dataset or (x, y) pair; x of shape (N, C, H, W) (uint8
      or float, not normalized here), y of shape (N,). A pair or a Dataset is
      shuffled at every epoch; a DataLoader is used as given.
    - val: same kinds as ``train``, or None (no validation).
    - epochs: int, number of passes over ``train``.
    - optimizer: torch.optim.Optimizer over ``model``'s parameters, or None
      (Adam, lr 1e-3).
    - loss_fn: callable (outputs, y) -> mean loss over the batch, or None
      (cross-entropy).
    - batch_size: int, used for pairs and Datasets.
    - device: torch.device, str or None (None: ``get_device()``).
    - scheduler: LR scheduler, or a callable optimizer -> scheduler (handy with
      the default optimizer), or None. Stepped once per epoch;
      ReduceLROnPlateau is stepped with the validation loss (training loss
      without validation data).
    - progress: bool, show the progress bar.
    - seed: int or None. When given, ``seed_everything(seed)`` is called and the
      shuffling uses its own generator seeded with it, so that two runs from
      the same initial weights give the same history (on the CPU).

    Returns:
    - History with one entry per epoch in train_loss, train_acc, val_loss,
      val_acc (empty without validation), seconds and lr.
    """
    device = get_device() if device is None else torch.device(device)
    if device.type == "cpu":
        configure_cpu()
    if seed is not None:
        seed_everything(seed)
    train_loader = _as_loader(train, batch_size, shuffle=True, seed=seed, name="train")
    val_loader = None if val is None else _as_loader(val, batch_size, name="val")

    model.to(device)
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    loss_fn = nn.CrossEntropyLoss() if loss_fn is None else loss_fn
    scheduler = _make_scheduler(scheduler, optimizer)

    history = History()
    # At most one refresh a second: every refresh is a message from the kernel, and
    # thousands of them slow a notebook (and can overflow a test runner's queue).
    bar = tqdm(total=epochs * len(train_loader), disable=not progress, unit="batch",
               mininterval=1.0)
    try:
        for epoch in range(epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            start = time.perf_counter()
            lr = optimizer.param_groups[0]["lr"]
            tr = _train_epoch(model, train_loader, optimizer, loss_fn, device, bar)
            va = None
            if val_loader is not None:
                va = evaluate(model, val_loader, device=device, loss_fn=loss_fn)
            _step_scheduler(scheduler, (va or tr)["loss"])
            _record(history, tr, va, time.perf_counter() - start, lr)
            bar.set_postfix(_postfix(tr, va), refresh=True)
    finally:
        bar.close()
    model.eval()
    return history


def _record(history, tr, va, seconds, lr):
    """Append one epoch's numbers to ``history``."""
    history.train_loss.append(tr["loss"])
    history.train_acc.append(tr["acc"])
    if va is not None:
        history.val_loss.append(va["loss"])
        history.val_acc.append(va["acc"])
    history.seconds.append(seconds)
    history.lr.append(lr)


def _postfix(tr, va):
    """The progress bar's summary of an epoch."""
    text = {"loss": f"{tr['loss']:.3f}", "acc": f"{tr['acc']:.3f}"}
    if va is not None:
        text.update(val_loss=f"{va['loss']:.3f}", val_acc=f"{va['acc']:.3f}")
    return text
