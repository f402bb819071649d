"""Hidden checks of Lab 05: transfer learning (transfert d'apprentissage).

The models handed to the student's functions are built INSIDE the student's process from a
plain-data spec and a state_dict (``autograder.sandbox.modules.lend``): small
``labkit.zoo.ShapesResNet``s (with widths unlike the shipped network's, and batch-norm
running statistics and weights set away from their defaults) and torchvision's ResNet-18
(built without weights; only its layout and sizes are read). The check builds its own copy
from the same spec and state, and computes the expected answer on it with torch (or the
reference). What the student's code did to its copy is read back as plain data:
``describe`` (requires_grad flags, training modes, shapes, without weights) and
``state_dict()`` (small models only).
"""

import numpy as np
import pytest
import torch

from autograder.sandbox.modules import build_module, describe, lend, module_spec
from labkit.checks import CheckFailure, assert_close, assert_raises, assert_shape

BN_TYPES = ("BatchNorm1d", "BatchNorm2d", "BatchNorm3d")


def small_resnet_spec(widths=(3, 5, 7), blocks=1, num_classes=10):
    return module_spec("labkit.zoo.ShapesResNet", widths=list(widths), blocks=blocks,
                       num_classes=num_classes)


def randomized(spec, seed, head_value=None):
    """The check's copy of ``spec``, every parameter and BN statistic away from its default."""
    torch.manual_seed(seed)
    model = build_module(spec)
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(torch.randn_like(p) * 0.3 + (1.0 if name.endswith("bn1.weight") else 0.0))
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.running_mean.copy_(torch.randn_like(m.running_mean) * 0.2)
                m.running_var.copy_(torch.rand_like(m.running_var) + 0.5)
                m.num_batches_tracked.fill_(7)
        if head_value is not None:
            model.fc.weight.fill_(head_value)
            model.fc.bias.fill_(head_value)
    return model


def lend_copy(student, spec, model, train=None):
    return lend(student, spec, model.state_dict(), train=train)


def grad_flags(student, handle):
    return {p["name"]: p["requires_grad"] for p in describe(student, handle)["parameters"]}


def modes(student, handle):
    return {m["name"]: (m["type"], m["training"]) for m in describe(student, handle)["modules"]}


def block_of(name):
    return name.split(".")[0]


# --- count_parameters ----------------------------------------------------------------------


@pytest.mark.points(2)
def test_count_parameters_all_and_trainable(student):
    """count_parameters on a model with some frozen layers: all of them, and trainable only."""
    spec = small_resnet_spec((4, 6, 9), num_classes=3)
    ours = build_module(spec)
    theirs = lend(student, spec)
    for block in ("conv1", "layer2"):
        getattr(ours, block).requires_grad_(False)
        getattr(theirs, block).requires_grad_(False)
    total = sum(p.numel() for p in ours.parameters())
    trainable = sum(p.numel() for p in ours.parameters() if p.requires_grad)
    got = student.count_parameters(theirs)
    assert got == total, (f"count_parameters(model) = {got}, expected {total} (sum of p.numel() "
                          f"over model.parameters(), frozen ones included)")
    got = student.count_parameters(theirs, trainable_only=True)
    assert got == trainable, (f"count_parameters(model, trainable_only=True) = {got}, expected "
                              f"{trainable}: count only the parameters with requires_grad=True")
    got = student.count_parameters(theirs, False)
    assert got == total, f"count_parameters(model, False) = {got}, expected {total}"


@pytest.mark.points(1)
def test_count_parameters_resnet18(student):
    """count_parameters on torchvision's ResNet-18 (a new head, all trainable): no buffers."""
    spec = module_spec("torchvision.models.resnet18", num_classes=6)
    expected = sum(p.numel() for p in build_module(spec).parameters())
    theirs = lend(student, spec)
    got = student.count_parameters(theirs)
    assert got == expected, (f"count_parameters(resnet18(num_classes=6)) = {got}, expected "
                             f"{expected} (parameters only: batch-norm running statistics are "
                             f"buffers, not parameters)")
    got = student.count_parameters(theirs, trainable_only=True)
    assert got == expected, (f"count_parameters(resnet18, trainable_only=True) = {got}, "
                             f"expected {expected}")


