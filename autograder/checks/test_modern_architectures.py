"""Hidden checks of Lab 08: residual and efficient architectures.

The oracles, strongest first:
- torchvision's own modules (``resnet50``, ``resnext50_32x4d``, ``densenet121``,
  ``ResNet``, ``DenseNet``, and its blocks ``BasicBlock``, ``Bottleneck``,
  ``_DenseLayer``, ``_DenseBlock``, ``_Transition``), built HERE with seeded
  weights and randomized batch norm statistics; their state_dict is loaded into
  the student's module (``load_state``: strict, both key lists empty) and both
  are compared on the same input, in eval mode (and in train mode for blocks),
  with the gradient of the input for the blocks;
- formulas (parameter counts, output sizes, the lecture's MobileNet table) and
  computations with ``torch.nn.functional`` on the student's own weights;
- the reference, built here from the same arguments, for the lab's own options
  (``small_input``, ``widths``, the width multiplier).

The student's modules stay in the student's process: checks read their
structure with ``describe`` (shapes, no weights), load states with
``load_state`` and call them; only small blocks ever send their state back.
"""

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import densenet as tv_densenet
from torchvision.models import resnet as tv_resnet

from autograder.sandbox.modules import describe, load_state
from labkit.checks import CheckFailure, assert_close, assert_shape


def tensor(rng, *shape, scale=1.0):
    return torch.tensor(rng.standard_normal(shape) * scale, dtype=torch.float32)


def randomize_bn(module, seed, spread=0.5):
    """Give every BatchNorm of ``module`` random affine parameters and running statistics,
    so that swapping two of them, or skipping one, changes the output."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(1 - spread, 1 + spread, generator=gen)
                m.bias.normal_(0.0, spread / 2, generator=gen)
                m.running_mean.normal_(0.0, spread / 2, generator=gen)
                m.running_var.uniform_(1 - spread, 1 + spread, generator=gen)
    return module


def count(desc):
    return sum(math.prod(p["shape"]) for p in desc["parameters"])


def param_shapes(desc):
    """name -> shape of every parameter of a described module."""
    return {p["name"]: tuple(p["shape"]) for p in desc["parameters"]}


def check_structure(what, desc, oracle, expected_count=None):
    """The student's parameters (names and shapes, from describe) against the oracle's."""
    got = param_shapes(desc)
    want = {name: tuple(p.shape) for name, p in oracle.named_parameters()}
    n_got = count(desc)
    n_want = sum(math.prod(s) for s in want.values()) if expected_count is None else expected_count
    missing = [n for n in want if n not in got]
    extra = [n for n in got if n not in want]
    wrong = [f"{n}: {got[n]} instead of {want[n]}" for n in want if n in got and got[n] != want[n]]
    if n_got != n_want or missing or extra or wrong:
        parts = [f"{what} has {n_got:,} parameters, expected {n_want:,}."]
        if wrong:
            parts.append(f"Wrong shapes ({len(wrong)}): {'; '.join(wrong[:4])}.")
        if missing:
            parts.append(f"Missing parameters ({len(missing)}), e.g. {missing[:4]}.")
        if extra:
            parts.append(f"Unexpected parameters ({len(extra)}), e.g. {extra[:4]}.")
        parts.append("The attribute names and shapes are fixed by the docstring (torchvision's).")
        raise CheckFailure(" ".join(parts))


def load_strict(what, student, handle, state):
    missing, unexpected = load_state(student, handle, state)
    if missing or unexpected:
        raise CheckFailure(f"loading the oracle's state_dict into {what} (strict): missing keys "
                           f"{missing[:5]}, unexpected keys {unexpected[:5]}. Use the attribute "
                           f"names of the docstring.")


def as_tensor(name, value):
    if not isinstance(value, torch.Tensor):
        raise CheckFailure(f"{name} must return a torch tensor, got {type(value).__name__}.")
    return value


def close(name, got, want, rtol=1e-4):
    got = as_tensor(name, got)
    assert_shape(name, got, tuple(want.shape))
    atol = 1e-4 * float(want.detach().abs().max()) + 1e-6
    assert_close(name, got.detach(), want.detach(), rtol=rtol, atol=atol)


def compare_block(what, student, handle, oracle, x, train_too=True):
    """Load the oracle's state into the student's block and compare the outputs (eval and
    train mode), the input's gradient, a repeated call, and that x is not modified."""
    load_strict(what, student, handle, oracle.state_dict())
    for train in ((False, True) if train_too else (False,)):
        mode = "train" if train else "eval"
        handle.train(train)
        oracle.train(train)
        x_theirs = x.clone().requires_grad_(True)
        x_ours = x.clone().requires_grad_(True)
        out = as_tensor(f"{what}(x)", handle(x_theirs))
        expected = oracle(x_ours)
        close(f"{what}(x) in {mode} mode, x of shape {tuple(x.shape)}, vs torchvision's block "
              f"with the same weights", out, expected)
        if torch.is_tensor(x_theirs) and not torch.equal(x_theirs.detach(), x):
            raise CheckFailure(f"{what}(x) modified its input x: an in-place operation on x "
                               f"(x += ..., ReLU(inplace=True) on x) destroys the shortcut.")
        weights = torch.linspace(-1.0, 1.0, expected.numel()).reshape(expected.shape)
        (out * weights).sum().backward()
        (expected * weights).sum().backward()
        if x_theirs.grad is None:
            raise CheckFailure(f"no gradient reached x through {what}: the output must be "
                               f"computed from x with torch operations.")
        close(f"the gradient of x through {what} in {mode} mode", x_theirs.grad, x_ours.grad)
    handle.eval()
    oracle.eval()
    close(f"a second call of {what}(x) in eval mode", handle(x.clone()), oracle(x.clone()))


