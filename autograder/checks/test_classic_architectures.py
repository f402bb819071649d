"""Hidden checks of Lab 07: the classic architectures, counted.

Oracles, all computed here on the grader's own copies of the models:
- ``layer_table``: forward hooks of the grader (shapes, parameters seen for the
  first time, memory shared with the input) and torch's FLOP counter
  (``torch.utils.flop_counter.FlopCounterMode``, FLOPs = 2 x multiply-adds),
  run on each leaf module and on the whole model; the lecture's VGG16 table;
- the builders: torchvision's models (their state_dict keys, shapes and
  parameter counts, built on the meta device where no weights are needed),
  the sizes of the lecture and of the papers' tables, and the outputs of the
  grader's own modules after their weights were loaded into the student's;
- ``receptive_field``: a brute-force walk over the input pixels;
- ``training_memory``: hand counts.

The student's models stay in the student's process: the checks read them
with ``describe`` (shapes, no weights), load weights into them with
``load_state`` and call them; a large model is moved to the meta device when
its check is done, to give its memory back.
"""

import math

import numpy as np
import pytest
import torch
import torchvision
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from autograder.sandbox.modules import build_module, describe, lend, load_state, module_spec
from labkit.checks import CheckFailure, assert_close, assert_raises

ROW_KEYS = ("name", "type", "output_shape", "activations", "params", "macs", "in_place")
TOTAL_KEYS = ("activations", "params", "macs", "activation_bytes", "param_bytes", "total_bytes")

# --- helpers ---------------------------------------------------------------------------------


def spec(name, *args, **kwargs):
    return module_spec(f"torch.nn.{name}", *args, **kwargs)


def seq(*specs):
    return spec("Sequential", *specs)


def _int(what, value):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            return int(value)
        raise CheckFailure(f"{what} must be an int, got {type(value).__name__} {value!r:.60}.")
    return int(value)


def table_of(result, what="layer_table(model, input_shape)"):
    """The student's answer as (rows, totals), each value checked for its type."""
    if not isinstance(result, dict) or "rows" not in result or "totals" not in result:
        raise CheckFailure(f"{what} must return a dict with the keys 'rows' and 'totals'.")
    rows, totals = result["rows"], result["totals"]
    if not isinstance(rows, (list, tuple)) or not isinstance(totals, dict):
        raise CheckFailure(f"{what}: 'rows' must be a list of dicts, 'totals' a dict.")
    clean = []
    for i, row in enumerate(rows):
        if not isinstance(row, dict) or any(k not in row for k in ROW_KEYS):
            raise CheckFailure(f"{what}: row {i} must be a dict with the keys {ROW_KEYS}.")
        clean.append({
            "name": str(row["name"]), "type": str(row["type"]),
            "output_shape": [_int(f"row {i} output_shape", n) for n in row["output_shape"]],
            "activations": _int(f"row {i} activations", row["activations"]),
            "params": _int(f"row {i} params", row["params"]),
            "macs": _int(f"row {i} macs", row["macs"]),
            "in_place": bool(row["in_place"])})
    missing = [k for k in TOTAL_KEYS if k not in totals]
    if missing:
        raise CheckFailure(f"{what}: 'totals' lacks the keys {missing}.")
    return clean, {k: _int(f"totals[{k!r}]", totals[k]) for k in TOTAL_KEYS}


def flop_macs(model, x):
    """Multiply-adds of model(x) by torch's FLOP counter (FLOPs / 2)."""
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() // 2


def oracle_table(model, input_shape, bytes_per_value=4):
    """The grader's own table: forward hooks on the leaf modules for the shapes, the
    parameters seen for the first time and the memory shared with the input; one pass of
    torch's FLOP counter for the multiply-adds, per module and in all."""
    names = {}
    for name, m in model.named_modules():
        names.setdefault(m, name)
    rows, counted, calls = [], set(), {}

    def hook(module, inputs, output):
        first = inputs[0]
        in_place = output.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
        fresh = [p for p in module.parameters() if id(p) not in counted]
        counted.update(id(p) for p in fresh)
        calls[names[module]] = calls.get(names[module], 0) + 1
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in fresh), "in_place": in_place})

    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    x = torch.zeros(input_shape)
    model.eval()
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    per_module = {k: sum(v.values()) for k, v in counter.get_flop_counts().items()}
    root = type(model).__name__
    for r in rows:
        key = f"{root}.{r['name']}" if r["name"] else root
        r["macs"] = per_module.get(key, 0) // 2 // calls[r["name"]]
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    totals = {"activations": acts, "params": params, "macs": counter.get_total_flops() // 2,
              "activation_bytes": acts * bytes_per_value, "param_bytes": params * bytes_per_value,
              "total_bytes": (acts + params) * bytes_per_value}
    return rows, totals


def compare_tables(what, got, expected):
    rows, totals = got
    exp_rows, exp_totals = expected
    if len(rows) != len(exp_rows):
        raise CheckFailure(
            f"{what}: {len(rows)} rows, expected {len(exp_rows)} (one per call of a LEAF module, "
            f"in the order of the calls: {[r['name'] for r in exp_rows][:12]}...). Containers "
            f"(Sequential, modules with children) get no row.")
    for i, (r, e) in enumerate(zip(rows, exp_rows, strict=True)):
        for key in ROW_KEYS:
            if r[key] != e[key]:
                raise CheckFailure(
                    f"{what}, row {i} ({e['type']} {e['name']!r}): {key} = {r[key]!r}, expected "
                    f"{e[key]!r}. Expected row: {e}.")
    for key in TOTAL_KEYS:
        if totals[key] != exp_totals[key]:
            raise CheckFailure(f"{what}: totals[{key!r}] = {totals[key]:,}, expected "
                               f"{exp_totals[key]:,}. Expected totals: {exp_totals}.")