@pytest.mark.points(1)
def test_count_parameters_shared_layer(student):
    """A layer used twice counts once (model.parameters() lists a shared parameter once)."""
    spec = module_spec("torch.nn.Sequential", module_spec("torch.nn.Linear", 5, 5),
                       module_spec("torch.nn.ReLU"))
    theirs = lend(student, spec)
    theirs.append(theirs[0])  # the same Linear object, a second time
    got = student.count_parameters(theirs)
    assert got == 30, (f"count_parameters of Sequential(lin, ReLU, lin) with the same Linear(5, 5) "
                       f"twice = {got}, expected 30: a shared parameter counts once")


# --- replace_head ---------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("num_classes", [4, 10])
def test_replace_head_shape_and_fresh_init(student, seed, num_classes):
    """The new head: Linear(in_features, num_classes), freshly initialized (old weights gone)."""
    spec = small_resnet_spec((3, 5, 7), num_classes=10)
    ours = randomized(spec, seed, head_value=3.0)
    theirs = lend_copy(student, spec, ours)
    student.replace_head(theirs, num_classes)
    info = {p["name"]: p for p in describe(student, theirs)["parameters"]}
    types = modes(student, theirs)
    if types.get("fc", ("?",))[0] != "Linear":
        raise CheckFailure(f"after replace_head, model.fc is a {types.get('fc', ('missing',))[0]}, "
                           f"expected a torch.nn.Linear")
    assert info["fc.weight"]["shape"] == [num_classes, 7], (
        f"the new head's weight has shape {info['fc.weight']['shape']}, expected "
        f"[{num_classes}, 7]: Linear(model.fc.in_features, num_classes) (in_features is 7 here)")
    assert "fc.bias" in info and info["fc.bias"]["shape"] == [num_classes], (
        "the new head must have a bias of shape (num_classes,)")
    assert info["fc.weight"]["requires_grad"] and info["fc.bias"]["requires_grad"], (
        "the new head must be trainable (requires_grad=True)")
    state = theirs.state_dict()
    w, b = state["fc.weight"], state["fc.bias"]
    bound = 1 / np.sqrt(7)
    if torch.any(w == 3.0) or torch.any(b == 3.0):
        raise CheckFailure("the new head still holds weights of the old one: build a NEW "
                           "torch.nn.Linear (nothing of the old head is kept)")
    if w.abs().max() > bound + 1e-6 or b.abs().max() > bound + 1e-6:
        raise CheckFailure(f"the new head's values reach {max(w.abs().max(), b.abs().max()):.3f}, "
                           f"beyond torch's default initialization of a Linear with 7 inputs "
                           f"(uniform within +-1/sqrt(7) = {bound:.3f})")
    if w.std() < 0.25 * bound:
        raise CheckFailure(f"the new head's weights have a standard deviation of {w.std():.4f}, "
                           f"far below that of torch's default random initialization (about "
                           f"{bound / np.sqrt(3):.3f} here): use a fresh torch.nn.Linear")
    out = theirs(torch.randn(2, 3, 12, 10))
    assert_shape("model(x) after replace_head", out, (2, num_classes))


@pytest.mark.points(2)
def test_replace_head_rest_untouched(student, seed):
    """Every other parameter keeps its values and requires_grad flag; buffers too."""
    spec = small_resnet_spec((4, 5, 6), num_classes=9)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours)
    theirs.layer1.requires_grad_(False)
    flags_before = grad_flags(student, theirs)
    returned = student.replace_head(theirs, 2)
    if returned is None:
        raise CheckFailure("replace_head must return the model (modified in place)")
    state = theirs.state_dict()
    expected = ours.state_dict()
    for key, value in expected.items():
        if not key.startswith("fc."):
            assert key in state, f"replace_head removed {key} from the model"
            assert_close(f"{key} after replace_head (only the head may change)", state[key], value)
    flags = grad_flags(student, theirs)
    for name, flag in flags_before.items():
        if not name.startswith("fc."):
            assert flags.get(name) == flag, (f"replace_head changed requires_grad of {name} "
                                              f"(from {flag}): leave the backbone as it was")
    assert_shape("the returned model's output", returned(torch.randn(3, 3, 8, 8)), (3, 2))