def tv_basic_block(in_planes, planes, stride):
    down = None
    if stride != 1 or in_planes != planes:
        down = nn.Sequential(tv_resnet.conv1x1(in_planes, planes, stride), nn.BatchNorm2d(planes))
    return tv_resnet.BasicBlock(in_planes, planes, stride, down)


def tv_bottleneck(in_planes, planes, stride, groups, base_width):
    down = None
    if stride != 1 or in_planes != planes * 4:
        down = nn.Sequential(tv_resnet.conv1x1(in_planes, planes * 4, stride),
                             nn.BatchNorm2d(planes * 4))
    return tv_resnet.Bottleneck(in_planes, planes, stride, down, groups, base_width)


# --- ResNet blocks ---------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("in_planes, planes, stride", [(5, 5, 1), (4, 6, 1), (3, 7, 2)])
def test_basic_block_matches_torchvision(student, rng, seed, in_planes, planes, stride):
    """BasicBlock against torchvision's BasicBlock (identity and projection shortcuts)."""
    torch.manual_seed(seed)
    oracle = randomize_bn(tv_basic_block(in_planes, planes, stride), seed)
    block = student.BasicBlock(in_planes, planes, stride)
    what = f"BasicBlock({in_planes}, {planes}, stride={stride})"
    check_structure(what, describe(student, block), oracle)
    compare_block(what, student, block, oracle, tensor(rng, 2, in_planes, 9, 7))


@pytest.mark.points(2)
def test_basic_block_adds_before_the_last_relu(student, rng):
    """With zero convolutions the block is relu(x + bn2's shift): the residual addition
    comes before the final ReLU (the lecture's code)."""
    c = 6
    block = student.BasicBlock(c, c, 1)
    shift = torch.tensor(rng.uniform(-1.5, 1.5, c), dtype=torch.float32)
    state = {k: torch.zeros_like(v) if k.startswith("conv") else v
             for k, v in block.state_dict().items()}
    state.update({"bn2.weight": torch.zeros(c), "bn2.bias": shift.clone(),
                  "bn2.running_mean": torch.zeros(c), "bn2.running_var": torch.ones(c)})
    load_strict("BasicBlock(6, 6)", student, block, state)
    block.eval()
    x = tensor(rng, 3, c, 5, 4)
    out = block(x.clone())
    expected = torch.relu(x + shift.view(1, c, 1, 1))
    close("BasicBlock(6, 6)(x) with zero convolutions and bn2 = its bias: out = relu(x + b); "
          "the identity is added BEFORE the last ReLU, and nothing after it", out, expected)


@pytest.mark.points(3)
@pytest.mark.parametrize("in_planes, planes, stride, groups, base_width", [
    (8, 3, 1, 1, 64),   # projection: the width changes
    (12, 3, 1, 1, 64),  # identity shortcut
    (6, 4, 2, 2, 32),   # stride 2, grouped
    (10, 8, 2, 4, 16),  # ResNeXt-like: width = int(8 * 16 / 64) * 4 = 8
])
def test_bottleneck_matches_torchvision(student, rng, seed, in_planes, planes, stride, groups,
                                        base_width):
    """Bottleneck against torchvision's (ResNet v1.5: the stride on the 3x3 conv)."""
    torch.manual_seed(seed)
    oracle = randomize_bn(tv_bottleneck(in_planes, planes, stride, groups, base_width), seed)
    block = student.Bottleneck(in_planes, planes, stride, groups, base_width)
    what = (f"Bottleneck({in_planes}, {planes}, stride={stride}, groups={groups}, "
            f"base_width={base_width})")
    check_structure(what, describe(student, block), oracle)
    compare_block(what, student, block, oracle, tensor(rng, 2, in_planes, 11, 8))


