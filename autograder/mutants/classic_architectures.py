"""Seeded student bugs for Lab 07 (the classic architectures, counted).

Each is a counting or building mistake that students make (or one step away from one):
the issue's list (groups, bias, floor vs ceil, containers, shared modules, bits and 8-byte
floats, strides added, the inception module's axis and reductions, VGG's pools, Adam's
two states) and a few more. The selfcheck proves that the hidden checks catch every one.

A mutant of layer_table is a whole (compact) layer_table with one bug; a mutant that only
changes the result of the reference takes the reference as a default argument (bound when
the mutant is defined, before the name is rebound to the mutant).
"""

from collections import OrderedDict  # noqa: F401 - used by the mutants' sources

import torch
from torch import nn

from autograder.mutants import mutant
from solutions.classic_architectures import (
    AlexNet,
    InceptionModule,
    googlenet,
    layer_table,
    receptive_field,
    training_memory,
    vgg16,
)

# --- layer_table -----------------------------------------------------------------------------


@mutant("layer_table: the MACs of a grouped conv are not divided by groups",
        replaces="layer_table")
def layer_table_groups_ignored(model, input_shape, dtype=torch.float32):
    b = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    rows, seen = [], set()

    def hook(module, inputs, output):
        fresh = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * module.in_channels * kh * kw
        elif isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        else:
            macs = 0
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in fresh), "macs": macs,
                     "in_place": output.untyped_storage().data_ptr()
                     == inputs[0].untyped_storage().data_ptr()})

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    x = torch.zeros(tuple(input_shape))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for m, training in modes:
        m.training = training
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    return {"rows": rows, "totals": {
        "activations": acts, "params": params, "macs": sum(r["macs"] for r in rows),
        "activation_bytes": acts * b, "param_bytes": params * b,
        "total_bytes": (acts + params) * b}}


@mutant("layer_table: the bias counts one multiply-add per output value",
        replaces="layer_table")
def layer_table_bias_in_macs(model, input_shape, dtype=torch.float32):
    b = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    rows, seen = [], set()

    def hook(module, inputs, output):
        fresh = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups * kh * kw
                                     + (module.bias is not None))
        elif isinstance(module, nn.Linear):
            macs = output.numel() * (module.in_features + (module.bias is not None))
        else:
            macs = 0
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in fresh), "macs": macs,
                     "in_place": output.untyped_storage().data_ptr()
                     == inputs[0].untyped_storage().data_ptr()})

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    x = torch.zeros(tuple(input_shape))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for m, training in modes:
        m.training = training
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    return {"rows": rows, "totals": {
        "activations": acts, "params": params, "macs": sum(r["macs"] for r in rows),
        "activation_bytes": acts * b, "param_bytes": params * b,
        "total_bytes": (acts + params) * b}}


@mutant("layer_table: the MACs of a conv are those of ONE image (batch forgotten)",
        replaces="layer_table")
def layer_table_macs_per_image(model, input_shape, dtype=torch.float32):
    b = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    rows, seen = [], set()

    def hook(module, inputs, output):
        fresh = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output[0].numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        else:
            macs = 0
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in fresh), "macs": macs,
                     "in_place": output.untyped_storage().data_ptr()
                     == inputs[0].untyped_storage().data_ptr()})

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    x = torch.zeros(tuple(input_shape))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for m, training in modes:
        m.training = training
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    return {"rows": rows, "totals": {
        "activations": acts, "params": params, "macs": sum(r["macs"] for r in rows),
        "activation_bytes": acts * b, "param_bytes": params * b,
        "total_bytes": (acts + params) * b}}


@mutant("layer_table: the MACs of a Linear layer are its weights (in x out), whatever the "
        "batch and the leading dimensions", replaces="layer_table")
def layer_table_linear_weights_as_macs(model, input_shape, dtype=torch.float32):
    b = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    rows, seen = [], set()

    def hook(module, inputs, output):
        fresh = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            macs = module.in_features * module.out_features
        else:
            macs = 0
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in fresh), "macs": macs,
                     "in_place": output.untyped_storage().data_ptr()
                     == inputs[0].untyped_storage().data_ptr()})

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    x = torch.zeros(tuple(input_shape))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for m, training in modes:
        m.training = training
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    return {"rows": rows, "totals": {
        "activations": acts, "params": params, "macs": sum(r["macs"] for r in rows),
        "activation_bytes": acts * b, "param_bytes": params * b,
        "total_bytes": (acts + params) * b}}


