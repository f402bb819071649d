"""The model zoo (labkit.zoo) and the script that made its weights (data/pretrain.py).

- the shipped weights match the sha256 of their card, are well under 5 MiB, load with
  ``weights_only=True`` and give the accuracy the card states;
- a missing, corrupt or malicious weights file is a ZooError that says how to rebuild it
  (and a malicious pickle never runs);
- offline, with ``LAB_DATASET=cifar10`` and no ImageNet weights in torch's cache, the lab
  says so in one line and falls back to the shipped network;
- ``data/pretrain.py`` still works: a tiny run (300 images, one epoch) writes weights and a
  card that ``load_pretrained`` accepts.

Every test runs with a temporary ``TORCH_HOME`` and ``LAB_DATA_DIR``.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from labkit import zoo

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "data" / "zoo"


@pytest.fixture(autouse=True)
def isolated(tmp_path, monkeypatch):
    """A temporary TORCH_HOME and LAB_DATA_DIR (the shapes caches linked in when they exist)."""
    data = tmp_path / "data"
    for name in ("shapes", "shapes_target"):
        (data / name).mkdir(parents=True)
        for split in ("train", "test"):
            cached = REPO / "data" / name / f"{split}.npz"
            if cached.exists():
                (data / name / f"{split}.npz").symlink_to(cached)
    monkeypatch.setenv("LAB_DATA_DIR", str(data))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv("LAB_ZOO_DIR", raising=False)
    monkeypatch.delenv("LAB_DATASET", raising=False)
    return tmp_path


def copy_zoo(tmp_path, monkeypatch) -> Path:
    target = tmp_path / "zoo"
    shutil.copytree(SHIPPED, target)
    monkeypatch.setenv("LAB_ZOO_DIR", str(target))
    return target


def test_shipped_weights_match_their_card():
    card = zoo.card("shapes_resnet")
    path = SHIPPED / card["weights_file"]
    size = path.stat().st_size
    assert size < 2 * 2**20, f"{path} is {size} bytes: keep it well under 5 MiB"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == card["sha256"]
    for key in ("architecture", "source_dataset", "recipe", "source_test_accuracy", "preprocessing",
                "training", "builder"):
        assert key in card, f"the card has no {key!r}"
    assert card["source_test_accuracy"] >= 0.85, card["source_test_accuracy"]
    assert card["source_test_set"].endswith("first 10000 images")
    assert card["training"]["epochs"] >= 1 and card["training"]["cpu_seconds"] > 0


def test_load_pretrained_gives_the_cards_network():
    model, card = zoo.load_pretrained("shapes_resnet")
    assert isinstance(model, zoo.ShapesResNet) and not model.training
    assert all(p.requires_grad for p in model.parameters())
    assert model.fc.out_features == 10 and card["num_classes"] == 10
    from labkit.data import load_dataset

    x, y = load_dataset("shapes", "test")
    with torch.no_grad():
        pred = model(zoo.preprocess(x[:1000], card)).argmax(1).numpy()
    acc = (pred == y[:1000]).mean()
    assert acc >= card["source_test_accuracy"] - 0.04, (acc, card["source_test_accuracy"])
    # The card is a copy: changing it changes nothing in the zoo.
    card["sha256"] = "0" * 64
    assert zoo.card("shapes_resnet")["sha256"] != card["sha256"]


def test_loading_uses_weights_only(monkeypatch):
    calls = []
    real_load = torch.load

    def spy(*args, **kwargs):
        calls.append(kwargs.get("weights_only"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", spy)
    zoo.load_pretrained("shapes_resnet")
    assert calls == [True], f"torch.load was called with weights_only={calls}"


def test_missing_weights_say_how_to_rebuild(tmp_path, monkeypatch):
    target = copy_zoo(tmp_path, monkeypatch)
    (target / "shapes_resnet.pt").unlink()
    with pytest.raises(zoo.ZooError, match=r"(?s)missing.*python data/pretrain\.py"):
        zoo.load_pretrained("shapes_resnet")


def test_missing_cards_say_how_to_rebuild(tmp_path, monkeypatch):
    monkeypatch.setenv("LAB_ZOO_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(zoo.ZooError, match=r"python data/pretrain\.py"):
        zoo.load_pretrained("shapes_resnet")


@pytest.mark.parametrize("damage", ["truncate", "flip_a_byte"])
def test_corrupt_weights_fail_their_checksum(tmp_path, monkeypatch, damage):
    target = copy_zoo(tmp_path, monkeypatch)
    path = target / "shapes_resnet.pt"
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(zoo.ZooError, match=r"(?s)corrupt.*sha256.*python data/pretrain\.py"):
        zoo.load_pretrained("shapes_resnet")


class _Exploit:
    """A pickle that would create a file if it were unpickled without restriction."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.touch, (Path(self.path),))