@pytest.mark.points(1)
def test_bottleneck_defaults(student):
    """Bottleneck(in, planes) defaults to stride 1, groups 1, base width 64 (planes = 64, so
    that another base width changes the inner width: int(64 * base_width / 64))."""
    block = student.Bottleneck(32, 64)
    check_structure("Bottleneck(32, 64)", describe(student, block),
                    tv_bottleneck(32, 64, 1, 1, 64))
    out = block(torch.zeros(1, 32, 5, 3))
    assert_shape("Bottleneck(32, 64)(x) for x of shape (1, 32, 5, 3)",
                 as_tensor("Bottleneck", out), (1, 256, 5, 3))


@pytest.mark.points(2)
def test_block_defaults(student, rng):
    """BasicBlock(in, planes) and DepthwiseSeparable(in, out) have stride 1 by default, and
    SeparableConv2d(in, out) kernel 3, stride 1, padding 1: the maps keep their size."""
    x = tensor(rng, 1, 6, 7, 5)
    block = student.BasicBlock(6, 6)
    check_structure("BasicBlock(6, 6)", describe(student, block), tv_basic_block(6, 6, 1))
    assert_shape("BasicBlock(6, 6)(x) for x of shape (1, 6, 7, 5) (stride 1 by default)",
                 as_tensor("BasicBlock", block(x.clone())), (1, 6, 7, 5))
    block = student.DepthwiseSeparable(6, 4)
    assert_shape("DepthwiseSeparable(6, 4)(x) for x of shape (1, 6, 7, 5) (stride 1 by default)",
                 as_tensor("DepthwiseSeparable", block(x.clone())), (1, 4, 7, 5))
    conv = student.SeparableConv2d(6, 4)
    got = param_shapes(describe(student, conv))
    want = {"depthwise.weight": (6, 1, 3, 3), "pointwise.weight": (4, 6, 1, 1)}
    if got != want:
        raise CheckFailure(f"SeparableConv2d(6, 4) has the parameters {got}, expected {want} "
                           f"(kernel_size=3 by default).")
    assert_shape("SeparableConv2d(6, 4)(x) for x of shape (1, 6, 7, 5) (kernel 3, stride 1, "
                 "padding 1 by default)", as_tensor("SeparableConv2d", conv(x.clone())),
                 (1, 4, 7, 5))


# --- the ResNet builder --------------------------------------------------------------------


def compare_model(what, student, handle, oracle, x, expected_count=None, desc=None,
                  oracle_name="torchvision's model"):
    """Structure (names, shapes, count), the oracle's state loaded strictly, the same outputs
    in eval mode."""
    check_structure(what, desc or describe(student, handle), oracle, expected_count)
    load_strict(what, student, handle, oracle.state_dict())
    handle.eval()
    oracle.eval()
    with torch.no_grad():
        expected = oracle(x.clone())
    out = handle(x.clone())
    close(f"{what}(x) in eval mode, x of shape {tuple(x.shape)}, vs {oracle_name} with the same "
          f"weights", out, expected)


@pytest.mark.points(4)
@pytest.mark.timeout(40)
@pytest.mark.parametrize("name, kwargs, params", [
    ("resnet50", {}, 25_557_032),
    ("resnext50_32x4d", {"groups": 32, "width_per_group": 4}, 25_028_904),
])
def test_resnet50_and_resnext50_match_torchvision(student, rng, seed, name, kwargs, params):
    """resnet(Bottleneck, [3, 4, 6, 3], ...) is torchvision's ResNet-50 / ResNeXt-50 (32x4d):
    parameter count, names and shapes, torchvision's state_dict loaded strictly, same outputs."""
    torch.manual_seed(seed)
    oracle = randomize_bn(getattr(torchvision.models, name)(weights=None), seed, spread=0.2)
    model = student.resnet(student.Bottleneck, [3, 4, 6, 3], **kwargs)
    args = ", ".join(f"{k}={v}" for k, v in kwargs.items())
    compare_model(f"resnet(Bottleneck, [3, 4, 6, 3]{', ' + args if args else ''})", student,
                  model, oracle, tensor(rng, 2, 3, 64, 48), params)