def seeded(spec_, seed):
    torch.manual_seed(seed)
    return build_module(spec_)


def n_params(description):
    return sum(math.prod(p["shape"]) for p in description["parameters"])


def free(model):
    """Give the memory of a large student model back (its weights move to the meta device)."""
    try:
        model.to("meta")
    except Exception:  # noqa: BLE001 - the student's model may not allow it; only memory lost
        pass


# --- layer_table: counts against hooks and the FLOP counter ----------------------------------


def compare_with_oracle(student, seed, case, model_spec, shape):
    """layer_table on the student's copy of ``model_spec`` against the grader's hooks and
    torch's FLOP counter on its own copy, row by row and total by total."""
    ours = seeded(model_spec, seed)
    theirs = lend(student, model_spec, ours.state_dict())
    got = table_of(student.layer_table(theirs, shape), f"layer_table(model, {shape})")
    compare_tables(f"layer_table on the {case.replace('_', ' ')} model, input {shape}",
                   got, oracle_table(ours, shape))

SMALL_MODELS = {
    "conv_groups_stride_bias": (seq(
        spec("Conv2d", 6, 12, 3, stride=2, padding=1, groups=3),
        spec("ReLU", inplace=True),
        spec("Conv2d", 12, 8, (3, 2), padding=(1, 0), bias=False),
        spec("BatchNorm2d", 8), spec("ReLU"),
        spec("MaxPool2d", 2), spec("Flatten"), spec("Linear", 8 * 3 * 2, 5)), (3, 6, 13, 10)),
    "dilation_depthwise": (seq(
        spec("Conv2d", 4, 4, 3, padding=2, dilation=2, groups=4, bias=False),
        spec("Conv2d", 4, 9, 1), spec("ReLU6"),
        spec("AvgPool2d", 3, stride=2), spec("Dropout", 0.3),
        spec("AdaptiveAvgPool2d", (2, 3)), spec("Flatten"),
        spec("Linear", 9 * 6, 7, bias=False), spec("Tanh")), (2, 4, 15, 12)),
    "linear_on_3d_input": (seq(
        spec("Linear", 11, 6), spec("GELU"), spec("Linear", 6, 3), spec("Identity")),
        (4, 5, 11)),
}


@pytest.mark.points(4)
@pytest.mark.parametrize("case", sorted(SMALL_MODELS))
def test_layer_table_against_hooks_and_flop_counter(student, seed, case):
    """Every row and total of layer_table on small models (groups, stride, dilation, bias
    False, BatchNorm, pooling, dropout, Linear on 3D inputs) against the grader's hooks and
    torch's FLOP counter."""
    compare_with_oracle(student, seed, case, *SMALL_MODELS[case])


@pytest.mark.points(4)
@pytest.mark.timeout(60)
@pytest.mark.parametrize("builder", ["squeezenet1_1", "resnet18"])
def test_layer_table_torchvision_models(student, seed, builder):
    """layer_table on torchvision's SqueezeNet 1.1 (branches joined by torch.cat, max pools
    that round up, in-place ReLUs, dropout) and ResNet-18 (batch norms, shortcuts, a ReLU
    module called twice per block): rows against the grader's hooks, multiply-adds against
    torch's FLOP counter."""
    model_spec = module_spec(f"torchvision.models.{builder}", num_classes=6)
    ours = seeded(model_spec, seed)
    theirs = lend(student, model_spec, ours.state_dict())
    shape = (2, 3, 48, 40)
    got = table_of(student.layer_table(theirs, shape), f"layer_table({builder}, {shape})")
    compare_tables(f"layer_table(torchvision.models.{builder}(...), {shape})", got,
                   oracle_table(ours, shape))


# The lecture's VGG16 table (224x224x3 input): activation maps and weights of each layer.
LECTURE_VGG16 = [
    ("CONV3-64", (64, 224, 224), 3 * 3 * 3 * 64), ("CONV3-64", (64, 224, 224), 3 * 3 * 64 * 64),
    ("POOL2", (64, 112, 112), 0),
    ("CONV3-128", (128, 112, 112), 3 * 3 * 64 * 128),
    ("CONV3-128", (128, 112, 112), 3 * 3 * 128 * 128), ("POOL2", (128, 56, 56), 0),
    ("CONV3-256", (256, 56, 56), 3 * 3 * 128 * 256),
    ("CONV3-256", (256, 56, 56), 3 * 3 * 256 * 256),
    ("CONV3-256", (256, 56, 56), 3 * 3 * 256 * 256), ("POOL2", (256, 28, 28), 0),
    ("CONV3-512", (512, 28, 28), 3 * 3 * 256 * 512),
    ("CONV3-512", (512, 28, 28), 3 * 3 * 512 * 512),
    ("CONV3-512", (512, 28, 28), 3 * 3 * 512 * 512), ("POOL2", (512, 14, 14), 0),
    ("CONV3-512", (512, 14, 14), 3 * 3 * 512 * 512),
    ("CONV3-512", (512, 14, 14), 3 * 3 * 512 * 512),
    ("CONV3-512", (512, 14, 14), 3 * 3 * 512 * 512), ("POOL2", (512, 7, 7), 0),
]
VGG16_CONFIG = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
                512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16_features_spec():
    layers, channels = [], 3
    for v in VGG16_CONFIG:
        if v == "M":
            layers.append(spec("MaxPool2d", 2, stride=2))
        else:
            layers += [spec("Conv2d", channels, v, 3, padding=1), spec("ReLU", inplace=True)]
            channels = v
    return seq(*layers)