@pytest.mark.points(1)
def test_replace_head_resnet18_and_dtype(student):
    """ResNet-18's head reads 512 features; a float64 model gets a float64 head."""
    theirs = lend(student, module_spec("torchvision.models.resnet18", num_classes=1000))
    student.replace_head(theirs, 3)
    info = {p["name"]: p for p in describe(student, theirs)["parameters"]}
    assert info["fc.weight"]["shape"] == [3, 512], (
        f"replace_head(resnet18, 3): head weight of shape {info['fc.weight']['shape']}, "
        f"expected [3, 512]")
    small = lend(student, small_resnet_spec((2, 3, 5), num_classes=4))
    small.double()
    student.replace_head(small, 6)
    info = {p["name"]: p for p in describe(student, small)["parameters"]}
    assert info["fc.weight"]["dtype"] == "torch.float64", (
        f"replace_head on a float64 model gave a head of dtype {info['fc.weight']['dtype']}: "
        f"make it on the dtype (and device) of the old head")
    assert info["fc.weight"]["shape"] == [6, 5], (
        f"head of shape {info['fc.weight']['shape']}, expected [6, 5]")


# --- freeze ---------------------------------------------------------------------------------


def check_flags(student, theirs, first_trainable, blocks, what):
    flags = grad_flags(student, theirs)
    first = blocks.index(first_trainable)
    for name, flag in flags.items():
        want = blocks.index(block_of(name)) >= first
        if flag != want:
            state = "trainable" if want else "frozen"
            raise CheckFailure(f"{what}: {name} has requires_grad={flag}, expected {want} "
                               f"(it should be {state}: the blocks before {first_trainable!r} are "
                               f"frozen, {first_trainable!r} and the blocks after it, the head "
                               f"fc included, trainable)")


SMALL_BLOCKS = ["conv1", "bn1", "relu", "layer1", "layer2", "layer3", "avgpool", "fc"]


@pytest.mark.points(2)
def test_freeze_whole_backbone(student, seed):
    """freeze(model): every backbone parameter frozen, the head trainable (even if it was not)."""
    spec = small_resnet_spec((3, 4, 6), blocks=2, num_classes=5)
    theirs = lend_copy(student, spec, randomized(spec, seed), train=True)
    theirs.fc.requires_grad_(False)
    student.freeze(theirs)
    check_flags(student, theirs, "fc", SMALL_BLOCKS, "freeze(model)")


@pytest.mark.points(2)
@pytest.mark.parametrize("train_from", ["layer2", "layer3"])
def test_freeze_train_from(student, seed, train_from):
    """freeze(model, train_from): the blocks before it frozen, it and the rest trainable."""
    spec = small_resnet_spec((3, 5, 4), num_classes=6)
    theirs = lend_copy(student, spec, randomized(spec, seed), train=True)
    student.freeze(theirs, train_from)
    check_flags(student, theirs, train_from, SMALL_BLOCKS, f"freeze(model, {train_from!r})")


@pytest.mark.points(1)
def test_freeze_resnet18(student):
    """freeze(resnet18, "layer4"): conv1 ... layer3 frozen, layer4 and fc trainable."""
    theirs = lend(student, module_spec("torchvision.models.resnet18", num_classes=10), train=True)
    student.freeze(theirs, train_from="layer4")
    blocks = ["conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4",
              "avgpool", "fc"]
    check_flags(student, theirs, "layer4", blocks, "freeze(resnet18, 'layer4')")
    info = modes(student, theirs)
    for name, (kind, training) in info.items():
        if kind in BN_TYPES and block_of(name) != "layer4" and training:
            raise CheckFailure(f"freeze(resnet18, 'layer4'): the frozen batch-norm layer {name} "
                               f"is in train mode; put frozen batch-norm layers in eval mode")