@pytest.mark.points(3)
@pytest.mark.timeout(20)
@pytest.mark.parametrize("block, layers, kwargs", [
    ("BasicBlock", [2, 1, 1, 3], {"num_classes": 7}),
    ("Bottleneck", [1, 2, 1, 1], {"num_classes": 5, "groups": 8, "width_per_group": 8}),
])
def test_resnet_variants_match_torchvision(student, rng, seed, block, layers, kwargs):
    """resnet(block, layers, num_classes, groups, width_per_group) vs torchvision.models.ResNet."""
    torch.manual_seed(seed)
    oracle = torchvision.models.ResNet(getattr(tv_resnet, block), layers, **kwargs)
    randomize_bn(oracle, seed, spread=0.3)
    model = student.resnet(getattr(student, block), layers, **kwargs)
    compare_model(f"resnet({block}, {layers}, {kwargs})", student, model, oracle,
                  tensor(rng, 3, 3, 40, 56))


@pytest.mark.points(3)
@pytest.mark.parametrize("block, layers, widths", [
    ("BasicBlock", [2, 1, 3], (8, 12, 16)),
    ("Bottleneck", [1, 2], (6, 4)),
])
def test_resnet_small_input_and_widths(student, reference, rng, seed, block, layers, widths):
    """small_input (3x3 stem, stride 1, no max pool) and widths (one stage per entry)."""
    model = student.resnet(getattr(student, block), layers, num_classes=6, widths=widths,
                           small_input=True)
    what = f"resnet({block}, {layers}, num_classes=6, widths={widths}, small_input=True)"
    torch.manual_seed(seed)
    ours = reference.resnet(getattr(reference, block), layers, num_classes=6, widths=widths,
                            small_input=True)
    randomize_bn(ours, seed, spread=0.3)
    desc = describe(student, model)
    shapes = param_shapes(desc)
    if shapes.get("conv1.weight") != (widths[0], 3, 3, 3):
        raise CheckFailure(f"{what}: conv1.weight has shape {shapes.get('conv1.weight')}, "
                           f"expected {(widths[0], 3, 3, 3)} (a 3x3 stem to widths[0] channels).")
    stages = sorted({n.split(".")[0] for n in shapes if n.startswith("layer")})
    if stages != [f"layer{i + 1}" for i in range(len(layers))]:
        raise CheckFailure(f"{what} has the stages {stages}, expected one per entry of layers: "
                           f"{[f'layer{i + 1}' for i in range(len(layers))]}.")
    compare_model(what, student, model, ours, tensor(rng, 2, 3, 12, 10), desc=desc,
                  oracle_name="the model of the docstring (3x3 stride-1 stem, no max pool)")


# --- MobileNet -----------------------------------------------------------------------------

# The lecture's table (Howard et al. 2017, Table 1) at 224x224: the output (C, H, W) of the
# stem and of each depthwise separable block (the last block's stride is 1, see the docstring).
MOBILENET_TABLE = [(32, 112), (64, 112), (128, 56), (128, 56), (256, 28), (256, 28), (512, 14),
                   (512, 14), (512, 14), (512, 14), (512, 14), (512, 14), (1024, 7), (1024, 7)]


def mobilenet_expected_shapes(width_mult, num_classes):
    def depth(c):
        return max(8, int(c * width_mult))

    shapes = {"features.0.0.weight": (depth(32), 3, 3, 3)}
    c_in = depth(32)
    for i, (c, _) in enumerate(MOBILENET_TABLE[1:], start=1):
        c_out = depth(c)
        shapes[f"features.{i}.depthwise.weight"] = (c_in, 1, 3, 3)
        shapes[f"features.{i}.pointwise.weight"] = (c_out, c_in, 1, 1)
        for bn, ch in (("bn1", c_in), ("bn2", c_out)):
            shapes[f"features.{i}.{bn}.weight"] = (ch,)
            shapes[f"features.{i}.{bn}.bias"] = (ch,)
        c_in = c_out
    shapes["features.0.1.weight"] = shapes["features.0.1.bias"] = (depth(32),)
    shapes["fc.weight"] = (num_classes, c_in)
    shapes["fc.bias"] = (num_classes,)
    return shapes