@mutant("layer_table: hooks on every module, containers included (activations and "
        "parameters counted twice or more)", replaces="layer_table")
def layer_table_counts_containers(model, input_shape, dtype=torch.float32):
    b = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    rows = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        else:
            macs = 0
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in module.parameters(recurse=False)),
                     "macs": macs, "in_place": output.untyped_storage().data_ptr()
                     == inputs[0].untyped_storage().data_ptr()})

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in names]
    x = torch.zeros(tuple(input_shape))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for m, training in modes:
        m.training = training
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    return {"rows": rows, "totals": {
        "activations": acts, "params": params, "macs": sum(r["macs"] for r in rows),
        "activation_bytes": acts * b, "param_bytes": params * b,
        "total_bytes": (acts + params) * b}}


@mutant("layer_table: a module called twice (shared weights) counts its parameters twice",
        replaces="layer_table")
def layer_table_shared_counted_twice(model, input_shape, dtype=torch.float32):
    b = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    rows = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        else:
            macs = 0
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in module.parameters()), "macs": macs,
                     "in_place": output.untyped_storage().data_ptr()
                     == inputs[0].untyped_storage().data_ptr()})

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    x = torch.zeros(tuple(input_shape))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for m, training in modes:
        m.training = training
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    return {"rows": rows, "totals": {
        "activations": acts, "params": params, "macs": sum(r["macs"] for r in rows),
        "activation_bytes": acts * b, "param_bytes": params * b,
        "total_bytes": (acts + params) * b}}


@mutant("layer_table: in-place layers (ReLU(inplace=True), Flatten's view) counted as new "
        "memory", replaces="layer_table")
def layer_table_in_place_ignored(model, input_shape, dtype=torch.float32, _reference=layer_table):
    table = _reference(model, input_shape, dtype)
    b = torch.empty((), dtype=dtype).element_size()
    for row in table["rows"]:
        row["in_place"] = False
    totals = table["totals"]
    totals["activations"] = (int(torch.Size(input_shape).numel())
                             + sum(r["activations"] for r in table["rows"]))
    totals["activation_bytes"] = totals["activations"] * b
    totals["total_bytes"] = totals["activation_bytes"] + totals["param_bytes"]
    return table


@mutant("layer_table: the input is not counted in the total activations",
        replaces="layer_table")
def layer_table_input_not_counted(model, input_shape, dtype=torch.float32,
                                  _reference=layer_table):
    table = _reference(model, input_shape, dtype)
    b = torch.empty((), dtype=dtype).element_size()
    totals = table["totals"]
    totals["activations"] -= int(torch.Size(input_shape).numel())
    totals["activation_bytes"] = totals["activations"] * b
    totals["total_bytes"] = totals["activation_bytes"] + totals["param_bytes"]
    return table


@mutant("layer_table: memory in bits (x 32), not bytes", replaces="layer_table")
def layer_table_bits(model, input_shape, dtype=torch.float32, _reference=layer_table):
    table = _reference(model, input_shape, dtype)
    bits = 8 * torch.empty((), dtype=dtype).element_size()
    totals = table["totals"]
    totals["activation_bytes"] = totals["activations"] * bits
    totals["param_bytes"] = totals["params"] * bits
    totals["total_bytes"] = totals["activation_bytes"] + totals["param_bytes"]
    return table


@mutant("layer_table: 8 bytes per value whatever the dtype (Python floats)",
        replaces="layer_table")
def layer_table_eight_bytes(model, input_shape, dtype=torch.float32, _reference=layer_table):
    table = _reference(model, input_shape, dtype)
    totals = table["totals"]
    totals["activation_bytes"] = totals["activations"] * 8
    totals["param_bytes"] = totals["params"] * 8
    totals["total_bytes"] = totals["activation_bytes"] + totals["param_bytes"]
    return table


@mutant("layer_table: 4 bytes per value whatever the dtype argument", replaces="layer_table")
def layer_table_dtype_ignored(model, input_shape, dtype=torch.float32, _reference=layer_table):
    return _reference(model, input_shape)


