"""How fast the shapes data sets are made, and how hard they are to learn.

    python benchmarks/data.py                    # generation time of both sets
    python benchmarks/data.py --calibrate 60     # also: train the small CNN for 60 s
    python benchmarks/data.py --calibrate 900 --model resnet
    python benchmarks/data.py --grid shapes.png  # also: save a grid of examples

The generation benchmark draws the 60,000 images of "shapes" (train + test) and the 7,000 of
"shapes_target" without touching the cache. The calibration trains a model on the cached
"shapes" training set (made first if needed) with the recipe of data/README.md: inputs
standardized per channel, Adam (lr 1e-3), batch 128, 2 CPU threads, and prints the test
accuracy as it goes. The figures of data/README.md come from these commands.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

try:
    from labkit import data
except ImportError:  # labkit not installed (yet): use this repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "labs"))
    from labkit import data


def benchmark_generation():
    for task, n in (("source", 60_000), ("target", 7_000)):
        start = time.perf_counter()
        data.generate_shapes(n, seed=0, task=task)
        seconds = time.perf_counter() - start
        print(f"generate_shapes({n}, task={task!r}): {seconds:.1f} s, {n / seconds:,.0f} images/s")


def save_grid(path, per_class=10):
    """Save ``per_class`` examples of every class, source set left and target set right."""
    import matplotlib

    matplotlib.use("Agg")  # a file, no window
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(10, 2 * per_class + 1, figsize=(2 * per_class + 1, 10.6))
    for side, (task, name) in enumerate((("source", "shapes"), ("target", "shapes_target"))):
        x, y = data.generate_shapes(20 * per_class, seed=7, task=task)
        for k, label in enumerate(data.class_names(name)):
            row = axes[k, side * (per_class + 1) : side * (per_class + 1) + per_class]
            for ax, i in zip(row, np.flatnonzero(y == k)[:per_class], strict=True):
                ax.imshow(x[i].transpose(1, 2, 0), interpolation="nearest")
            row[0].set_title(f"{name}: {label}", fontsize=9, loc="left")
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout(pad=0.3)
    fig.savefig(path, dpi=60)
    print(f"saved {path}")


def small_cnn():
    """3 conv layers (32-64-128) with max pooling and a linear layer: the calibration model."""
    from torch import nn

    layers, channels = [], 3
    for width in (32, 64, 128):
        layers += [nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
        channels = width
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 4 * 4, 10))


def small_resnet(width=16):
    """A ResNet-10-like network (4 basic blocks with batch norm), for the long run."""
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout),
            )  # fmt: skip
            self.skip = nn.Identity()
            if stride != 1 or cin != cout:
                self.skip = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x):
            return (self.body(x) + self.skip(x)).relu()

    w = width
    return nn.Sequential(
        nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU(),
        Block(w, w, 1), Block(w, 2 * w, 2), Block(2 * w, 4 * w, 2), Block(4 * w, 4 * w, 1),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4 * w, 10),
    )  # fmt: skip


def calibrate(seconds, model_name, report_every, augment):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(2)
    torch.manual_seed(0)
    x_train, y_train = (torch.from_numpy(a) for a in data.load_dataset("shapes", "train"))
    x_test, y_test = (torch.from_numpy(a) for a in data.load_dataset("shapes", "test"))
    x_train, x_test = x_train.float(), x_test.float()
    mean = x_train.mean(dim=(0, 2, 3), keepdim=True)
    std = x_train.std(dim=(0, 2, 3), keepdim=True)
    x_train, x_test = (x_train - mean) / std, (x_test - mean) / std

    model = small_cnn() if model_name == "small" else small_resnet()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def test_accuracy(n=None):
        n = n or len(x_test)
        model.eval()
        with torch.no_grad():
            correct = sum(
                (model(x_test[i : i + 1000]).argmax(1) == y_test[i : i + 1000]).sum().item()
                for i in range(0, n, 1000)
            )
        model.train()
        return correct / n

    print(f"calibration: {model_name}, {seconds:.0f} s, augment={augment}")
    start, seen, next_report, epoch = time.perf_counter(), 0, report_every, 0
    while time.perf_counter() - start < seconds:
        epoch += 1
        order = torch.randperm(len(x_train))
        for i in range(0, len(order), 128):
            xb, yb = x_train[order[i : i + 128]], y_train[order[i : i + 128]]
            if augment:  # random mirroring and translation by up to 4 pixels
                xb = torch.where(torch.rand(len(xb), 1, 1, 1) < 0.5, xb.flip(3), xb)
                dx, dy = torch.randint(0, 9, (2,)).tolist()
                xb = F.pad(xb, (4, 4, 4, 4))[:, :, dy : dy + 32, dx : dx + 32]
            loss = F.cross_entropy(model(xb), yb)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            seen += len(yb)
            elapsed = time.perf_counter() - start
            if seen >= next_report:
                next_report += report_every
                acc = test_accuracy(2000)
                print(
                    f"  {seen:>7} images ({seen / len(x_train):.2f} epochs), {elapsed:4.0f} s, "
                    f"{seen / elapsed:.0f} images/s: test accuracy {acc:.3f} (2,000 images)",
                    flush=True,
                )
            if elapsed > seconds:
                break
    elapsed = time.perf_counter() - start
    print(
        f"after {elapsed:.0f} s, {seen} images ({seen / len(x_train):.2f} epochs): "
        f"test accuracy {test_accuracy():.3f} (10,000 images)"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calibrate", type=float, metavar="SECONDS", help="also train a model")
    parser.add_argument("--model", choices=["small", "resnet"], default="small")
    parser.add_argument("--augment", action="store_true", help="flips and 4-pixel shifts")
    parser.add_argument("--grid", metavar="PNG", help="save a grid of examples to this file")
    parser.add_argument("--report-every", type=int, default=5_000, metavar="IMAGES")
    args = parser.parse_args(argv)
    benchmark_generation()
    if args.grid:
        save_grid(args.grid)
    if args.calibrate:
        calibrate(args.calibrate, args.model, args.report_every, args.augment)


if __name__ == "__main__":
    main()