def check_mobilenet_parameters(what, desc, expected):
    got = param_shapes(desc)
    n_want = sum(math.prod(s) for s in expected.values())
    wrong = [f"{n}: {got.get(n)} instead of {s}" for n, s in expected.items() if got.get(n) != s]
    extra = [n for n in got if n not in expected]
    if wrong or extra or count(desc) != n_want:
        raise CheckFailure(f"{what} has {count(desc):,} parameters, expected {n_want:,}. "
                           f"Wrong or missing ({len(wrong)}): {'; '.join(wrong[:4])}. "
                           f"Unexpected: {extra[:4]}. (The depthwise conv has groups=in_channels: "
                           f"weight (C, 1, 3, 3); channel counts max(8, int(c * width_mult)).)")


@pytest.mark.points(4)
@pytest.mark.timeout(20)
def test_mobilenet_layer_by_layer_against_the_table(student, rng):
    """mobilenet_v1(): every layer's parameter shapes (4,231,976 parameters) and the output
    shape of each of features[0..13] at 224x224, as in the lecture's table."""
    model = student.mobilenet_v1()
    check_mobilenet_parameters("mobilenet_v1()", describe(student, model),
                               mobilenet_expected_shapes(1.0, 1000))
    model.eval()
    x = tensor(rng, 1, 3, 224, 224)
    for i, (c, size) in enumerate(MOBILENET_TABLE):
        x = as_tensor(f"mobilenet_v1().features[{i}](x)", model.features[i](x))
        assert_shape(f"the output of mobilenet_v1().features[{i}] for a 224x224 image (the "
                     f"lecture's table)", x, (1, c, size, size))
    out = model(tensor(rng, 2, 3, 224, 224))
    assert_shape("mobilenet_v1()(x) for x of shape (2, 3, 224, 224)", out, (2, 1000))


@pytest.mark.points(3)
@pytest.mark.parametrize("width_mult, num_classes, small_input", [
    (0.5, 7, False), (0.3, 5, True), (0.2, 4, False)])
def test_mobilenet_width_multiplier(student, reference, rng, seed, width_mult, num_classes,
                                    small_input):
    """The width multiplier: max(8, int(c * alpha)) channels everywhere; small_input; outputs
    against the reference with the same weights."""
    model = student.mobilenet_v1(num_classes, width_mult, small_input)
    what = f"mobilenet_v1({num_classes}, width_mult={width_mult}, small_input={small_input})"
    check_mobilenet_parameters(what, describe(student, model),
                               mobilenet_expected_shapes(width_mult, num_classes))
    torch.manual_seed(seed)
    ours = randomize_bn(reference.mobilenet_v1(num_classes, width_mult, small_input), seed, 0.3)
    load_strict(what, student, model, ours.state_dict())
    model.eval()
    ours.eval()
    x = tensor(rng, 2, 3, 32, 24)
    stem = as_tensor(f"{what}.features[0](x)", model.features[0](x.clone()))
    size = (32, 24) if small_input else (16, 12)
    assert_shape(f"{what}.features[0](x) for x of shape (2, 3, 32, 24) (stride "
                 f"{1 if small_input else 2})", stem, (2, max(8, int(32 * width_mult)), *size))
    # Layer by layer, each fed the reference's output of the layer before: with random batch
    # norm statistics the deep layers see mostly the norms' shifts, so that the logits
    # alone hardly depend on what the first layers did.
    h = x
    for i in range(len(MOBILENET_TABLE)):
        with torch.no_grad():
            expected = ours.features[i](h.clone())
        close(f"{what}.features[{i}](h), h the output of the layers before it (features[0]: "
              f"conv, BN, ReLU; then the DepthwiseSeparable blocks)",
              model.features[i](h.clone()), expected)
        h = expected
    with torch.no_grad():
        expected = ours(x.clone())
    close(f"{what}(x) for x of shape (2, 3, 32, 24)", model(x.clone()), expected)


