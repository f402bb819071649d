"""How fast Lab 04's vectorized numpy convolution is, next to torch's, on the CPU.

    python benchmarks/convolutions.py              # 1 thread for numpy's BLAS and for torch
    python benchmarks/convolutions.py --threads 2
    python benchmarks/convolutions.py --repeat 10 --batch 64

One run times solutions.convolutions.conv2d_forward_fast / conv2d_backward_fast
and torch.nn.functional.conv2d (forward, and backward through autograd: dx, dw
and db) on a CIFAR-sized batch: N=64, C=32, 32x32 inputs, F=64 filters of 3x3,
pad 1, stride 1, in float64 (the lab's dtype) and in float32, with the same
number of threads for both libraries, and prints each time (the best of
--repeat runs), the ratio numpy / torch and the achieved GFLOP/s
(2 * N * F * H' * W' * C * K * K floating-point operations for the forward,
twice that for the backward).
"""

import argparse
import os
import sys
from pathlib import Path


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="threads for numpy and torch")
    parser.add_argument("--repeat", type=int, default=5, help="runs per measure (best kept)")
    parser.add_argument("--batch", type=int, default=64)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # BLAS reads its thread count when numpy is imported: set it first.
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import time

    import numpy as np
    import torch
    import torch.nn.functional as F

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from solutions.convolutions import conv2d_backward_fast, conv2d_forward_fast

    torch.set_num_threads(args.threads)

    def best(fn):
        fn()  # warm-up
        times = []
        for _ in range(args.repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times)

    n, c, h, w, f, k, pad = args.batch, 32, 32, 32, 64, 3, 1
    flops = 2 * n * f * h * w * c * k * k  # stride 1, pad 1: the output is h x w
    print(f"conv2d: N={n}, C={c}, {h}x{w}, F={f}, {k}x{k}, pad {pad}, stride 1; "
          f"{flops / 1e9:.2f} GFLOP forward, {2 * flops / 1e9:.2f} GFLOP backward")
    print(f"threads: numpy BLAS {args.threads} (OPENBLAS/OMP/MKL_NUM_THREADS), "
          f"torch {torch.get_num_threads()}; best of {args.repeat} runs; "
          f"numpy {np.__version__}, torch {torch.__version__}")
    rng = np.random.default_rng(0)
    param = {"stride": 1, "pad": pad}
    print(f"{'dtype':<9}{'pass':<10}{'numpy (s)':>11}{'torch (s)':>11}{'numpy/torch':>13}"
          f"{'numpy GFLOP/s':>15}{'torch GFLOP/s':>15}")
    for dtype in (np.float64, np.float32):
        x = rng.standard_normal((n, c, h, w)).astype(dtype)
        wt = rng.standard_normal((f, c, k, k)).astype(dtype)
        b = rng.standard_normal(f).astype(dtype)
        dout = rng.standard_normal((n, f, h, w)).astype(dtype)
        out, cache = conv2d_forward_fast(x, wt, b, param)
        tx, tw, tb = (torch.from_numpy(a).requires_grad_() for a in (x, wt, b))
        tout = F.conv2d(tx, tw, tb, padding=pad)
        error = float(np.max(np.abs(out - tout.detach().numpy())))
        tdout = torch.from_numpy(dout)

        def torch_forward(tx=tx, tw=tw, tb=tb):
            with torch.no_grad():
                F.conv2d(tx, tw, tb, padding=pad)

        def torch_backward(tout=tout, inputs=(tx, tw, tb), tdout=tdout):
            torch.autograd.grad(tout, inputs, tdout, retain_graph=True)

        rows = [
            ("forward", best(lambda x=x, wt=wt, b=b: conv2d_forward_fast(x, wt, b, param)),
             best(torch_forward), flops),
            ("backward", best(lambda dout=dout, cache=cache: conv2d_backward_fast(dout, cache)),
             best(torch_backward), 2 * flops),
        ]
        name = np.dtype(dtype).name
        for pass_, t_np, t_torch, fl in rows:
            print(f"{name:<9}{pass_:<10}{t_np:>11.4f}{t_torch:>11.4f}{t_np / t_torch:>13.2f}"
                  f"{fl / t_np / 1e9:>15.1f}{fl / t_torch / 1e9:>15.1f}")
        print(f"{'':<9}(max |numpy - torch| of the forward output: {error:.2g})")


if __name__ == "__main__":
    main()