@mutant("layer_table: the pass runs in the mode the model came in (train mode: BatchNorm "
        "updates its statistics, a batch-of-1 BatchNorm1d fails)", replaces="layer_table")
def layer_table_no_eval(model, input_shape, dtype=torch.float32):
    b = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    rows, seen = [], set()

    def hook(module, inputs, output):
        fresh = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * module.in_channels // module.groups * kh * kw
        elif isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        else:
            macs = 0
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in fresh), "macs": macs,
                     "in_place": output.untyped_storage().data_ptr()
                     == inputs[0].untyped_storage().data_ptr()})

    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    x = torch.zeros(tuple(input_shape))
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    return {"rows": rows, "totals": {
        "activations": acts, "params": params, "macs": sum(r["macs"] for r in rows),
        "activation_bytes": acts * b, "param_bytes": params * b,
        "total_bytes": (acts + params) * b}}


@mutant("layer_table: puts the model in eval mode and leaves it there", replaces="layer_table")
def layer_table_leaves_eval(model, input_shape, dtype=torch.float32, _reference=layer_table):
    table = _reference(model, input_shape, dtype)
    model.eval()
    return table


# --- AlexNet ---------------------------------------------------------------------------------


@mutant("AlexNet: groups ignored (always the single tower)", replaces="AlexNet")
class AlexNetNoGroups(AlexNet):
    def __init__(self, num_classes=1000, groups=1):
        super().__init__(num_classes=num_classes, groups=1)


@mutant("AlexNet: groups applied to CONV3 too (it sees both GPUs in the paper)",
        replaces="AlexNet")
class AlexNetGroupsEverywhere(AlexNet):
    def __init__(self, num_classes=1000, groups=1):
        super().__init__(num_classes=num_classes, groups=groups)
        if groups > 1:
            self.features[6] = nn.Conv2d(256, 384, 3, padding=1, groups=groups)


@mutant("AlexNet: CONV1 with padding 2 (torchvision's), 56x56 maps after it",
        replaces="AlexNet")
class AlexNetPadded(AlexNet):
    def __init__(self, num_classes=1000, groups=1):
        super().__init__(num_classes=num_classes, groups=groups)
        self.features[0] = nn.Conv2d(3, 96, 11, stride=4, padding=2)


# --- vgg16 -----------------------------------------------------------------------------------


@mutant("vgg16: a 2x2 pool after every conv", replaces="vgg16")
def vgg16_pool_every_conv(num_classes=1000):
    config = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    layers, channels = [], 3
    for v in config:
        layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True),
                   nn.MaxPool2d(2, stride=2, ceil_mode=True)]
        channels = v
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(4096, num_classes))
    return nn.Sequential(OrderedDict([
        ("features", nn.Sequential(*layers)), ("avgpool", nn.AdaptiveAvgPool2d((7, 7))),
        ("flatten", nn.Flatten()), ("classifier", classifier)]))


@mutant("vgg16: the convolutions without padding (the maps shrink by 2 at each)",
        replaces="vgg16")
def vgg16_no_padding(num_classes=1000, _reference=vgg16):
    model = _reference(num_classes)
    for i, m in enumerate(model.features):
        if isinstance(m, nn.Conv2d):
            model.features[i] = nn.Conv2d(m.in_channels, m.out_channels, 3)
    return model


@mutant("vgg16: the classifier's layers in another order (Dropout before ReLU), so "
        "torchvision's weights do not load", replaces="vgg16")
def vgg16_classifier_order(num_classes=1000, _reference=vgg16):
    model = _reference(num_classes)
    model.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True),
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(True),
        nn.Linear(4096, num_classes))
    return model


@mutant("vgg16: the number of classes ignored (always 1,000 outputs)", replaces="vgg16")
def vgg16_num_classes_ignored(num_classes=1000, _reference=vgg16):
    return _reference()


# --- InceptionModule and googlenet -----------------------------------------------------------


@mutant("InceptionModule: the branches concatenated along the height (dim 2)",
        replaces="InceptionModule")
class InceptionWrongAxis(InceptionModule):
    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)],
                         dim=2)


@mutant("InceptionModule: no 1x1 reduction before the 5x5 convolution",
        replaces="InceptionModule")
class InceptionNoReduction(InceptionModule):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.branch3 = nn.Sequential(nn.Conv2d(in_channels, ch5x5, 5, padding=2), nn.ReLU(True))