def test_a_malicious_weights_file_never_runs(tmp_path, monkeypatch):
    target = copy_zoo(tmp_path, monkeypatch)
    marker = tmp_path / "pwned"
    path = target / "shapes_resnet.pt"
    torch.save({"conv1.weight": _Exploit(marker)}, path, pickle_protocol=pickle.HIGHEST_PROTOCOL)
    cards = json.loads((target / "cards.json").read_text())
    # A forged card: the checksum of the malicious file.
    cards["shapes_resnet"]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (target / "cards.json").write_text(json.dumps(cards))
    with pytest.raises(zoo.ZooError, match=r"(?s)unreadable.*python data/pretrain\.py"):
        zoo.load_pretrained("shapes_resnet")
    assert not marker.exists(), "the weights file's pickle ran code: load it with weights_only=True"


def test_unknown_model_name():
    with pytest.raises(zoo.ZooError, match="unknown model"):
        zoo.load_pretrained("vgg16")


def test_offline_cifar10_falls_back_with_one_line(monkeypatch, capsys):
    monkeypatch.setenv("LAB_DATASET", "cifar10")
    assert zoo.imagenet_weights_cached() is None
    assert zoo.default_model_name() == "shapes_resnet"
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1, lines
    assert "ResNet-18 ImageNet weights are not in torch's cache" in lines[0]
    assert "shapes_resnet" in lines[0]
    with pytest.raises(zoo.ZooError, match="not in torch's cache"):
        zoo.load_pretrained("resnet18_imagenet")
    # The same path as a lab takes: no name means the default for LAB_DATASET.
    model, card = zoo.load_pretrained()
    assert card["name"] == "shapes_resnet"
    # Other data sets never mention ImageNet.
    monkeypatch.setenv("LAB_DATASET", "shapes")
    assert zoo.default_model_name() == "shapes_resnet"
    assert capsys.readouterr().out.count("\n") <= 1


def test_cifar10_uses_resnet18_when_its_weights_are_cached(isolated, monkeypatch, capsys):
    """With the ImageNet weights in torch's cache (here: a stand-in with ResNet-18's layout)."""
    import torchvision

    monkeypatch.setenv("LAB_DATASET", "cifar10")
    url = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url
    cached = Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)
    cached.parent.mkdir(parents=True)
    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18().state_dict(), cached)
    assert zoo.default_model_name() == "resnet18_imagenet"
    assert capsys.readouterr().out == ""
    model, card = zoo.load_pretrained()
    assert card["name"] == "resnet18_imagenet" and model.fc.in_features == 512
    assert card["preprocessing"]["mean"] == [0.485, 0.456, 0.406]


def test_preprocess_matches_the_card():
    card = zoo.card("shapes_resnet")
    x = torch.randint(0, 256, (2, 3, 5, 4), dtype=torch.uint8)
    before = x.clone()
    out = zoo.preprocess(x, card)
    mean = torch.tensor(card["preprocessing"]["mean"]).view(1, 3, 1, 1)
    std = torch.tensor(card["preprocessing"]["std"]).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (x.float() / 255 - mean) / std)
    assert torch.equal(x, before) and out.dtype == torch.float32
    torch.testing.assert_close(zoo.preprocess(x.numpy(), card), out)


@pytest.mark.slow
def test_pretrain_script_tiny_run(isolated):
    out = isolated / "tiny_zoo"
    result = subprocess.run(
        [sys.executable, str(REPO / "data" / "pretrain.py"), "--n-train", "300", "--n-test", "200",
         "--epochs", "1", "--out", str(out)],
        capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "epoch  1/1" in result.stdout and "done: test accuracy" in result.stdout, result.stdout
    card = json.loads((out / "cards.json").read_text())["shapes_resnet"]
    weights = out / card["weights_file"]
    assert hashlib.sha256(weights.read_bytes()).hexdigest() == card["sha256"]
    assert card["training"]["epochs"] == 1 and card["source_test_set"].endswith("first 200 images")
    assert card["builder"] == zoo.card("shapes_resnet")["builder"], (
        "the tiny run builds the shipped architecture")
    os.environ["LAB_ZOO_DIR"] = str(out)
    try:
        model, loaded = zoo.load_pretrained("shapes_resnet")
    finally:
        del os.environ["LAB_ZOO_DIR"]
    assert loaded["sha256"] == card["sha256"]
    assert isinstance(model, zoo.ShapesResNet)
