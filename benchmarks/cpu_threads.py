"""Torch's thread count on a busy machine: what labkit.train.configure_cpu chooses, measured.

    python benchmarks/cpu_threads.py                 # idle, then beside 2 busy processes
    python benchmarks/cpu_threads.py --busy 1 --steps 20

Times training steps (forward, backward, Adam) of the small CIFAR-sized CNN of
labkit/train.py's measurements (4 conv 3x3 + batch norm layers, 32-64 channels,
batch 128) in a fresh process per setting, with 1 thread, with torch's default
(one per physical core), and with configure_cpu()'s choice; first on the machine as
it is, then with --busy processes spinning beside it (what a browser, a second
notebook or a compile does to a student's laptop). Printed: the median milliseconds
per step of each setting and the ratio to the best one of the same row. A choice that
ignores the competing load shows as a ratio well above 1 on the busy row.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing as mp
import os
import subprocess
import sys
import time

STEP = r"""
import statistics, sys, time
import torch
from torch import nn
from labkit import train
mode, steps = sys.argv[1], int(sys.argv[2])
if mode == "one":
    torch.set_num_threads(1)
elif mode == "auto":
    train.configure_cpu()
threads = torch.get_num_threads()
torch.manual_seed(0)
def block(i, o):
    return [nn.Conv2d(i, o, 3, padding=1, bias=False), nn.BatchNorm2d(o), nn.ReLU()]
model = nn.Sequential(*block(3, 32), *block(32, 32), nn.MaxPool2d(2), *block(32, 64),
                      *block(64, 64), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))
opt = torch.optim.Adam(model.parameters(), 1e-3)
x, y = torch.randn(128, 3, 32, 32), torch.randint(0, 10, (128,))
times = []
for k in range(steps + 2):
    start = time.perf_counter()
    opt.zero_grad()
    nn.functional.cross_entropy(model(x), y).backward()
    opt.step()
    if k >= 2:  # two warm-up steps
        times.append(time.perf_counter() - start)
print(threads, 1000 * statistics.median(times))
"""

MODES = ("one", "default", "auto")


def _spin(stop_at: float) -> None:
    while time.monotonic() < stop_at:
        pass


@contextlib.contextmanager
def competing_load(processes: int):
    """``processes`` busy processes spinning beside the block (the block's competing load)."""
    stop_at = time.monotonic() + 3 * 3600
    spinners = [mp.Process(target=_spin, args=(stop_at,), daemon=True) for _ in range(processes)]
    for p in spinners:
        p.start()
    try:
        time.sleep(1.0 if processes else 0.0)  # the load average and the scheduler see them
        yield
    finally:
        for p in spinners:
            p.terminate()
            p.join()


def _measure(mode: str, steps: int) -> tuple[int, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    out = subprocess.run([sys.executable, "-c", STEP, mode, str(steps)], env=env, check=True,
                         capture_output=True, text=True).stdout.split()
    return int(out[0]), float(out[1])


def _row(label: str, steps: int) -> None:
    results = {mode: _measure(mode, steps) for mode in MODES}
    best = min(ms for _, ms in results.values())
    cells = "".join(f"{f'{ms:.0f} ms ({threads} thr) x{ms / best:.2f}':>26}"
                    for threads, ms in results.values())
    print(f"{label:<28}{cells}", flush=True)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--busy", type=int, default=2, help="competing busy processes")
    parser.add_argument("--steps", type=int, default=15, help="timed steps per setting")
    args = parser.parse_args(argv)
    print(f"CPUs: {os.cpu_count()}; load average before: {os.getloadavg()[0]:.2f}")
    print(f"{'machine':<28}" + "".join(f"{name:>26}" for name in
                                     ("1 thread", "torch default", "configure_cpu()")))
    _row("as it is", args.steps)
    with competing_load(args.busy):
        _row(f"beside {args.busy} busy processes", args.steps)
    print("ms: median time of a training step; xN: against the fastest setting of its row")


if __name__ == "__main__":
    main()
