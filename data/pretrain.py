"""Pretrain the model zoo's network on "shapes" and write its weights and card (data/zoo/).

    python data/pretrain.py                      # the shipped run (see below for its figures)
    python data/pretrain.py --n-train 300 --n-test 200 --epochs 1 --out /tmp/zoo   # a smoke test

The network is ``labkit.zoo.ShapesResNet`` (a 3x3 stem and three stages of torchvision's
BasicBlock, 16-32-64 channels, one block per stage, 78,042 parameters), trained from
scratch on the 50,000 "shapes" training images (the *source task* of Lab 05) and tested on
the 10,000 "shapes" test images.

Recipe: images scaled to [0, 1] and standardized per channel with the training set's mean
and standard deviation (written into the card, ``labkit.zoo.preprocess`` applies them);
random horizontal flips and translations by up to 4 pixels (zero padding), drawn per
image; AdamW, batch 128, weight decay 0.01 (not on batch-norm parameters and biases),
learning rate 2e-3 warmed up linearly over the first 200 steps, then a cosine decay to 0;
one torch thread; seed 0. (A first try with SGD, Nesterov momentum, lr 0.1 warmed up over
one epoch stayed at chance, 10.3%, after its first epoch: this data set has a long
plateau at the start, which Adam leaves much sooner.)

Outputs, in ``--out`` (default ``data/zoo``):

- ``shapes_resnet.pt``: the state_dict (tensors only, read with
  ``torch.load(..., weights_only=True)``);
- ``cards.json``: the model card, with the sha256 of that file, the test accuracy printed
  at the end and the CPU time of the run.

The shipped run (``python data/pretrain.py``, the defaults: seed 0, 6 epochs) printed
one line per epoch and, at the end, the figures that are in ``data/zoo/cards.json``
(``source_test_accuracy``, ``training.cpu_seconds``); see the card for the exact numbers.
It ran on the project's 2-core development machine (shared with other jobs, so its wall
time is longer than its CPU time).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import resource
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

try:
    from labkit import data, zoo
except ImportError:  # labkit not installed (yet): use this repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "labs"))
    from labkit import data, zoo

NAME = "shapes_resnet"
WARMUP_STEPS = 200


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random horizontal flip and translation by up to 4 pixels, per image."""
    n, _, h, w = xb.shape
    flip = torch.rand(n, generator=gen) < 0.5
    xb = torch.where(flip.view(-1, 1, 1, 1), xb.flip(3), xb)
    pad = F.pad(xb, (4, 4, 4, 4))
    dy = torch.randint(0, 9, (n,), generator=gen)
    dx = torch.randint(0, 9, (n,), generator=gen)
    rows = (dy[:, None] + torch.arange(h))[:, None, :, None]  # (n, 1, h, 1)
    cols = (dx[:, None] + torch.arange(w))[:, None, None, :]  # (n, 1, 1, w)
    idx_n = torch.arange(n)[:, None, None, None]
    idx_c = torch.arange(xb.shape[1])[None, :, None, None]
    return pad[idx_n, idx_c, rows, cols]