@pytest.mark.points(1)
def test_freeze_default_with_parameters_before_the_head(student):
    """freeze(model) on a ShuffleNet V2, whose block before fc (conv5: conv, BN, ReLU) has
    parameters: only fc trains, conv5 is frozen like the rest of the backbone."""
    theirs = lend(student, module_spec("torchvision.models.shufflenet_v2_x0_5", num_classes=4),
                  train=True)
    student.freeze(theirs)
    blocks = ["conv1", "maxpool", "stage2", "stage3", "stage4", "conv5", "fc"]
    check_flags(student, theirs, "fc", blocks, "freeze(shufflenet_v2_x0_5) (train_from=None)")
    theirs.train()
    for name, (kind, training) in modes(student, theirs).items():
        if kind in BN_TYPES and training:
            raise CheckFailure(f"freeze(shufflenet_v2_x0_5) then model.train(): the frozen "
                               f"batch-norm layer {name} is in train mode; only the head trains.")


@pytest.mark.points(3)
def test_freeze_bn_modes_through_train_and_eval(student, seed):
    """Frozen BN layers stay in eval mode through model.train(); trainable ones follow it."""
    spec = small_resnet_spec((4, 3, 5), num_classes=2)
    theirs = lend_copy(student, spec, randomized(spec, seed), train=True)
    student.freeze(theirs, "layer3")
    after = modes(student, theirs)
    for name, (kind, training) in after.items():
        if block_of(name) == "layer3" and kind in BN_TYPES and not training:
            raise CheckFailure(f"freeze(model, 'layer3') on a model in train mode put the "
                               f"trainable batch-norm layer {name} in eval mode: leave the "
                               f"layers that train in the model's mode")
        if name == "" and not training:
            raise CheckFailure("freeze put the whole model in eval mode: only the frozen "
                               "batch-norm layers go to eval mode")
    for step, call in (("model.eval()", theirs.eval), ("model.train()", theirs.train),
                       ("model.train(True)", lambda: theirs.train(True))):
        call()
        info = modes(student, theirs)
        want_train = step != "model.eval()"
        for name, (kind, training) in info.items():
            if kind not in BN_TYPES:
                continue
            if block_of(name) != "layer3" and training:
                raise CheckFailure(
                    f"after freeze(model, 'layer3') then {step}, the frozen batch-norm layer "
                    f"{name} is in train mode: frozen batch-norm layers must stay in eval mode "
                    f"(their running statistics must not move), even when model.train() is "
                    f"called later, as a training loop does")
            if block_of(name) == "layer3" and training != want_train:
                raise CheckFailure(f"after freeze(model, 'layer3') then {step}, the trainable "
                                   f"batch-norm layer {name} has training={training}: trainable "
                                   f"layers follow model.train() / model.eval()")


@pytest.mark.points(3)
def test_freeze_running_statistics_do_not_move(student, seed):
    """A training step after freeze: frozen BN statistics unchanged, outputs as in eval mode."""
    spec = small_resnet_spec((3, 6, 5), num_classes=4)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours, train=False)
    student.freeze(theirs, "layer3")
    theirs.train()
    x = torch.randn(6, 3, 14, 18)
    out = theirs(x.clone())
    out.square().mean().backward()
    state = theirs.state_dict()
    before = ours.state_dict()
    for key, value in before.items():
        if "running_" in key or "num_batches" in key:
            frozen = block_of(key) != "layer3"
            moved = not torch.equal(state[key], value)
            if frozen and moved:
                raise CheckFailure(f"{key} moved during a training step after freeze(model, "
                                   f"'layer3'): frozen batch-norm layers must stay in eval mode")
            if not frozen and not moved and "num_batches" in key:
                raise CheckFailure(f"{key} did not move during a training step: the trainable "
                                   f"batch-norm layers of layer3 must follow model.train()")
    # The expected output: the frozen blocks in eval mode, layer3 in train mode.
    ours.train()
    for name, m in ours.named_modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and block_of(name) != "layer3":
            m.eval()
    with torch.no_grad():
        expected = ours(x.clone())
    assert_close("the output of model(x) in train mode after freeze(model, 'layer3') (frozen "
                 "batch-norm layers normalize with their running statistics)", out.detach(),
                 expected, rtol=1e-4, atol=1e-5)