@mutant("InceptionModule: the branches concatenated in another order (pool first)",
        replaces="InceptionModule")
class InceptionWrongOrder(InceptionModule):
    def forward(self, x):
        return torch.cat([self.branch4(x), self.branch1(x), self.branch2(x), self.branch3(x)],
                         dim=1)


@mutant("InceptionModule: no 1x1 projection after the pool (all the input channels pass)",
        replaces="InceptionModule")
class InceptionNoPoolProjection(InceptionModule):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1))


@mutant("InceptionModule: no ReLU after the 1x1 reductions", replaces="InceptionModule")
class InceptionNoReductionReLU(InceptionModule):
    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        super().__init__(in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
        self.branch2[1] = nn.Identity()
        self.branch3[1] = nn.Identity()


@mutant("googlenet: max pools rounding down (no ceil_mode): 55x55 after maxpool1, not 56",
        replaces="googlenet")
def googlenet_floor_pools(num_classes=1000, _reference=googlenet):
    model = _reference(num_classes)
    for name in ("maxpool1", "maxpool2", "maxpool3", "maxpool4"):
        setattr(model, name, nn.MaxPool2d(3, stride=2))
    return model


@mutant("googlenet: inception 4c built from 4b's row of Table 1 (same 512 outputs)",
        replaces="googlenet")
def googlenet_wrong_table_row(num_classes=1000, _reference=googlenet):
    model = _reference(num_classes)
    model.inception4c = InceptionModule(512, 160, 112, 224, 24, 64, 64)
    return model


# --- receptive_field and stacked_conv_params -------------------------------------------------


@mutant("receptive_field: strides added instead of multiplied", replaces="receptive_field")
def receptive_field_adds_strides(layers):
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump += stride - 1  # right for one strided layer, wrong for two
    return field


@mutant("receptive_field: each layer's stride applied to its own kernel",
        replaces="receptive_field")
def receptive_field_own_stride(layers):
    field, jump = 1, 1
    for kernel, stride in layers:
        jump *= stride
        field += (kernel - 1) * jump
    return field


@mutant("receptive_field: the sum of the kernels (strides ignored)", replaces="receptive_field")
def receptive_field_no_strides(layers, _reference=receptive_field):
    return _reference([(kernel, 1) for kernel, _ in layers])


@mutant("stacked_conv_params: the field is n_layers x kernel", replaces="stacked_conv_params")
def stacked_conv_params_field(kernel, n_layers, channels):
    return n_layers * kernel, n_layers * kernel * kernel * channels * channels


@mutant("stacked_conv_params: the weights of one layer only", replaces="stacked_conv_params")
def stacked_conv_params_one_layer(kernel, n_layers, channels):
    return n_layers * (kernel - 1) + 1, kernel * kernel * channels * channels


# --- training_memory -------------------------------------------------------------------------


@mutant("training_memory: Adam's state counted once instead of twice",
        replaces="training_memory")
def training_memory_adam_once(model, input_shape, batch_size, optimizer="sgd",
                              dtype=torch.float32, memory_bytes=None, _reference=training_memory):
    if optimizer == "adam":
        optimizer = "momentum"
    return _reference(model, input_shape, batch_size, optimizer, dtype, memory_bytes)


@mutant("training_memory: momentum counted as state-free (like plain SGD)",
        replaces="training_memory")
def training_memory_momentum_free(model, input_shape, batch_size, optimizer="sgd",
                                  dtype=torch.float32, memory_bytes=None,
                                  _reference=training_memory):
    if optimizer == "momentum":
        optimizer = "sgd"
    return _reference(model, input_shape, batch_size, optimizer, dtype, memory_bytes)


@mutant("training_memory: gradients and optimizer state for frozen parameters too",
        replaces="training_memory")
def training_memory_frozen_counted(model, input_shape, batch_size, optimizer="sgd",
                                   dtype=torch.float32, memory_bytes=None):
    states = {"sgd": 0, "momentum": 1, "adam": 2}
    if optimizer not in states:
        raise ValueError(optimizer)
    b = torch.empty((), dtype=dtype).element_size()
    n = sum(p.numel() for p in model.parameters())
    per_image = layer_table(model, (1, *input_shape), dtype)["totals"]["activation_bytes"]
    memory = {"params": n * b, "grads": n * b, "optimizer": states[optimizer] * n * b,
              "activations": batch_size * per_image}
    memory["total"] = sum(memory.values())
    fixed = memory["params"] + memory["grads"] + memory["optimizer"]
    memory["max_batch_size"] = (None if memory_bytes is None
                                else max(0, (memory_bytes - fixed) // per_image))
    return memory


@mutant("training_memory: activations of one image, whatever the batch size",
        replaces="training_memory")
def training_memory_batch_ignored(model, input_shape, batch_size, optimizer="sgd",
                                  dtype=torch.float32, memory_bytes=None,
                                  _reference=training_memory):
    memory = _reference(model, input_shape, 1, optimizer, dtype, memory_bytes)
    return memory


@mutant("training_memory: max_batch_size rounds up (a batch that does not fit)",
        replaces="training_memory")
def training_memory_ceil(model, input_shape, batch_size, optimizer="sgd",
                         dtype=torch.float32, memory_bytes=None, _reference=training_memory):
    memory = _reference(model, input_shape, batch_size, optimizer, dtype, memory_bytes)
    if memory_bytes is not None:
        fixed = memory["params"] + memory["grads"] + memory["optimizer"]
        per_image = memory["activations"] // batch_size
        memory["max_batch_size"] = max(0, -(-(memory_bytes - fixed) // per_image))
    return memory


@mutant("training_memory: an unknown optimizer counted like plain SGD (no ValueError)",
        replaces="training_memory")
def training_memory_no_error(model, input_shape, batch_size, optimizer="sgd",
                             dtype=torch.float32, memory_bytes=None, _reference=training_memory):
    if optimizer not in ("sgd", "momentum", "adam"):
        optimizer = "sgd"
    return _reference(model, input_shape, batch_size, optimizer, dtype, memory_bytes)


# --- promises of the docstrings beyond the main path: edges, defaults, layers ----------------


@mutant("layer_table compares the data pointers without checking for empty outputs (two empty "
        "tensors both point to null: every layer of an empty batch counts as in place)",
        replaces="layer_table")
def layer_table_unguarded_in_place(model, input_shape, dtype=torch.float32):
    b = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    rows, seen = [], set()

    def hook(module, inputs, output):
        fresh = [p for p in module.parameters() if id(p) not in seen]
        seen.update(id(p) for p in fresh)
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        else:
            macs = 0
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": list(output.shape), "activations": output.numel(),
                     "params": sum(p.numel() for p in fresh), "macs": macs,
                     "in_place": output.untyped_storage().data_ptr()
                     == inputs[0].untyped_storage().data_ptr()})

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in names if not list(m.children())]
    x = torch.zeros(tuple(input_shape))
    model.eval()
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    for m, training in modes:
        m.training = training
    acts = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    return {"rows": rows, "totals": {
        "activations": acts, "params": params, "macs": sum(r["macs"] for r in rows),
        "activation_bytes": acts * b, "param_bytes": params * b,
        "total_bytes": (acts + params) * b}}


@mutant("AlexNet's groups default to 2 (the paper's two GPUs) instead of 1", replaces="AlexNet")
class AlexNetDefaultTwoTowers(AlexNet):
    def __init__(self, num_classes=1000, groups=2):
        super().__init__(num_classes, groups)


@mutant("AlexNet has no dropout before FC7 (only before FC6)", replaces="AlexNet")
class AlexNetOneDropout(AlexNet):
    def __init__(self, num_classes=1000, groups=1):
        super().__init__(num_classes, groups)
        layers = list(self.classifier)
        del layers[3]  # the Dropout before FC7
        self.classifier = nn.Sequential(*layers)


@mutant("googlenet's conv2 (the 1x1 reduction of the stem) has no ReLU", replaces="googlenet")
def googlenet_conv2_linear(num_classes=1000, _reference=googlenet):
    model = _reference(num_classes)
    model.conv2 = model.conv2[:1]
    return model


@mutant("training_memory's optimizer defaults to 'adam' instead of plain 'sgd'",
        replaces="training_memory")
def training_memory_default_adam(model, input_shape, batch_size, optimizer="adam",
                                 dtype=torch.float32, memory_bytes=None,
                                 _reference=training_memory):
    return _reference(model, input_shape, batch_size, optimizer, dtype, memory_bytes)
