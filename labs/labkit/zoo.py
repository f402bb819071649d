"""A small model zoo: pretrained networks shipped with the labs (no download needed).

Libraries keep a *model zoo* of networks pretrained on a large data set (PyTorch:
``torchvision.models``). The labs cannot download anything while they run, so they ship
their own, the way torchvision does it: weights in a file, a *model card* that says what
the network is and how it was trained, and a checksum::

    from labkit.zoo import load_pretrained, preprocess
    model, card = load_pretrained("shapes_resnet")   # a ShapesResNet, in eval mode
    x = preprocess(x_uint8, card)                    # (N, 3, 32, 32) float32, as in pretraining
    logits = model(x)                                # (N, 10): the 10 "shapes" source classes

Networks:

``"shapes_resnet"``
    A small ResNet for 32x32 images (:class:`ShapesResNet`: a 3x3 stem and three stages of
    torchvision's ``BasicBlock``), trained on the 50,000 "shapes" training images (the
    *source task*). Its card gives its accuracy on the 10,000 "shapes" test images. The
    weights are ``data/zoo/shapes_resnet.pt``, made by ``python data/pretrain.py``.
``"resnet18_imagenet"``
    torchvision's ResNet-18 with its ImageNet weights, for the real CIFAR-10. It is never
    downloaded here: it is used only when the weights are already in torch's cache
    (``$TORCH_HOME/hub/checkpoints``, filled beforehand with internet access).

``default_model_name()`` picks the network that fits the data set of ``LAB_DATASET``:
ResNet-18 for ``cifar10`` when its weights are cached, else (saying so in one line) the
shipped "shapes_resnet". Both have the same layout (``conv1``, ``bn1``, ``layer1`` ...,
``fc``), so a lab's code works on either.

Weights are read with ``torch.load(..., weights_only=True)`` (never an unrestricted
unpickle) and checked against the sha256 in the card; a missing or corrupt file raises
:class:`ZooError`, whose message says how to rebuild it.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torchvision.models.resnet import BasicBlock

__all__ = [
    "ShapesResNet",
    "ZooError",
    "card",
    "default_model_name",
    "imagenet_weights_cached",
    "load_pretrained",
    "preprocess",
    "weights_path",
    "zoo_dir",
    "MODELS",
]

MODELS = ("shapes_resnet", "resnet18_imagenet")

REBUILD = "python data/pretrain.py"

# What torchvision's ResNet-18 ImageNet weights expect (torchvision's own card).
_IMAGENET_CARD = {
    "name": "resnet18_imagenet",
    "architecture": "torchvision.models.resnet18 (11.7 M parameters)",
    "builder": {"name": "torchvision.models.resnet18", "kwargs": {}},
    "source_dataset": "ImageNet-1k (1.28 M images, 1,000 classes)",
    "recipe": "torchvision's IMAGENET1K_V1 weights (He et al. 2016)",
    "source_test_accuracy": 0.69758,
    "source_test_set": "ImageNet-1k validation set (top-1, 224x224)",
    "num_classes": 1000,
    "preprocessing": {
        "scale": "x / 255",
        "mean": [0.485, 0.456, 0.406],
        "std": [0.229, 0.224, 0.225],
        "input_size": [3, 32, 32],
    },
    "weights_file": "resnet18-f37072fd.pth (torch's cache)",
    "sha256": None,
}


class ShapesResNet(nn.Module):
    """A small ResNet for 32x32 images, laid out like torchvision's ResNets.

    ``conv1`` (3x3, stride 1) + ``bn1`` + ``relu``, then ``layer1``, ``layer2``,
    ``layer3`` (each ``blocks`` torchvision ``BasicBlock``s; stages 2 and 3 halve the
    resolution), global average pooling ``avgpool`` and a linear classifier ``fc``.

    Inputs:
    - widths: tuple of 3 ints, the channels of the three stages (default (32, 64, 128)).
    - blocks: int, basic blocks per stage (default 2).
    - num_classes: int, outputs of ``fc``.

    Shapes: (N, 3, H, W) float images -> (N, num_classes) logits; the features that ``fc``
    reads are (N, widths[-1]).
    """

    def __init__(self, widths=(32, 64, 128), blocks=2, num_classes=10):
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if len(widths) != 3:
            raise ValueError(f"ShapesResNet needs 3 stage widths, got {widths}")
        self.widths, self.blocks = widths, int(blocks)
        self.conv1 = nn.Conv2d(3, widths[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(widths[0])
        self.relu = nn.ReLU(inplace=True)
        cin = widths[0]
        for i, (w, stride) in enumerate(zip(widths, (1, 2, 2), strict=True), start=1):
            layers = []
            for b in range(self.blocks):
                s = stride if b == 0 else 1
                down = None
                if s != 1 or cin != w:
                    down = nn.Sequential(nn.Conv2d(cin, w, 1, s, bias=False), nn.BatchNorm2d(w))
                layers.append(BasicBlock(cin, w, s, down))
                cin = w
            setattr(self, f"layer{i}", nn.Sequential(*layers))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        return self.fc(torch.flatten(self.avgpool(x), 1))


class ZooError(RuntimeError):
    """A pretrained network could not be loaded (missing or corrupt weights, unknown name)."""


def zoo_dir() -> Path:
    """The folder of the shipped weights and cards: ``data/zoo`` of the repository.

    ``LAB_ZOO_DIR`` moves it; else it is ``$LAB_DATA_DIR/zoo`` when that folder holds the
    card, else the repository's ``data/zoo`` (the committed weights).
    """
    env = os.environ.get("LAB_ZOO_DIR")
    if env:
        return Path(env).expanduser()
    data_env = os.environ.get("LAB_DATA_DIR")
    if data_env and (Path(data_env).expanduser() / "zoo" / "cards.json").exists():
        return Path(data_env).expanduser() / "zoo"
    return Path(__file__).resolve().parent.parent.parent / "data" / "zoo"


def _cards() -> dict:
    path = zoo_dir() / "cards.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise ZooError(
            f"the model zoo's cards ({path}) are missing. Rebuild the shipped network with "
            f"`{REBUILD}` (it writes data/zoo/), or restore data/zoo/ from git "
            "(`git checkout -- data/zoo`)."
        ) from None
    except (OSError, ValueError) as err:
        raise ZooError(
            f"the model zoo's cards ({path}) are unreadable ({err}). Restore them with "
            f"`git checkout -- data/zoo`, or rebuild with `{REBUILD}`."
        ) from None


def card(name: str) -> dict:
    """The model card of a zoo network: a plain dict (a copy).

    Keys: ``name``, ``architecture``, ``builder`` (the class and its kwargs),
    ``source_dataset``, ``recipe``, ``source_test_accuracy``, ``source_test_set``,
    ``num_classes``, ``preprocessing`` (``scale``, per-channel ``mean`` and ``std`` after
    scaling, ``input_size``), ``weights_file`` and ``sha256``; the shipped network adds
    ``training`` (seed, epochs, CPU time, the command that made it).
    """
    if name == "resnet18_imagenet":
        return copy.deepcopy(_IMAGENET_CARD)
    if name not in MODELS:
        raise ZooError(f"unknown model {name!r}; the zoo has {', '.join(MODELS)}")
    cards = _cards()
    if name not in cards:
        raise ZooError(
            f"{zoo_dir() / 'cards.json'} has no card for {name!r}; rebuild with `{REBUILD}`."
        )
    return copy.deepcopy(cards[name])


def weights_path(name: str = "shapes_resnet") -> Path:
    """The file that holds a shipped network's weights."""
    return zoo_dir() / card(name)["weights_file"]


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _load_state(path: Path, sha256: str | None):
    hint = (
        f"Rebuild it with `{REBUILD}` (about 11 CPU-minutes, 21 minutes on a shared 2-core "
        f"machine; see its docstring), or "
        f"restore the committed file with `git checkout -- {_repo_relative(path)}`."
    )
    if not path.exists():
        raise ZooError(f"the pretrained weights {path} are missing. {hint}")
    if sha256 is not None:
        digest = _sha256(path)
        if digest != sha256:
            raise ZooError(
                f"the pretrained weights {path} are corrupt: their sha256 is {digest}, the "
                f"model card says {sha256}. {hint}"
            )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same problem
        raise ZooError(f"the pretrained weights {path} are unreadable ({err}). {hint}") from None