@pytest.mark.points(4)
@pytest.mark.timeout(40)
def test_layer_table_reproduces_the_lecture_vgg16_table(student):
    """layer_table on VGG16's 13 convolutions and 5 pools at 224x224: the lecture's
    activation maps and weights (plus the biases), row by row, and the FLOP counter's
    15.3 G multiply-adds."""
    model_spec = vgg16_features_spec()
    theirs = lend(student, model_spec)  # its own random weights: counts do not depend on them
    try:
        rows, totals = table_of(student.layer_table(theirs, (1, 3, 224, 224)),
                                "layer_table(vgg16 features, (1, 3, 224, 224))")
    finally:
        free(theirs)
    kept = [r for r in rows if r["type"] != "ReLU"]
    if len(kept) != len(LECTURE_VGG16) or any(r["in_place"] is False for r in rows
                                               if r["type"] == "ReLU"):
        raise CheckFailure(
            f"layer_table on VGG16's features: expected 13 Conv2d, 13 ReLU (in place) and 5 "
            f"MaxPool2d rows, got {[r['type'] for r in rows]} (in_place of the ReLUs: "
            f"{[r['in_place'] for r in rows if r['type'] == 'ReLU']}).")
    macs = 0
    for i, (r, (label, shape, weights)) in enumerate(zip(kept, LECTURE_VGG16, strict=True)):
        expected_params = weights + (shape[0] if weights else 0)
        c, h, w = shape
        expected_macs = weights * h * w
        macs += expected_macs
        for key, value, exp in (("output_shape", r["output_shape"], [1, *shape]),
                                ("activations", r["activations"], c * h * w),
                                ("params", r["params"], expected_params),
                                ("macs", r["macs"], expected_macs)):
            if value != exp:
                raise CheckFailure(f"layer_table on VGG16: layer {i} ({label}, the lecture's "
                                   f"{h}x{w}x{c}): {key} = {value!r}, expected {exp!r}.")
    with torch.device("meta"):
        oracle = build_module(model_spec)
    assert macs == flop_macs(oracle, torch.empty(1, 3, 224, 224, device="meta")), \
        "the grader's FLOP counter disagrees with the lecture's table"
    expected_acts = 3 * 224 * 224 + sum(math.prod(s) for _, s, _ in LECTURE_VGG16)
    expected = {"activations": expected_acts, "macs": macs,
                "params": sum(w + (s[0] if w else 0) for _, s, w in LECTURE_VGG16)}
    for key, value in expected.items():
        if totals[key] != value:
            raise CheckFailure(f"layer_table on VGG16's features: totals[{key!r}] = "
                               f"{totals[key]:,}, expected {value:,} (the input counts, the "
                               f"in-place ReLUs do not).")


@pytest.mark.points(2)
@pytest.mark.parametrize("dtype, size", [(torch.float16, 2), (torch.float64, 8),
                                         (None, 4)])
def test_layer_table_bytes_per_dtype(student, seed, dtype, size):
    """Memory in bytes: 2, 8 and (by default) 4 bytes per value."""
    model_spec = seq(spec("Conv2d", 3, 5, 3), spec("ReLU"), spec("Flatten"),
                     spec("Linear", 5 * 6 * 4, 4))
    shape = (2, 3, 8, 6)
    ours = seeded(model_spec, seed)
    theirs = lend(student, model_spec, ours.state_dict())
    args = (theirs, shape) if dtype is None else (theirs, shape, dtype)
    what = f"layer_table(model, {shape}{'' if dtype is None else f', {dtype}'})"
    rows, totals = table_of(student.layer_table(*args), what)
    _, exp = oracle_table(ours, shape, size)
    for key in ("activation_bytes", "param_bytes", "total_bytes"):
        if totals[key] != exp[key]:
            raise CheckFailure(f"{what}: totals[{key!r}] = {totals[key]:,}, expected "
                               f"{exp[key]:,} ({size} bytes per value, bytes not bits).")


@pytest.mark.points(3)
def test_layer_table_shared_module_and_root_leaf(student, seed):
    """A conv called twice: two rows, its parameters counted once. A model that is itself a
    leaf: one row named ''."""
    model_spec = seq(spec("Conv2d", 4, 4, 3, padding=1), spec("ReLU"),
                     spec("Conv2d", 4, 4, 3, padding=1), spec("Flatten"))
    ours = seeded(model_spec, seed)
    theirs = lend(student, model_spec, ours.state_dict())
    theirs[2] = theirs[0]  # the same conv at positions 0 and 2, in the student's process
    ours[2] = ours[0]
    shape = (3, 4, 7, 5)
    compare_tables(f"layer_table on Sequential(conv, ReLU, the SAME conv, Flatten), {shape}",
                   table_of(student.layer_table(theirs, shape)), oracle_table(ours, shape))
    leaf_spec = spec("Conv2d", 2, 3, (2, 3), stride=(2, 1), bias=False)
    ours = seeded(leaf_spec, seed + 1)
    theirs = lend(student, leaf_spec, ours.state_dict())
    compare_tables("layer_table(nn.Conv2d(2, 3, (2, 3), stride=(2, 1), bias=False), "
                   "(2, 2, 9, 8))", table_of(student.layer_table(theirs, (2, 2, 9, 8))),
                   oracle_table(ours, (2, 2, 9, 8)))


STATEFUL_SPEC = seq(spec("Conv2d", 3, 6, 3), spec("BatchNorm2d", 6), spec("ReLU"),
                    spec("Dropout", 0.5), spec("Flatten"), spec("Linear", 6 * 4 * 3, 8),
                    spec("BatchNorm1d", 8), spec("Linear", 8, 2))