@pytest.mark.points(2)
def test_freeze_again_starts_over(student, seed):
    """freeze(model) then freeze(model, "layer2"): layer2 and layer3 unfrozen again."""
    spec = small_resnet_spec((2, 4, 3), num_classes=3)
    theirs = lend_copy(student, spec, randomized(spec, seed), train=True)
    student.freeze(theirs)
    student.freeze(theirs, "layer2")
    check_flags(student, theirs, "layer2", SMALL_BLOCKS,
                "freeze(model) then freeze(model, 'layer2')")
    theirs.train()
    for name, (kind, training) in modes(student, theirs).items():
        if kind in BN_TYPES:
            want = block_of(name) in ("layer2", "layer3")
            if training != want:
                raise CheckFailure(
                    f"after freeze(model), freeze(model, 'layer2') and model.train(), the "
                    f"batch-norm layer {name} has training={training}, expected {want}: a second "
                    f"freeze starts over (layers it unfreezes follow model.train() again)")


@pytest.mark.points(1)
def test_freeze_unknown_block(student):
    """freeze(model, "layer9") raises ValueError."""
    theirs = lend(student, small_resnet_spec((2, 2, 2)))
    assert_raises('freeze(model, train_from="layer9")', ValueError, student.freeze, theirs,
                  "layer9")


# --- extract_features -----------------------------------------------------------------------


def our_features(model, x):
    model.eval()
    with torch.no_grad():
        h = model.relu(model.bn1(model.conv1(x)))
        h = model.layer3(model.layer2(model.layer1(h)))
        return torch.flatten(model.avgpool(h), 1).numpy()


@pytest.mark.points(3)
def test_extract_features_eval_mode(student, seed, rng):
    """Features of a model handed over in train mode: as in eval mode; statistics unchanged."""
    spec = small_resnet_spec((3, 5, 7), num_classes=10)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours, train=True)
    x = rng.standard_normal((5, 3, 20, 24)).astype(np.float32)
    x_copy = x.copy()
    feats = student.extract_features(theirs, x, batch_size=2)
    expected = our_features(ours, torch.from_numpy(x.copy()))
    if not isinstance(feats, np.ndarray):
        raise CheckFailure(f"extract_features must return a numpy array, got "
                           f"{type(feats).__name__}")
    assert_shape("extract_features(model, x of 5 images, 2)", feats, (5, 7))
    assert feats.dtype == np.float32, f"extract_features must return float32, got {feats.dtype}"
    assert_close("extract_features(model, x) (the input of model.fc, the model in eval mode: "
                 "batch norm with its running statistics)", feats, expected, rtol=1e-4, atol=1e-5)
    assert_close("x after extract_features (it must not be modified)", x, x_copy)
    state = theirs.state_dict()
    for key, value in ours.state_dict().items():
        if "running_" in key or "num_batches" in key:
            assert torch.equal(state[key], value), (
                f"extract_features changed {key}: run the model in eval mode (model.eval())")
    for name, (_, training) in modes(student, theirs).items():
        assert not training, (f"after extract_features, module {name or 'model'} is in train "
                              f"mode: leave the model in eval mode")
    assert_close("model.fc's weight after extract_features (leave the head as it was)",
                 state["fc.weight"], ours.state_dict()["fc.weight"])