def _repo_relative(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(Path(__file__).resolve().parent.parent.parent))
    except ValueError:
        return str(path)


def imagenet_weights_cached() -> Path | None:
    """The cached ResNet-18 ImageNet weights file in torch's hub cache, or None."""
    from torchvision.models import ResNet18_Weights

    url = ResNet18_Weights.IMAGENET1K_V1.url
    path = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    return path if path.exists() else None


def default_model_name(dataset: str | None = None, verbose: bool = True) -> str:
    """The zoo network a lab should use for a data set.

    Inputs:
    - dataset: ``"shapes"``, ``"shapes_target"`` or ``"cifar10"``; None reads
      ``LAB_DATASET`` (default ``"shapes"``).
    - verbose: print the one-line message when falling back.

    Returns ``"resnet18_imagenet"`` for CIFAR-10 when torchvision's ImageNet weights are in
    torch's cache, else ``"shapes_resnet"`` (for CIFAR-10 with a one-line message: nothing
    is downloaded while a lab runs).
    """
    if dataset is None:
        dataset = os.environ.get("LAB_DATASET") or "shapes"
    if dataset != "cifar10":
        return "shapes_resnet"
    if imagenet_weights_cached() is not None:
        return "resnet18_imagenet"
    if verbose:
        print(
            "labkit.zoo: torchvision's ResNet-18 ImageNet weights are not in torch's cache "
            f"({Path(torch.hub.get_dir()) / 'checkpoints'}) and nothing is downloaded "
            "offline; using the shipped network 'shapes_resnet' (pretrained on \"shapes\")."
        )
    return "shapes_resnet"