@pytest.mark.points(3)
@pytest.mark.parametrize("in_ch, out_ch, stride, size", [(3, 5, 1, (9, 7)), (4, 6, 2, (11, 8))])
def test_depthwise_separable_block(student, rng, seed, in_ch, out_ch, stride, size):
    """DepthwiseSeparable: parameters against the formula, and the output (eval and train mode)
    against conv2d(groups=C) + BN + ReLU + 1x1 conv + BN + ReLU on its own weights."""
    block = student.DepthwiseSeparable(in_ch, out_ch, stride)
    what = f"DepthwiseSeparable({in_ch}, {out_ch}, stride={stride})"
    expected_shapes = {"depthwise.weight": (in_ch, 1, 3, 3), "bn1.weight": (in_ch,),
                       "bn1.bias": (in_ch,), "pointwise.weight": (out_ch, in_ch, 1, 1),
                       "bn2.weight": (out_ch,), "bn2.bias": (out_ch,)}
    desc = describe(student, block)
    got = param_shapes(desc)
    formula = 9 * in_ch + in_ch * out_ch + 2 * (in_ch + out_ch)
    if got != expected_shapes:
        raise CheckFailure(f"{what} has {count(desc)} parameters {got}, expected "
                           f"9 * in + in * out + 2 * (in + out) = {formula}: {expected_shapes} "
                           f"(depthwise: groups=in_channels, no bias; BN after both convs).")
    torch.manual_seed(seed)
    ref = nn.ModuleDict({"depthwise": nn.Conv2d(in_ch, in_ch, 3, groups=in_ch, bias=False),
                         "bn1": nn.BatchNorm2d(in_ch),
                         "pointwise": nn.Conv2d(in_ch, out_ch, 1, bias=False),
                         "bn2": nn.BatchNorm2d(out_ch)})
    randomize_bn(ref, seed)
    state = {k: v.clone() for k, v in ref.state_dict().items()}
    load_strict(what, student, block, state)
    x = tensor(rng, 2, in_ch, *size)
    for train in (False, True):
        block.train(train)
        s = {k: v.clone() for k, v in state.items()}
        h = F.conv2d(x, s["depthwise.weight"], stride=stride, padding=1, groups=in_ch)
        h = F.relu(F.batch_norm(h, s["bn1.running_mean"], s["bn1.running_var"], s["bn1.weight"],
                                s["bn1.bias"], training=train))
        h = F.conv2d(h, s["pointwise.weight"])
        h = F.relu(F.batch_norm(h, s["bn2.running_mean"], s["bn2.running_var"], s["bn2.weight"],
                                s["bn2.bias"], training=train))
        close(f"{what}(x) in {'train' if train else 'eval'} mode, x of shape {tuple(x.shape)}",
              block(x.clone()), h)


# --- Xception ------------------------------------------------------------------------------


@pytest.mark.points(2)
@pytest.mark.parametrize("in_ch, out_ch, k, stride, padding, size", [
    (3, 5, 3, 1, 1, (9, 7)), (4, 2, 5, 2, 2, (12, 9)), (6, 6, 3, 1, 0, (8, 10))])
def test_separable_conv2d(student, rng, in_ch, out_ch, k, stride, padding, size):
    """SeparableConv2d: depthwise (groups=C) then pointwise, no bias, nothing in between."""
    m = student.SeparableConv2d(in_ch, out_ch, k, stride, padding)
    what = f"SeparableConv2d({in_ch}, {out_ch}, {k}, stride={stride}, padding={padding})"
    desc = describe(student, m)
    got = param_shapes(desc)
    want = {"depthwise.weight": (in_ch, 1, k, k), "pointwise.weight": (out_ch, in_ch, 1, 1)}
    if got != want:
        raise CheckFailure(f"{what} has the parameters {got}, expected {want} "
                           f"(k*k*in + in*out = {k * k * in_ch + in_ch * out_ch}, no bias).")
    state = {"depthwise.weight": tensor(rng, in_ch, 1, k, k),
             "pointwise.weight": tensor(rng, out_ch, in_ch, 1, 1)}
    load_strict(what, student, m, {key: v.clone() for key, v in state.items()})
    x = tensor(rng, 2, in_ch, *size)
    expected = F.conv2d(F.conv2d(x, state["depthwise.weight"], stride=stride, padding=padding,
                                 groups=in_ch), state["pointwise.weight"])
    close(f"{what}(x), x of shape {tuple(x.shape)}", m(x.clone()), expected)