@pytest.mark.points(3)
@pytest.mark.parametrize("train", [True, False])
def test_layer_table_eval_pass_leaves_model_as_found(student, seed, train):
    """layer_table runs in eval mode (BatchNorm1d on a batch of 1 would fail in train mode),
    leaves each module's mode and the running statistics as they were, removes its hooks
    (a second call gives the same table), and does not change the input shape list."""
    ours = seeded(STATEFUL_SPEC, seed)
    ours.train()
    with torch.no_grad():
        for _ in range(2):
            ours(torch.randn(5, 3, 6, 5) * 2 + 1)  # running statistics away from 0 and 1
    state = {k: v.clone() for k, v in ours.state_dict().items()}
    theirs = lend(student, STATEFUL_SPEC, state, train=train)
    shape = [1, 3, 6, 5]
    given = list(shape)
    first = table_of(student.layer_table(theirs, given), f"layer_table(model, {shape})")
    if given != shape:
        raise CheckFailure(f"layer_table changed the input_shape it was given: {given}.")
    second = table_of(student.layer_table(theirs, given), "a second call of layer_table")
    expected = oracle_table(ours, tuple(shape))
    compare_tables(f"layer_table on a model with BatchNorm and Dropout (handed over in "
                   f"{'train' if train else 'eval'} mode)", first, expected)
    compare_tables("a second call of layer_table on the same model (remove the hooks after "
                   "the pass)", second, expected)
    info = describe(student, theirs)
    modes = {m["name"]: m["training"] for m in info["modules"]}
    if any(mode != train for mode in modes.values()):
        raise CheckFailure(f"after layer_table, the modules' training flags are {modes}; the "
                           f"model was handed over with training={train}: restore each "
                           f"module's mode.")
    after = theirs.state_dict()
    for key in ("1.running_mean", "1.running_var", "6.running_mean", "6.running_var"):
        assert_close(f"{key} after layer_table (the pass must not update the BatchNorm "
                     f"running statistics: eval mode)", after[key], state[key])


EDGE_MODELS = {
    # no parameter at all: the input goes on the CPU all the same
    "parameter_free": (seq(spec("MaxPool2d", 2), spec("Flatten")), (2, 3, 4, 6)),
    # an in-place ReLU on an output of ONE value still shares its memory with its input
    "one_value": (seq(spec("Conv2d", 1, 1, 1), spec("ReLU", inplace=True)), (1, 1, 1, 1)),
}


@pytest.mark.points(1)
@pytest.mark.parametrize("case", sorted(EDGE_MODELS))
def test_layer_table_edge_models(student, seed, case):
    """layer_table on a model without parameters, and on outputs of a single value."""
    compare_with_oracle(student, seed, case, *EDGE_MODELS[case])


@pytest.mark.points(1)
def test_layer_table_empty_batch(student, seed):
    """A batch of 0 images: every output is empty, and a convolution's new (empty) output shares
    no memory with its input: in_place is False."""
    model_spec = seq(spec("Conv2d", 2, 3, 3), spec("Flatten"))
    theirs = lend(student, model_spec, seeded(model_spec, seed).state_dict())
    rows, totals = table_of(student.layer_table(theirs, (0, 2, 5, 5)),
                            "layer_table(model, (0, 2, 5, 5))")
    if not rows or rows[0]["type"] != "Conv2d" or rows[0]["output_shape"] != [0, 3, 3, 3]:
        raise CheckFailure(f"layer_table(model, (0, 2, 5, 5)): the first row must be the Conv2d "
                           f"with output_shape [0, 3, 3, 3], got {rows[:1]}.")
    if rows[0]["in_place"]:
        raise CheckFailure("layer_table(model, (0, 2, 5, 5)): the Conv2d's row says in_place "
                           "True, but an empty new tensor shares no memory with the input (two "
                           "empty tensors both have a null data pointer: test numel() > 0 "
                           "first).")
    if totals["activations"] != 0 or rows[0]["macs"] != 0:
        raise CheckFailure(f"layer_table(model, (0, 2, 5, 5)): an empty batch has 0 activations "
                           f"and 0 multiply-adds, got totals {totals}.")


# --- AlexNet ---------------------------------------------------------------------------------

# The lecture's and the paper's sizes after each layer of features (C, H, W), ReLUs included.
ALEXNET_SIZES = [(96, 55, 55), (96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 27, 27),
                 (256, 13, 13), (384, 13, 13), (384, 13, 13), (384, 13, 13), (384, 13, 13),
                 (256, 13, 13), (256, 13, 13), (256, 6, 6)]
ALEXNET_WEIGHTS = [(96, 3, 11, 11), (256, 96, 5, 5), (384, 256, 3, 3), (384, 384, 3, 3),
                   (256, 384, 3, 3)]
ALEXNET_GROUPED = [False, True, False, True, True]  # CONV2, CONV4, CONV5 split over 2 GPUs