@torch.no_grad()
def accuracy(model, x, y, batch=500) -> float:
    model.eval()
    correct = sum(
        (model(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum().item()
        for i in range(0, len(x), batch)
    )
    return correct / len(x)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--n-train", type=int, default=50_000, help="first N training images")
    parser.add_argument("--n-test", type=int, default=10_000, help="first N test images")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--widths", type=int, nargs=3, default=[16, 32, 64])
    parser.add_argument("--blocks", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "zoo")
    parser.add_argument("--partial", type=Path, default=None, help="also save weights each epoch here")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    start_wall, start_cpu = time.perf_counter(), cpu_seconds()

    x_train, y_train = data.load_dataset("shapes", "train")
    x_test, y_test = data.load_dataset("shapes", "test")
    x_train, y_train = x_train[: args.n_train], y_train[: args.n_train]
    x_test, y_test = x_test[: args.n_test], y_test[: args.n_test]
    scaled = x_train.astype(np.float32) / 255.0
    mean = scaled.mean(axis=(0, 2, 3)).tolist()
    std = scaled.std(axis=(0, 2, 3)).tolist()
    del scaled
    preprocessing = {"scale": "x / 255", "mean": mean, "std": std, "input_size": [3, 32, 32]}
    pre = {"preprocessing": preprocessing}
    xtr, xte = zoo.preprocess(x_train, pre), zoo.preprocess(x_test, pre)
    ytr, yte = torch.from_numpy(y_train), torch.from_numpy(y_test)

    kwargs = {"widths": list(args.widths), "blocks": args.blocks, "num_classes": 10}
    model = zoo.ShapesResNet(**kwargs)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for n, p in model.named_parameters() if p.ndim > 1]
    no_decay = [p for n, p in model.named_parameters() if p.ndim <= 1]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": args.weight_decay}, {"params": no_decay, "weight_decay": 0}],
        lr=args.lr,
    )  # fmt: skip
    steps_per_epoch = math.ceil(len(xtr) / args.batch_size)
    total = steps_per_epoch * args.epochs
    warmup = min(WARMUP_STEPS, total // 10 + 1)

    def lr_at(step):
        if step < warmup:
            return args.lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total - warmup)
        return args.lr * 0.5 * (1 + math.cos(math.pi * t))

    print(
        f"pretrain: ShapesResNet{tuple(args.widths)} blocks={args.blocks}, {n_params} parameters, "
        f"{len(xtr)} train / {len(xte)} test images, {args.epochs} epochs, seed {args.seed}",
        flush=True,
    )
    step = 0
    for epoch in range(1, args.epochs + 1):
        model.train()
        order = torch.randperm(len(xtr), generator=gen)
        loss_sum, seen = 0.0, 0
        for i in range(0, len(order), args.batch_size):
            idx = order[i : i + args.batch_size]
            xb, yb = augment(xtr[idx], gen), ytr[idx]
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            loss_sum += loss.item() * len(yb)
            seen += len(yb)
        last = epoch == args.epochs
        n_eval = len(xte) if last else min(len(xte), 2000)
        acc = accuracy(model, xte[:n_eval], yte[:n_eval])
        print(
            f"epoch {epoch:2d}/{args.epochs}: train loss {loss_sum / seen:.3f}, test accuracy "
            f"{acc:.4f} ({n_eval} images), CPU {cpu_seconds() - start_cpu:.0f} s, wall "
            f"{time.perf_counter() - start_wall:.0f} s",
            flush=True,
        )
        if args.partial is not None:
            torch.save(model.state_dict(), args.partial)

    cpu, wall = cpu_seconds() - start_cpu, time.perf_counter() - start_wall
    args.out.mkdir(parents=True, exist_ok=True)
    weights = args.out / f"{NAME}.pt"
    tmp = weights.with_suffix(".pt.tmp")
    torch.save({k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}, tmp)
    os.replace(tmp, weights)
    command = "python data/pretrain.py" + (" " + " ".join(argv) if argv else "")
    if argv is None and len(sys.argv) > 1:
        command = "python data/pretrain.py " + " ".join(sys.argv[1:])
    card = {
        "name": NAME,
        "architecture": (
            f"labkit.zoo.ShapesResNet: 3x3 conv stem, 3 stages of {args.blocks} torchvision "
            f"BasicBlock(s), widths {'-'.join(map(str, args.widths))}, strides 1-2-2, batch "
            f"norm, global average pooling, linear classifier fc; {n_params} parameters"
        ),
        "builder": {"name": "labkit.zoo.ShapesResNet", "kwargs": kwargs},
        "source_dataset": f"labkit.data 'shapes', train split, first {len(xtr)} images (10 classes)",
        "recipe": (
            f"{args.epochs} epochs from scratch, AdamW, batch {args.batch_size}, "
            f"lr {args.lr} ({warmup} steps linear warm-up, then cosine to 0), weight decay "
            f"{args.weight_decay} (not on BN/bias), random flips and 4-pixel translations, seed {args.seed}"
        ),
        "source_test_accuracy": round(acc, 4),
        "source_test_set": f"labkit.data 'shapes', test split, first {len(xte)} images",
        "num_classes": 10,
        "preprocessing": preprocessing,
        "weights_file": weights.name,
        "sha256": sha256(weights),
        "training": {
            "command": command,
            "seed": args.seed,
            "epochs": args.epochs,
            "torch_threads": args.threads,
            "cpu_seconds": round(cpu),
            "wall_seconds": round(wall),
            "torch_version": torch.__version__,
        },
    }
    cards_path = args.out / "cards.json"
    cards = json.loads(cards_path.read_text()) if cards_path.exists() else {}
    cards[NAME] = card
    cards_path.write_text(json.dumps(cards, indent=2) + "\n")
    size = weights.stat().st_size
    print(
        f"done: test accuracy {acc:.4f} on {len(xte)} images, CPU {cpu:.0f} s, wall {wall:.0f} s; "
        f"wrote {weights} ({size / 1024:.0f} KiB, sha256 {card['sha256'][:12]}...) and {cards_path}"
    )
    return card


if __name__ == "__main__":
    main()