@pytest.mark.points(3)
@pytest.mark.parametrize("channels, size", [(5, (7, 6)), (3, (4, 9))])
def test_xception_middle_block(student, rng, seed, channels, size):
    """XceptionMiddleBlock: x + bn3(sep3(relu(bn2(sep2(relu(bn1(sep1(relu(x))))))))), x intact."""
    m = student.XceptionMiddleBlock(channels)
    what = f"XceptionMiddleBlock({channels})"
    desc = describe(student, m)
    c = channels
    formula = 3 * (9 * c + c * c + 2 * c)
    if count(desc) != formula:
        raise CheckFailure(f"{what} has {count(desc)} parameters, expected 3 * (9c + c^2 + 2c) "
                           f"= {formula} (three SeparableConv2d and three BatchNorm2d).")
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for i in (1, 2, 3):
        state[f"sep{i}.depthwise.weight"] = torch.randn(c, 1, 3, 3, generator=gen) * 0.5
        state[f"sep{i}.pointwise.weight"] = torch.randn(c, c, 1, 1, generator=gen) * 0.5
        state[f"bn{i}.weight"] = torch.rand(c, generator=gen) + 0.5
        state[f"bn{i}.bias"] = torch.randn(c, generator=gen) * 0.3
        state[f"bn{i}.running_mean"] = torch.randn(c, generator=gen) * 0.3
        state[f"bn{i}.running_var"] = torch.rand(c, generator=gen) + 0.5
        state[f"bn{i}.num_batches_tracked"] = torch.tensor(0)
    load_strict(what, student, m, {k: v.clone() for k, v in state.items()})
    x = tensor(rng, 2, c, *size)
    for train in (False, True):
        m.train(train)
        s = {k: v.clone() for k, v in state.items()}
        h = x
        for i in (1, 2, 3):
            h = F.conv2d(F.conv2d(F.relu(h), s[f"sep{i}.depthwise.weight"], padding=1, groups=c),
                         s[f"sep{i}.pointwise.weight"])
            h = F.batch_norm(h, s[f"bn{i}.running_mean"], s[f"bn{i}.running_var"],
                             s[f"bn{i}.weight"], s[f"bn{i}.bias"], training=train)
        x_sent = x.clone()
        out = m(x_sent)
        if not torch.equal(x_sent, x):
            raise CheckFailure(f"{what}(x) modified x: a ReLU applied in place to x destroys the "
                               f"shortcut (use nn.ReLU() without inplace before sep1).")
        close(f"{what}(x) in {'train' if train else 'eval'} mode, x of shape {tuple(x.shape)} "
              f"(a ReLU BEFORE each separable conv, x + ... at the end, no ReLU after)", out,
              x + h)


@pytest.mark.points(1)
def test_xception_middle_block_default(student):
    """XceptionMiddleBlock() has Xception's 728 channels."""
    desc = describe(student, student.XceptionMiddleBlock())
    c = 728
    if count(desc) != 3 * (9 * c + c * c + 2 * c):
        raise CheckFailure(f"XceptionMiddleBlock() has {count(desc):,} parameters, expected "
                           f"{3 * (9 * c + c * c + 2 * c):,} (728 channels by default).")


# --- DenseNet ------------------------------------------------------------------------------


@pytest.mark.points(3)
@pytest.mark.parametrize("in_ch, growth, bn_size", [(5, 3, 2), (7, 4, None)])
def test_dense_layer_matches_torchvision(student, rng, seed, in_ch, growth, bn_size):
    """DenseLayer against torchvision's dense layer: its new features only (growth_rate maps)."""
    torch.manual_seed(seed)
    oracle = randomize_bn(tv_densenet._DenseLayer(in_ch, growth, bn_size or 4, 0.0), seed)
    args = (in_ch, growth) if bn_size is None else (in_ch, growth, bn_size)
    layer = student.DenseLayer(*args)
    what = f"DenseLayer{args}"
    check_structure(what, describe(student, layer), oracle)
    compare_block(what, student, layer, oracle, tensor(rng, 2, in_ch, 6, 9))


@pytest.mark.points(3)
@pytest.mark.parametrize("num_layers, in_ch, growth, bn_size", [(3, 4, 3, 2), (2, 6, 5, None)])
def test_dense_block_matches_torchvision(student, rng, seed, num_layers, in_ch, growth, bn_size):
    """DenseBlock against torchvision's: every layer sees the concatenation of all before it."""
    torch.manual_seed(seed)
    oracle = randomize_bn(tv_densenet._DenseBlock(num_layers, in_ch, bn_size or 4, growth, 0.0),
                          seed)
    args = (num_layers, in_ch, growth) if bn_size is None else (num_layers, in_ch, growth, bn_size)
    block = student.DenseBlock(*args)
    what = f"DenseBlock{args}"
    check_structure(what, describe(student, block), oracle)
    x = tensor(rng, 2, in_ch, 5, 7)
    out = as_tensor(f"{what}(x)", block(x.clone()))
    assert_shape(f"{what}(x) for x of shape {tuple(x.shape)} (in_channels + num_layers * "
                 f"growth_rate channels: the input and every new map, concatenated)", out,
                 (2, in_ch + num_layers * growth, 5, 7))
    compare_block(what, student, block, oracle, x)


