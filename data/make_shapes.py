"""Generate the offline data sets and cache them under data/ (`make data`).

    python data/make_shapes.py            # both sets, each split; keeps valid caches
    python data/make_shapes.py --force    # regenerate even when a valid cache exists

The images are made by labkit.data.generate_shapes and cached where load_dataset looks for
them (data/shapes/{train,test}.npz and data/shapes_target/{train,test}.npz, or under
$LAB_DATA_DIR). A lab would generate them on first use anyway; this makes it ahead of time.
"""

import argparse
import sys
import time
from pathlib import Path

try:
    from labkit import data
except ImportError:  # labkit not installed (yet): use this repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "labs"))
    from labkit import data

OFFLINE_SETS = ("shapes", "shapes_target")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--force", action="store_true", help="regenerate existing caches")
    args = parser.parse_args(argv)

    for name in OFFLINE_SETS:
        for split in data.SPLITS:
            path = data.data_dir() / name / f"{split}.npz"
            if args.force:
                path.unlink(missing_ok=True)
            start = time.perf_counter()
            x, _ = data.load_dataset(name, split)
            seconds = time.perf_counter() - start
            print(f"{name}/{split}: {len(x)} images in {seconds:.1f} s -> {path}")


if __name__ == "__main__":
    main()
