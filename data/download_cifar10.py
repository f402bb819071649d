"""Download CIFAR-10 into data/cifar10 (`make data-cifar10`; needs internet).

    python data/download_cifar10.py

torchvision fetches the python version of the data set (163 MB) from its authors' site,
checks its md5 and unpacks it into data/cifar10/cifar-10-batches-py (or under
$LAB_DATA_DIR/cifar10). Afterwards `load_dataset("cifar10")`, or `export LAB_DATASET=cifar10`,
gives it to the labs. Nothing else in the labs downloads anything.
"""

import sys
from pathlib import Path

try:
    from labkit import data
except ImportError:  # labkit not installed (yet): use this repository's copy
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "labs"))
    from labkit import data


def main():
    from torchvision.datasets import CIFAR10

    root = data.data_dir() / "cifar10"
    try:
        for train in (True, False):  # the second call finds the files and only checks them
            CIFAR10(root=str(root), train=train, download=True)
    except Exception as err:  # noqa: BLE001 - urllib, http and tar errors all mean the same here
        sys.exit(
            f"Could not download CIFAR-10 into {root}: {err}\n"
            "Without internet, use the offline data set: load_dataset('shapes')."
        )
    for split in data.SPLITS:
        x, y = data.load_dataset("cifar10", split)
        print(f"cifar10/{split}: {x.shape} {x.dtype}, labels {y.shape} {y.dtype}")
    print(f"CIFAR-10 is in {root}")


if __name__ == "__main__":
    main()