@pytest.mark.points(2)
@pytest.mark.parametrize("in_ch, out_ch, size", [(6, 3, (7, 9)), (5, 8, (8, 4))])
def test_transition_matches_torchvision(student, rng, seed, in_ch, out_ch, size):
    """Transition against torchvision's: BN, ReLU, 1x1 conv, 2x2 average pool."""
    torch.manual_seed(seed)
    oracle = randomize_bn(tv_densenet._Transition(in_ch, out_ch), seed)
    layer = student.Transition(in_ch, out_ch)
    what = f"Transition({in_ch}, {out_ch})"
    check_structure(what, describe(student, layer), oracle)
    compare_block(what, student, layer, oracle, tensor(rng, 2, in_ch, *size))


@pytest.mark.points(4)
@pytest.mark.timeout(30)
def test_densenet121_matches_torchvision(student, rng, seed):
    """densenet(32, (6, 12, 24, 16), 64) is torchvision's DenseNet-121: 7,978,856 parameters,
    torchvision's state_dict loaded strictly, the same outputs."""
    torch.manual_seed(seed)
    oracle = randomize_bn(torchvision.models.densenet121(weights=None), seed, spread=0.2)
    model = student.densenet(32, (6, 12, 24, 16), 64)
    compare_model("densenet(32, (6, 12, 24, 16), 64)", student, model, oracle,
                  tensor(rng, 2, 3, 64, 48), 7_978_856)


@pytest.mark.points(2)
def test_densenet_defaults_and_layer_names(student):
    """densenet() is DenseNet-121 (growth 32, blocks (6, 12, 24, 16), 64 initial features),
    and its features are named as torchvision's: conv0, norm0, relu0, pool0, denseblock1,
    transition1, ..., denseblock4, norm5."""
    info = describe(student, student.densenet())
    if count(info) != 7_978_856:
        raise CheckFailure(f"densenet() has {count(info):,} parameters, expected 7,978,856 "
                           f"(DenseNet-121: the defaults are growth_rate=32, block_config=(6, "
                           f"12, 24, 16), num_init_features=64).")
    with torch.device("meta"):
        oracle = torchvision.models.densenet121(weights=None)
    want = [name for name, _ in oracle.features.named_children()]
    got = [m["name"].split(".", 1)[1] for m in info["modules"]
           if m["name"].startswith("features.") and m["name"].count(".") == 1]
    if got != want:
        raise CheckFailure(f"densenet().features holds the modules {got}, expected {want}, in "
                           f"that order (torchvision's names, parameter-free ones included).")


@pytest.mark.points(3)
def test_densenet_variant_matches_torchvision(student, rng, seed):
    """densenet's growth rate, block_config, num_init_features, bn_size and num_classes
    against torchvision.models.DenseNet (compression 0.5 at every transition)."""
    kwargs = {"growth_rate": 12, "block_config": (2, 3, 2), "num_init_features": 16,
              "bn_size": 2, "num_classes": 7}
    torch.manual_seed(seed)
    oracle = randomize_bn(torchvision.models.DenseNet(**kwargs), seed, spread=0.3)
    model = student.densenet(12, (2, 3, 2), 16, 2, 7)
    compare_model("densenet(12, (2, 3, 2), 16, bn_size=2, num_classes=7)", student, model,
                  oracle, tensor(rng, 3, 3, 40, 56))


@pytest.mark.points(2)
def test_densenet_small_input(student, reference, rng, seed):
    """densenet(..., small_input=True): a 3x3 stride-1 stem and no pooling, for 32x32 images."""
    model = student.densenet(8, (3, 2), 10, 2, 5, True)
    what = "densenet(8, (3, 2), 10, bn_size=2, num_classes=5, small_input=True)"
    torch.manual_seed(seed)
    ours = randomize_bn(reference.densenet(8, (3, 2), 10, 2, 5, True), seed, 0.3)
    desc = describe(student, model)
    shapes = param_shapes(desc)
    if shapes.get("features.conv0.weight") != (10, 3, 3, 3):
        raise CheckFailure(f"{what}: features.conv0.weight has shape "
                           f"{shapes.get('features.conv0.weight')}, expected (10, 3, 3, 3).")
    compare_model(what, student, model, ours, tensor(rng, 2, 3, 12, 10), desc=desc,
                  oracle_name="the model of the docstring (3x3 stride-1 stem, no pooling)")