@pytest.mark.points(3)
def test_extract_features_no_grad_and_batches(student, seed, rng):
    """Under torch.no_grad(), in batches of at most batch_size, model.fc unchanged afterwards."""
    spec = small_resnet_spec((2, 3, 4), num_classes=5)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours)
    head_spec = module_spec("CallRecorder", module_spec("torch.nn.Linear", 4, 5))
    torch.manual_seed(seed + 1)
    head = build_module(head_spec)
    theirs.fc = lend(student, head_spec, head.state_dict())
    x = torch.from_numpy(rng.standard_normal((7, 3, 9, 11)).astype(np.float32))
    feats = student.extract_features(theirs, x.clone(), batch_size=3)
    assert_shape("extract_features(model, x of 7 images, batch_size=3)", feats, (7, 4))
    calls = [tuple(c) for c in theirs.fc.calls]
    if any(grad for _, grad in calls):
        raise CheckFailure("extract_features ran the model with gradients on: wrap the forward "
                           "passes in `with torch.no_grad():`")
    sizes = [n for n, _ in calls]
    if sizes and (sum(sizes) != 7 or max(sizes) > 3):
        raise CheckFailure(f"extract_features(model, x of 7 images, batch_size=3) ran batches of "
                           f"{sizes} images; expected at most 3 each, 7 in all")
    info = modes(student, theirs)
    assert info.get("fc", ("?",))[0] == "CallRecorder", (
        f"after extract_features, model.fc is a {info.get('fc', ('missing',))[0]}: put the "
        f"original head back")
    assert_close("extract_features(model, x, batch_size=3)", feats,
                 our_features(ours, x.clone()), rtol=1e-4, atol=1e-5)


@pytest.mark.points(2)
def test_extract_features_batch_size_invariance(student, seed, rng):
    """batch_size=1 and batch_size=4 give the same features; a torch tensor input works."""
    spec = small_resnet_spec((3, 2, 6), blocks=2, num_classes=3)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours, train=True)
    x = torch.from_numpy(rng.standard_normal((4, 3, 16, 8)).astype(np.float32))
    one = student.extract_features(theirs, x.clone(), batch_size=1)
    four = student.extract_features(theirs, x.clone(), batch_size=4)
    assert_close("extract_features with batch_size=1 vs batch_size=4 (in eval mode an image's "
                 "features do not depend on its batch)", one, four, rtol=1e-4, atol=1e-5)
    assert_close("extract_features(model, x, batch_size=4)", four, our_features(ours, x.clone()),
                 rtol=1e-4, atol=1e-5)


@pytest.mark.points(1)
def test_extract_features_float64_and_empty(student, seed, rng):
    """float64 numpy images are cast to float32 for the model; 0 images give (0, D) float32."""
    spec = small_resnet_spec((2, 3, 4), num_classes=5)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours)
    x = rng.standard_normal((3, 3, 10, 9))  # float64
    feats = student.extract_features(theirs, x.copy(), batch_size=2)
    assert_shape("extract_features(model, float64 x of 3 images)", feats, (3, 4))
    assert feats.dtype == np.float32, (f"extract_features of float64 images must return "
                                       f"float32 features, got {feats.dtype}")
    assert_close("extract_features(model, float64 x) (cast x to float32 first)", feats,
                 our_features(ours, torch.from_numpy(x.astype(np.float32))), rtol=1e-4,
                 atol=1e-5)
    empty = student.extract_features(theirs, np.zeros((0, 3, 10, 9), dtype=np.float32))
    if not isinstance(empty, np.ndarray):
        raise CheckFailure(f"extract_features of 0 images must return a numpy array, got "
                           f"{type(empty).__name__}")
    assert_shape("extract_features(model, x of 0 images) (D = model.fc.in_features)", empty,
                 (0, 4))
    assert empty.dtype == np.float32, (f"extract_features of 0 images must return float32, "
                                       f"got {empty.dtype}")


# --- parameter_groups -----------------------------------------------------------------------