@pytest.mark.points(4)
@pytest.mark.timeout(30)
@pytest.mark.parametrize("groups, num_classes", [(1, 1000), (2, 10)])
def test_alexnet_sizes_parameters_and_macs(student, groups, num_classes):
    """AlexNet(num_classes, groups): the lecture's activation sizes after every layer
    (55x55x96, 27x27x96, ...), its parameters (62,378,344 single tower, 60,965,224 split
    over two GPUs with 1,000 classes) and multiply-adds (724 M with groups=2)."""
    torch.manual_seed(3)
    model = student.AlexNet(num_classes=num_classes, groups=groups)
    try:
        model.eval()
        x = torch.randn(2, 3, 227, 227)
        layers = list(model.features)
        if len(layers) != len(ALEXNET_SIZES):
            raise CheckFailure(f"AlexNet.features has {len(layers)} modules, expected 13 (5 "
                               f"conv, 5 ReLU, 3 max pools; see the docstring).")
        out = x
        for i, (layer, size) in enumerate(zip(layers, ALEXNET_SIZES, strict=True)):
            with torch.no_grad():  # the student's side too: no graph, in-place ReLUs allowed
                out = layer(out)
            if tuple(out.shape) != (2, *size):
                raise CheckFailure(
                    f"AlexNet.features[{i}] outputs {tuple(out.shape)} for a (2, 3, 227, 227) "
                    f"input; the lecture's size there is {size[1]}x{size[2]}x{size[0]}.")
        with torch.no_grad():
            logits = model(x.clone())
        if tuple(logits.shape) != (2, num_classes):
            raise CheckFailure(f"AlexNet(num_classes={num_classes})(x) has shape "
                               f"{tuple(logits.shape)}, expected (2, {num_classes}).")
        info = describe(student, model)
    finally:
        free(model)
    shapes = {p["name"]: tuple(p["shape"]) for p in info["parameters"]}
    convs = [n for n, s in shapes.items() if n.startswith("features.") and len(s) == 4]
    macs = 0
    conv_outputs = [ALEXNET_SIZES[i] for i in (0, 3, 6, 8, 10)]
    for name, (f, c, k, _), grouped, out in zip(convs, ALEXNET_WEIGHTS, ALEXNET_GROUPED,
                                                conv_outputs, strict=False):
        g = groups if grouped else 1
        if shapes[name] != (f, c // g, k, k):
            raise CheckFailure(f"AlexNet(groups={groups}): {name} has shape {shapes[name]}, "
                               f"expected {(f, c // g, k, k)} (groups={g} for that layer).")
        macs += math.prod(out) * (c // g) * k * k
    fc = [(9216, 4096), (4096, 4096), (4096, num_classes)]
    macs += sum(a * b for a, b in fc)
    expected = sum(f * (c // (groups if gr else 1)) * k * k + f
                   for (f, c, k, _), gr in zip(ALEXNET_WEIGHTS, ALEXNET_GROUPED, strict=True))
    expected += sum(a * b + b for a, b in fc)
    if n_params(info) != expected:
        raise CheckFailure(f"AlexNet(num_classes={num_classes}, groups={groups}) has "
                           f"{n_params(info):,} parameters, expected {expected:,}.")
    if len(convs) != 5:
        raise CheckFailure(f"AlexNet.features should hold 5 convolutions, found {convs}.")
    expected_macs = 724_406_816 + 4096 * (num_classes - 1000)  # 724 M with 1,000 classes
    if groups == 2 and macs != expected_macs:
        raise CheckFailure(f"AlexNet(groups=2, num_classes={num_classes}): {macs:,} "
                           f"multiply-adds from its layers, expected {expected_macs:,}.")


ALEXNET_FEATURES = ["Conv2d", "ReLU", "MaxPool2d", "Conv2d", "ReLU", "MaxPool2d", "Conv2d",
                    "ReLU", "Conv2d", "ReLU", "Conv2d", "ReLU", "MaxPool2d"]
ALEXNET_CLASSIFIER = ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]


@pytest.mark.points(2)
@pytest.mark.timeout(30)
def test_alexnet_defaults_and_layer_types(student):
    """AlexNet() is the single-tower network for 1,000 classes (62,378,344 parameters), with
    the layers of the docstring in order: a dropout before FC6 and FC7, a ReLU after each."""
    model = student.AlexNet()
    try:
        info = describe(student, model)
    finally:
        free(model)
    if n_params(info) != 62_378_344:
        raise CheckFailure(f"AlexNet() has {n_params(info):,} parameters, expected 62,378,344 "
                           f"(the defaults are num_classes=1000, groups=1).")
    for part, expected in (("features", ALEXNET_FEATURES), ("classifier", ALEXNET_CLASSIFIER)):
        got = [m["type"] for m in info["modules"]
               if m["name"].startswith(part + ".") and m["name"].count(".") == 1]
        if got != expected:
            raise CheckFailure(f"AlexNet().{part} holds {got}, expected {expected} (the "
                               f"docstring's layers, in order).")


# --- VGG16 -----------------------------------------------------------------------------------


def meta_torchvision(builder, **kwargs):
    with torch.device("meta"):
        return getattr(torchvision.models, builder)(**kwargs)


def filled(model, seed):
    """A meta model given real, seeded weights (uniform, scaled by fan-in like Kaiming's)."""
    model = model.to_empty(device="cpu")
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            fan_in = p[0].numel() if p.dim() > 1 else 100
            bound = math.sqrt(6.0 / fan_in) if p.dim() > 1 else 0.1
            p.uniform_(-bound, bound, generator=g)
        for name, b in model.named_buffers():
            b.copy_(torch.ones_like(b) if "var" in name else torch.zeros_like(b))
    return model


def compare_layout(what, info, reference_model):
    shapes = {p["name"]: list(p["shape"]) for p in info["parameters"]}
    expected = {k: list(v.shape) for k, v in reference_model.state_dict().items()}
    got_keys = list(info["state_keys"])
    if sorted(got_keys) != sorted(expected):
        missing = sorted(set(expected) - set(got_keys))[:6]
        extra = sorted(set(got_keys) - set(expected))[:6]
        raise CheckFailure(f"{what}: its state_dict keys differ from torchvision's: missing "
                           f"{missing}, unexpected {extra} (follow the docstring's layout).")
    for key, shape in expected.items():
        if shapes.get(key, shape) != shape:
            raise CheckFailure(f"{what}: {key} has shape {shapes[key]}, torchvision's has "
                               f"{shape}.")


@pytest.mark.points(5)
@pytest.mark.timeout(60)
def test_vgg16_loads_torchvision_weights(student, seed):
    """vgg16(): torchvision's layer names and shapes, 138,357,544 parameters, and with
    torchvision's (seeded) weights loaded, torchvision's outputs in eval mode on a small
    batch (48x32 images: the adaptive average pool does the rest)."""
    reference_model = meta_torchvision("vgg16", weights=None)
    model = student.vgg16()
    try:
        info = describe(student, model)
        compare_layout("vgg16()", info, reference_model)
        if n_params(info) != 138_357_544:
            raise CheckFailure(f"vgg16() has {n_params(info):,} parameters, expected "
                               f"138,357,544.")
        ours = filled(reference_model, seed).eval()
        # The classifier's weights are too large for one message to the student's process
        # (FC6 alone: 411 MB): both sides draw them with torch's own reset_parameters from
        # the same generator state (the sandbox gives the student's process the grader's
        # random state with each request); the convolutions' weights are sent.
        fc_layers = {"classifier.0", "classifier.3", "classifier.6"}
        for i, name in enumerate(sorted(fc_layers)):
            reset = model.classifier[int(name[-1])].reset_parameters
            torch.manual_seed(seed + i)
            reset()
            torch.manual_seed(seed + i)
            ours.classifier[int(name[-1])].reset_parameters()
        sent = {k: v for k, v in ours.state_dict().items() if k.rpartition(".")[0] not in fc_layers}
        missing, unexpected = load_state(student, model, sent)
        missing = [k for k in missing if k.rpartition(".")[0] not in fc_layers]
        if missing or unexpected:
            raise CheckFailure(f"torchvision's vgg16 state_dict does not fit vgg16(): missing "
                               f"{missing[:5]}, unexpected {unexpected[:5]}.")
        model.eval()
        x = torch.randn(2, 3, 48, 32, generator=torch.Generator().manual_seed(seed))
        with torch.no_grad():
            expected = ours(x)
            got = model(x.clone())
        assert_close("vgg16() with torchvision's weights, in eval mode, on a (2, 3, 48, 32) "
                     "batch, vs torchvision.models.vgg16", got, expected, rtol=1e-4, atol=1e-5)
    finally:
        free(model)


@pytest.mark.points(2)
@pytest.mark.timeout(40)
def test_vgg16_num_classes_and_small_input(student):
    """vgg16(num_classes=10): 134,301,514 parameters, its four named children, outputs (N, 10)
    for 40x36 images."""
    reference_model = meta_torchvision("vgg16", weights=None, num_classes=10)
    model = student.vgg16(num_classes=10)
    try:
        info = describe(student, model)
        compare_layout("vgg16(num_classes=10)", info, reference_model)
        children = [m["name"] for m in info["modules"] if m["name"] and "." not in m["name"]]
        if children != ["features", "avgpool", "flatten", "classifier"]:
            raise CheckFailure(f"vgg16(num_classes=10)'s children are {children}, expected "
                               f"['features', 'avgpool', 'flatten', 'classifier'], in that order "
                               f"(the docstring's names, the parameter-free ones included).")
        expected = sum(p.numel() for p in reference_model.parameters())
        if n_params(info) != expected:
            raise CheckFailure(f"vgg16(num_classes=10) has {n_params(info):,} parameters, "
                               f"expected {expected:,}.")
        model.eval()
        with torch.no_grad():
            out = model(torch.randn(3, 3, 40, 36))
        if tuple(out.shape) != (3, 10):
            raise CheckFailure(f"vgg16(num_classes=10) on a (3, 3, 40, 36) batch returned "
                               f"shape {tuple(out.shape)}, expected (3, 10).")
    finally:
        free(model)


# --- Inception and GoogLeNet -----------------------------------------------------------------


def paper_inception(cin, c1, c3r, c3, c5r, c5, pp):
    """The paper's module as the grader builds it (a ModuleDict keeps the branch names)."""
    return nn.ModuleDict({
        "branch1": nn.Sequential(nn.Conv2d(cin, c1, 1), nn.ReLU()),
        "branch2": nn.Sequential(nn.Conv2d(cin, c3r, 1), nn.ReLU(),
                                 nn.Conv2d(c3r, c3, 3, padding=1), nn.ReLU()),
        "branch3": nn.Sequential(nn.Conv2d(cin, c5r, 1), nn.ReLU(),
                                 nn.Conv2d(c5r, c5, 5, padding=2), nn.ReLU()),
        "branch4": nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                 nn.Conv2d(cin, pp, 1), nn.ReLU())})


def inception_forward(branches, x):
    return torch.cat([branches[f"branch{i}"](x) for i in (1, 2, 3, 4)], dim=1)


def inception_params(cin, c1, c3r, c3, c5r, c5, pp):
    return (cin * c1 + c1 + cin * c3r + c3r + 9 * c3r * c3 + c3 + cin * c5r + c5r
            + 25 * c5r * c5 + c5 + cin * pp + pp)


@pytest.mark.points(4)
@pytest.mark.parametrize("config", [(12, 5, 4, 6, 3, 7, 8), (10, 4, 3, 4, 2, 4, 4)])
def test_inception_module_against_the_papers_module(student, seed, config):
    """InceptionModule(*config): the branch names and shapes of the docstring, its
    parameters, and (the grader's weights loaded) the paper's module's output, channels
    concatenated in the order 1x1, 3x3, 5x5, pool."""
    torch.manual_seed(seed)
    ours = paper_inception(*config).eval()
    model = student.InceptionModule(*config)
    info = describe(student, model)
    if n_params(info) != inception_params(*config):
        raise CheckFailure(f"InceptionModule{config} has {n_params(info):,} parameters, "
                           f"expected {inception_params(*config):,} (1x1 reductions before the "
                           f"3x3 and 5x5 convolutions, a 1x1 projection after the pool, biases).")
    missing, unexpected = load_state(student, model, ours.state_dict())
    if missing or unexpected:
        raise CheckFailure(f"InceptionModule{config}: the paper's layout "
                           f"(branch1..branch4 as in the docstring) does not load: missing "
                           f"{missing[:5]}, unexpected {unexpected[:5]}.")
    x = torch.randn(2, config[0], 9, 7)
    with torch.no_grad():
        expected = inception_forward(ours, x)
    got = model(x.clone())
    assert_close(f"InceptionModule{config}(x) for x of shape (2, {config[0]}, 9, 7) (channels "
                 f"concatenated along dim 1)", got, expected, rtol=1e-5, atol=1e-6)


GOOGLENET_NAMES = ["conv1", "maxpool1", "conv2", "conv3", "maxpool2", "inception3a",
                   "inception3b", "maxpool3", "inception4a", "inception4b", "inception4c",
                   "inception4d", "inception4e", "maxpool4", "inception5a", "inception5b",
                   "avgpool", "flatten", "dropout", "fc"]
# Szegedy et al. 2015, Table 1: the output size after each named stage for a 224x224 input.
GOOGLENET_SIZES = [(64, 112, 112), (64, 56, 56), (64, 56, 56), (192, 56, 56), (192, 28, 28),
                   (256, 28, 28), (480, 28, 28), (480, 14, 14), (512, 14, 14), (512, 14, 14),
                   (512, 14, 14), (528, 14, 14), (832, 14, 14), (832, 7, 7), (832, 7, 7),
                   (1024, 7, 7), (1024, 1, 1), (1024,), (1024,)]


@pytest.mark.points(4)
@pytest.mark.timeout(30)
def test_googlenet_table1_sizes(student):
    """googlenet(): its stages in order, and Table 1's sizes after each one at 224x224
    (112, 56, 28, 14, 7: the max pools round up)."""
    model = student.googlenet()
    info = describe(student, model)
    children = [m["name"] for m in info["modules"] if m["name"] and "." not in m["name"]]
    if children != GOOGLENET_NAMES:
        raise CheckFailure(f"googlenet()'s children are {children}, expected "
                           f"{GOOGLENET_NAMES}.")
    model.eval()
    out = torch.randn(1, 3, 224, 224)
    for name, size in zip(GOOGLENET_NAMES, GOOGLENET_SIZES + [(1000,)], strict=True):
        with torch.no_grad():
            out = getattr(model, name)(out)
        if tuple(out.shape) != (1, *size):
            raise CheckFailure(f"googlenet(): the output of {name} has shape "
                               f"{tuple(out.shape)} for a 224x224 image; Table 1 says "
                               f"{(1, *size)}.")


@pytest.mark.points(3)
def test_googlenet_parameters_vs_torchvision(student):
    """googlenet(num_classes=10)'s parameters: torchvision's GoogLeNet (no auxiliary heads)
    less its batch norms, plus the convolutions' biases, with 5x5 kernels where torchvision
    has 3x3 ones (a known slip of torchvision's); and each inception module's count."""
    tv = meta_torchvision("googlenet", weights=None, aux_logits=False, init_weights=False,
                          num_classes=10)
    expected = sum(p.numel() for p in tv.parameters())
    for name, m in tv.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            expected -= m.weight.numel() + m.bias.numel()
        elif isinstance(m, nn.Conv2d):
            expected += m.out_channels  # the paper's convolutions have biases
            if name.endswith("branch3.1.conv"):  # torchvision's 3x3 in the "5x5" branch
                expected += m.weight.numel() // 9 * 16
    model = student.googlenet(num_classes=10)
    info = describe(student, model)
    if n_params(info) != expected:
        raise CheckFailure(f"googlenet(num_classes=10) has {n_params(info):,} parameters, "
                           f"expected {expected:,}.")
    per_module = {}
    for p in info["parameters"]:
        top = p["name"].split(".")[0]
        per_module[top] = per_module.get(top, 0) + math.prod(p["shape"])
    configs = {"inception3a": (192, 64, 96, 128, 16, 32, 32),
               "inception4d": (512, 112, 144, 288, 32, 64, 64),
               "inception5b": (832, 384, 192, 384, 48, 128, 128)}
    for name, config in configs.items():
        if per_module.get(name) != inception_params(*config):
            raise CheckFailure(f"googlenet(): {name} has {per_module.get(name)} parameters, "
                               f"expected {inception_params(*config):,} "
                               f"(InceptionModule{config}).")


@pytest.mark.points(3)
@pytest.mark.timeout(40)
def test_googlenet_stage_by_stage(student, reference, seed):
    """googlenet(num_classes=10) with the reference's weights: each named stage, fed the
    reference's output of the stage before, gives the reference's output (a ReLU after every
    convolution of the stem, the modules' concatenations, the pools, the classifier)."""
    model = student.googlenet(num_classes=10)
    try:
        torch.manual_seed(seed)
        ours = reference.googlenet(num_classes=10).eval()
        missing, unexpected = load_state(student, model, ours.state_dict())
        if missing or unexpected:
            raise CheckFailure(f"googlenet(num_classes=10): the docstring's layout does not "
                               f"load: missing {missing[:5]}, unexpected {unexpected[:5]}.")
        model.eval()
        h = torch.randn(2, 3, 64, 48, generator=torch.Generator().manual_seed(seed))
        for name in GOOGLENET_NAMES:
            with torch.no_grad():
                expected = getattr(ours, name)(h)
                got = getattr(model, name)(h.clone())
            assert_close(f"googlenet(num_classes=10).{name}(h) in eval mode, h the output of "
                         f"the stages before it (a (2, 3, 64, 48) batch at the start)", got,
                         expected, rtol=1e-4, atol=1e-5 * (1 + float(expected.abs().max())))
            h = expected
    finally:
        free(model)


# --- receptive fields and VGG's 3x3 argument -------------------------------------------------


def brute_force_field(layers):
    """Follow one output pixel back to the input pixels it reads, layer by layer."""
    lo = hi = 0
    for kernel, stride in reversed(layers):
        lo, hi = lo * stride, hi * stride + kernel - 1
    return hi - lo + 1


@pytest.mark.points(3)
def test_receptive_field_brute_force(student, rng):
    """receptive_field on random stacks of (kernel, stride) layers vs a brute-force walk."""
    cases = [[], [(5, 1)], [(2, 2), (2, 2), (2, 2)], [(7, 2), (3, 2), (3, 1), (3, 1)],
             [(1, 3), (3, 3), (1, 1)]]
    cases += [[(int(rng.integers(1, 8)), int(rng.integers(1, 4)))
               for _ in range(int(rng.integers(1, 7)))] for _ in range(20)]
    for layers in cases:
        got = student.receptive_field([tuple(layer) for layer in layers])
        expected = brute_force_field(layers)
        if got != expected:
            raise CheckFailure(f"receptive_field({layers}) = {got}, expected {expected} (each "
                               f"layer adds (kernel - 1) times the PRODUCT of the earlier "
                               f"strides).")


@pytest.mark.points(1)
@pytest.mark.parametrize("kernel, n_layers, channels", [(3, 2, 10), (5, 1, 7), (3, 4, 3),
                                                        (1, 3, 6), (7, 2, 5)])
def test_stacked_conv_params(student, kernel, n_layers, channels):
    """stacked_conv_params against torch's Conv2d parameter counts and a brute-force field."""
    with torch.device("meta"):
        stack = nn.Sequential(*[nn.Conv2d(channels, channels, kernel, bias=False)
                                for _ in range(n_layers)])
    expected = (brute_force_field([(kernel, 1)] * n_layers),
                sum(p.numel() for p in stack.parameters()))
    got = student.stacked_conv_params(kernel, n_layers, channels)
    if not isinstance(got, (tuple, list)) or len(got) != 2 or tuple(got) != expected:
        raise CheckFailure(f"stacked_conv_params({kernel}, {n_layers}, {channels}) = {got!r}, "
                           f"expected (field, weights) = {expected}.")


# --- training_memory -------------------------------------------------------------------------

MEMORY_SPEC = seq(spec("Conv2d", 3, 4, 3, padding=1), spec("ReLU", inplace=True),
                  spec("MaxPool2d", 2), spec("Flatten"), spec("Linear", 4 * 5 * 3, 6),
                  spec("ReLU"))


def memory_by_hand(frozen_conv, states, b, batch):
    """Hand counts for MEMORY_SPEC on (3, 10, 7) images (3x3 conv with padding 1, pool 2)."""
    conv, linear = 4 * 3 * 9 + 4, 60 * 6 + 6
    trainable = linear + (0 if frozen_conv else conv)
    per_image = 3 * 10 * 7 + 4 * 10 * 7 + 4 * 5 * 3 + 6 + 6  # input, conv, pool, fc, relu
    return {"params": (conv + linear) * b, "grads": trainable * b,
            "optimizer": states * trainable * b, "activations": batch * per_image * b}


@pytest.mark.points(4)
@pytest.mark.parametrize("optimizer, states", [("sgd", 0), ("momentum", 1), ("adam", 2)])
def test_training_memory_hand_counts(student, seed, optimizer, states):
    """training_memory: parameters, gradients, optimizer state (0, 1, 2 values per trainable
    parameter) and activations, by hand, with a frozen first layer and float64 values."""
    ours = seeded(MEMORY_SPEC, seed)
    theirs = lend(student, MEMORY_SPEC, ours.state_dict())
    for frozen in (False, True):
        if frozen:
            theirs[0].requires_grad_(False)
        for dtype, b, batch in ((None, 4, 5), (torch.float64, 8, 3)):
            args = (theirs, (3, 10, 7), batch, optimizer)
            args += () if dtype is None else (dtype,)
            got = student.training_memory(*args)
            what = (f"training_memory(model, (3, 10, 7), {batch}, {optimizer!r}"
                    f"{'' if dtype is None else ', torch.float64'})"
                    f"{' with the first conv frozen' if frozen else ''}")
            if not isinstance(got, dict):
                raise CheckFailure(f"{what} must return a dict.")
            expected = memory_by_hand(frozen, states, b, batch)
            expected["total"] = sum(expected.values())
            expected["max_batch_size"] = None
            for key, value in expected.items():
                if got.get(key, "missing") != value:
                    raise CheckFailure(f"{what}[{key!r}] = {got.get(key, 'missing')!r}, "
                                       f"expected {value!r}. Expected: {expected}.")


@pytest.mark.points(3)
def test_training_memory_max_batch_size(student, seed):
    """max_batch_size: the largest batch that fits, exactly at the edge, and 0 when not even
    one image fits; an unknown optimizer raises ValueError."""
    ours = seeded(MEMORY_SPEC, seed)
    theirs = lend(student, MEMORY_SPEC, ours.state_dict())
    hand = memory_by_hand(False, 2, 4, 1)
    fixed, per_image = hand["params"] + hand["grads"] + hand["optimizer"], hand["activations"]
    for memory, expected in ((fixed + 7 * per_image, 7), (fixed + 7 * per_image - 1, 6),
                             (fixed + 12 * per_image + per_image // 2, 12), (fixed - 1, 0),
                             (fixed + per_image - 1, 0)):
        got = student.training_memory(theirs, (3, 10, 7), 2, "adam", memory_bytes=memory)
        value = got.get("max_batch_size", "missing") if isinstance(got, dict) else got
        if value != expected:
            raise CheckFailure(
                f"training_memory(model, (3, 10, 7), 2, 'adam', memory_bytes={memory:,}) "
                f"gives max_batch_size {value!r}, expected {expected} (parameters + gradients "
                f"+ Adam's state = {fixed:,} bytes, {per_image:,} bytes of activations per "
                f"image).")
    got = student.training_memory(theirs, (3, 10, 7), 5)
    got = got if isinstance(got, dict) else {}
    for key, value in memory_by_hand(False, 0, 4, 5).items():
        if got.get(key, "missing") != value:
            raise CheckFailure(f"training_memory(model, (3, 10, 7), 5) with the defaults (plain "
                               f"SGD: no optimizer state; float32: 4 bytes per value) gives "
                               f"{key!r} = {got.get(key, 'missing')!r}, expected {value!r}.")
    assert_raises("training_memory(..., optimizer='rmsprop')", ValueError,
                  student.training_memory, theirs, (3, 10, 7), 2, "rmsprop")