def build(name: str = "shapes_resnet", num_classes: int | None = None) -> nn.Module:
    """A zoo network's architecture, randomly initialized (no weights loaded)."""
    c = card(name)
    kwargs = dict(c["builder"]["kwargs"])
    if num_classes is not None:
        kwargs["num_classes"] = int(num_classes)
    if c["builder"]["name"] == "labkit.zoo.ShapesResNet":
        return ShapesResNet(**kwargs)
    import torchvision

    return torchvision.models.resnet18(**kwargs)


def load_pretrained(name: str | None = None) -> tuple[nn.Module, dict]:
    """A pretrained network of the zoo and its model card.

    Inputs:
    - name: ``"shapes_resnet"`` (shipped) or ``"resnet18_imagenet"`` (only when its
      weights are in torch's cache); None means ``default_model_name()``.

    Returns:
    - model: the network with its pretrained weights, on the CPU, in eval mode, every
      parameter trainable (``requires_grad=True``); its classifier ``model.fc`` still has the
      source task's outputs.
    - card: its model card (see :func:`card`).

    Raises ZooError for an unknown name, missing or corrupt weights (the message says how to
    rebuild them).
    """
    if name is None:
        name = default_model_name()
    c = card(name)
    if name == "resnet18_imagenet":
        path = imagenet_weights_cached()
        if path is None:
            raise ZooError(
                "torchvision's ResNet-18 ImageNet weights are not in torch's cache "
                f"({Path(torch.hub.get_dir()) / 'checkpoints'}); with internet, run once "
                "`python -c \"import torchvision; "
                "torchvision.models.resnet18(weights='DEFAULT')\"`, "
                "or use load_pretrained('shapes_resnet')."
            )
        state = _load_state(path, None)
    else:
        state = _load_state(zoo_dir() / c["weights_file"], c["sha256"])
    model = build(name)
    try:
        model.load_state_dict(state)
    except RuntimeError as err:
        raise ZooError(
            f"the weights of {name!r} do not fit its architecture ({err}). Rebuild them with "
            f"`{REBUILD}`."
        ) from None
    model.eval()
    return model, c


def preprocess(x, card: dict) -> torch.Tensor:
    """Images as the network saw them in pretraining: ``(x / 255 - mean) / std``.

    Inputs:
    - x: uint8 images (N, 3, H, W), numpy array or tensor.
    - card: the network's model card (``card["preprocessing"]`` gives mean and std).

    Returns a new float32 tensor (N, 3, H, W); x is not modified.
    """
    p = card["preprocessing"]
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    mean = torch.tensor(p["mean"], dtype=torch.float32).view(1, -1, 1, 1)
    std = torch.tensor(p["std"], dtype=torch.float32).view(1, -1, 1, 1)
    return (x.float() / 255.0 - mean) / std