def check_groups(student, theirs, ours, groups, backbone_lr, head_lr, what):
    """Every trainable parameter of ours in exactly one group, with the right lr and values."""
    if not isinstance(groups, (list, tuple)) or not all(isinstance(g, dict) for g in groups):
        raise CheckFailure(f"{what} must return a list of dicts, got {type(groups).__name__}")
    params = dict(ours.named_parameters())
    trainable = [n for n, p in params.items() if p.requires_grad]
    want_backbone = [n for n in trainable if not n.startswith("fc.")]
    want_head = [n for n in trainable if n.startswith("fc.")]
    want = [(want_backbone, backbone_lr, "backbone")] if want_backbone else []
    want.append((want_head, head_lr, "head"))
    seen = {}
    for i, g in enumerate(groups):
        for key in ("names", "params", "lr"):
            if key not in g:
                raise CheckFailure(f"{what}: group {i} has no {key!r} key (each group is "
                                   f"{{'names': [...], 'params': [...], 'lr': ...}})")
        names, values = list(g["names"]), list(g["params"])
        assert len(names) == len(values), (f"{what}: group {i} has {len(names)} names but "
                                           f"{len(values)} params; they go in the same order")
        for name, value in zip(names, values, strict=True):
            if name not in params:
                raise CheckFailure(f"{what}: group {i} names {name!r}, which is not a parameter "
                                   f"name of model.named_parameters()")
            if name in seen:
                raise CheckFailure(f"{what}: {name} is in group {seen[name]} and in group {i}: "
                                   f"every trainable parameter goes in exactly one group")
            seen[name] = i
            if not params[name].requires_grad:
                raise CheckFailure(f"{what}: {name} is frozen (requires_grad=False) but is in "
                                   f"group {i}: frozen parameters go in no group")
            value = torch.as_tensor(value)
            if value.shape != params[name].shape or not torch.equal(value, params[name].detach()):
                raise CheckFailure(f"{what}: in group {i}, the parameter listed with the name "
                                   f"{name!r} is not that parameter (keep 'names' and 'params' in "
                                   f"the same order)")
    missing = [n for n in trainable if n not in seen]
    if missing:
        raise CheckFailure(f"{what}: the trainable parameters {missing[:4]} are in no group "
                           f"({len(missing)} missing): every trainable parameter goes in one")
    if len(groups) != len(want):
        raise CheckFailure(f"{what} returned {len(groups)} groups, expected {len(want)} "
                           f"({', '.join(w[2] for w in want)}; a group with no trainable "
                           f"parameter is left out)")
    for i, (g, (names, lr, label)) in enumerate(zip(groups, want, strict=True)):
        if list(g["names"]) != names:
            raise CheckFailure(f"{what}: group {i} should be the {label}'s, with {names[:3]}... "
                               f"({len(names)} names, in model.named_parameters() order); got "
                               f"{list(g['names'])[:3]}...")
        if not np.isclose(float(g["lr"]), lr, rtol=1e-12, atol=0):
            raise CheckFailure(f"{what}: the {label}'s group has lr={g['lr']}, expected {lr} "
                               f"(backbone_lr for the pretrained layers, head_lr for model.fc)")


@pytest.mark.points(3)
def test_parameter_groups_all_trainable(student, seed):
    """Two groups: the backbone with backbone_lr, model.fc with head_lr."""
    spec = small_resnet_spec((3, 4, 5), num_classes=7)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours)
    groups = student.parameter_groups(theirs, 0.003, 0.07)
    check_groups(student, theirs, ours, groups, 0.003, 0.07, "parameter_groups(model, 0.003, 0.07)")


@pytest.mark.points(3)
def test_parameter_groups_skip_frozen(student, seed):
    """Frozen parameters (conv1, bn1, layer1, one conv of layer2) are in no group."""
    spec = small_resnet_spec((2, 3, 4), blocks=2, num_classes=3)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours)
    for block in ("conv1", "bn1", "layer1"):
        getattr(ours, block).requires_grad_(False)
        getattr(theirs, block).requires_grad_(False)
    ours.layer2[1].conv2.requires_grad_(False)
    theirs.layer2[1].conv2.requires_grad_(False)
    groups = student.parameter_groups(theirs, backbone_lr=1e-4, head_lr=5e-3)
    check_groups(student, theirs, ours, groups, 1e-4, 5e-3,
                 "parameter_groups(model with frozen layers, backbone_lr=1e-4, head_lr=5e-3)")


@pytest.mark.points(2)
def test_parameter_groups_frozen_backbone(student, seed):
    """A fully frozen backbone: only the head's group."""
    spec = small_resnet_spec((3, 3, 3), num_classes=2)
    ours = randomized(spec, seed)
    theirs = lend_copy(student, spec, ours)
    for name in ("conv1", "bn1", "layer1", "layer2", "layer3"):
        getattr(ours, name).requires_grad_(False)
        getattr(theirs, name).requires_grad_(False)
    groups = student.parameter_groups(theirs, 0.5, 0.25)
    check_groups(student, theirs, ours, groups, 0.5, 0.25,
                 "parameter_groups(model with a frozen backbone, 0.5, 0.25)")


# --- train_linear_classifier ----------------------------------------------------------------


def blobs(rng, n, d, k, spread=4.0):
    centres = rng.standard_normal((k, d)) * spread
    y = np.arange(n) % k
    return centres[y] + rng.standard_normal((n, d)), y


@pytest.mark.points(3)
def test_train_linear_classifier_recipe(student, reference, rng):
    """The documented recipe, every argument away from its default; absent classes; float64."""
    x, y = blobs(rng, 30, 6, 4)
    y[y == 3] = 2  # class 3 absent, and num_classes=5: class 4 never seen either
    x_copy, y_copy = x.copy(), y.copy()
    clf = student.train_linear_classifier(x, y, 5, epochs=25, lr=0.05, weight_decay=0.01, seed=3)
    ref = reference.train_linear_classifier(x.copy(), y.copy(), 5, epochs=25, lr=0.05,
                                            weight_decay=0.01, seed=3)
    state = clf.state_dict()
    assert_shape("the classifier's weight", state["weight"], (5, 6))
    assert_close("the classifier's weight (torch.manual_seed(seed), Linear(D, num_classes), "
                 "Adam(lr, weight_decay), epochs full-batch steps on the mean cross-entropy)",
                 state["weight"], ref.weight.detach(), rtol=1e-3, atol=1e-4)
    assert_close("the classifier's bias", state["bias"], ref.bias.detach(), rtol=1e-3, atol=1e-4)
    assert not clf.training, "return the classifier in eval mode (clf.eval())"
    assert_close("features after train_linear_classifier (they must not be modified)", x, x_copy)
    assert_close("labels after train_linear_classifier (they must not be modified)", y, y_copy)


@pytest.mark.points(2)
@pytest.mark.timeout(30)  # three trainings of 100 epochs: about 1 s idle, 10 s at load 14
def test_train_linear_classifier_learns_and_seeds(student, rng):
    """Separable classes with the defaults: 100% training accuracy; the seed fixes the result."""
    x, y = blobs(rng, 60, 9, 3, spread=6.0)
    x = torch.from_numpy(x.astype(np.float32))
    clf = student.train_linear_classifier(x.clone(), y.copy(), 3)
    pred = clf(x.clone()).argmax(1).numpy()
    acc = (pred == y).mean()
    assert acc == 1.0, (f"train_linear_classifier on well separated classes reached {acc:.0%} "
                        f"training accuracy with the defaults (epochs=100, lr=0.01); expected 100%")
    again = student.train_linear_classifier(x.clone(), y.copy(), 3).state_dict()["weight"]
    assert_close("two calls with the same seed (torch.manual_seed(seed) first)", again,
                 clf.state_dict()["weight"])
    other = student.train_linear_classifier(x.clone(), y.copy(), 3, seed=11).state_dict()["weight"]
    if torch.equal(other, again):
        raise CheckFailure("train_linear_classifier gives the same weights for seeds 0 and 11: "
                           "seed the initialization with torch.manual_seed(seed)")


@pytest.mark.points(2)
@pytest.mark.timeout(30)  # two trainings of 100 epochs
def test_train_linear_classifier_defaults_and_int32_labels(student, reference, rng):
    """The defaults (epochs=100, lr=0.01, weight_decay=1e-4, seed=0) as documented, on int32
    labels (cast to int64 for cross_entropy)."""
    x, y = blobs(rng, 24, 5, 3)
    y = y.astype(np.int32)
    clf = student.train_linear_classifier(x.copy(), y.copy(), 3)
    ref = reference.train_linear_classifier(x.copy(), y.copy(), 3)
    state = clf.state_dict()
    assert_close("the classifier's weight with every default (epochs=100, lr=0.01, "
                 "weight_decay=1e-4, seed=0)", state["weight"], ref.weight.detach(),
                 rtol=1e-5, atol=1e-6)
    assert_close("the classifier's bias with every default", state["bias"],
                 ref.bias.detach(), rtol=1e-5, atol=1e-6)
