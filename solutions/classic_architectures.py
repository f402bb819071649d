"""Reference solution of Lab 07: the classic architectures, counted.

Every name here is defined by an answer cell of labs/07_classic_architectures.ipynb,
with the same signature and docstring.

Conventions (the lab's): a multiply-add (MAC) is one multiplication and one
addition; ``torch.utils.flop_counter.FlopCounterMode`` counts FLOPs = 2 x MACs.
Only Conv2d and Linear layers count MACs (their biases do not); pooling,
activations, normalization and dropout count 0.
"""

from collections import OrderedDict

import torch
from torch import nn


def layer_table(model, input_shape, dtype=torch.float32):
    """What each layer of a model holds and costs, measured on one forward pass.

    Runs ONE forward pass of ``torch.zeros(input_shape)`` (float32, on the
    device of the model's parameters) under ``torch.no_grad()``, with the model
    in eval mode, and records each call of a LEAF module (a module without
    children: Conv2d, ReLU, MaxPool2d, Linear, BatchNorm2d, ...) with a forward
    hook (``register_forward_hook``). Containers (Sequential, your own modules
    with children) get no row; functional operations of a forward method
    (torch.flatten, torch.cat, +) are not seen. Afterwards every hook is
    removed and every module is back in the train/eval mode it was in: the
    model is left as it was found.

    Inputs:
    - model: torch.nn.Module.
    - input_shape: tuple of ints, the shape of the input batch, e.g.
      (1, 3, 224, 224) (batch first).
    - dtype: torch dtype that sets the bytes per value of the memory figures
      (4 for torch.float32, 2 for torch.float16, 8 for torch.float64). The
      forward pass itself always runs in float32.

    Returns a dict of plain data:
    - "rows": list with one dict per call of a leaf module, in the order of
      the calls (a module called twice has two rows), with the keys
      - "name": str, the module's name in ``model.named_modules()``
        ("features.0"; "" when the model itself is a leaf);
      - "type": str, its class name ("Conv2d");
      - "output_shape": list of ints, the shape of its output, batch included;
      - "activations": int, the number of values of its output (batch included);
      - "params": int, its number of parameters; a parameter already counted
        in an earlier row (a module called twice, a weight shared by two
        modules) counts 0 here, so each parameter is counted once;
      - "macs": int, its multiply-adds for the whole batch: Conv2d:
        output values x (in_channels / groups) x kernel height x kernel width;
        Linear: output values x in_features; every other layer 0. Biases add
        no multiply-add (torch's FLOP counter counts them neither);
      - "in_place": bool, True when the output shares its memory with the
        module's (first) input (an in-place ReLU, Dropout in eval mode, the
        view of a Flatten, Identity): no new memory.
    - "totals": dict of ints with the keys
      - "activations": the values of the input plus the activations of every
        row whose "in_place" is False (the memory of one forward pass that
        keeps every layer's output, as the lecture counts VGG16's 15 M);
      - "params": the sum of the rows' "params";
      - "macs": the sum of the rows' "macs";
      - "activation_bytes": totals["activations"] x bytes per value of dtype;
      - "param_bytes": totals["params"] x bytes per value of dtype;
      - "total_bytes": activation_bytes + param_bytes.
    """
    bytes_per_value = torch.empty((), dtype=dtype).element_size()
    names = {}
    for name, module in model.named_modules():
        names.setdefault(module, name)
    leaves = [m for m in names if next(iter(m.children()), None) is None]
    rows, counted = [], set()

    def hook(module, inputs, output):
        params = 0
        for p in module.parameters():
            if id(p) not in counted:
                counted.add(id(p))
                params += p.numel()
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
        elif isinstance(module, nn.Linear):
            macs = output.numel() * module.in_features
        else:
            macs = 0
        first = inputs[0] if inputs else None
        in_place = (isinstance(first, torch.Tensor) and first.numel() > 0
                    and output.untyped_storage().data_ptr()
                    == first.untyped_storage().data_ptr())
        rows.append({"name": names[module], "type": type(module).__name__,
                     "output_shape": [int(n) for n in output.shape],
                     "activations": int(output.numel()), "params": int(params),
                     "macs": int(macs), "in_place": bool(in_place)})

    modes = [(m, m.training) for m in model.modules()]
    handles = [m.register_forward_hook(hook) for m in leaves]
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    x = torch.zeros(tuple(input_shape), dtype=torch.float32, device=device)
    try:
        model.eval()
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
        for m, training in modes:
            m.training = training

    activations = x.numel() + sum(r["activations"] for r in rows if not r["in_place"])
    params = sum(r["params"] for r in rows)
    totals = {"activations": int(activations), "params": int(params),
              "macs": int(sum(r["macs"] for r in rows)),
              "activation_bytes": int(activations * bytes_per_value),
              "param_bytes": int(params * bytes_per_value)}
    totals["total_bytes"] = totals["activation_bytes"] + totals["param_bytes"]
    return {"rows": rows, "totals": totals}


class AlexNet(nn.Module):
    """AlexNet as the lecture draws it (Krizhevsky, Sutskever and Hinton, 2012).

    Input (N, 3, 227, 227). Layers (ReLU(inplace=True) after every conv and
    every hidden FC layer; no local response normalization):

    self.features = nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4),                          # 0: CONV1 -> 55x55x96
        nn.ReLU(inplace=True),                                   # 1
        nn.MaxPool2d(3, stride=2),                               # 2: POOL1 -> 27x27x96
        nn.Conv2d(96, 256, 5, padding=2, groups=groups),         # 3: CONV2 -> 27x27x256
        nn.ReLU(inplace=True),                                   # 4
        nn.MaxPool2d(3, stride=2),                               # 5: POOL2 -> 13x13x256
        nn.Conv2d(256, 384, 3, padding=1),                       # 6: CONV3 -> 13x13x384
        nn.ReLU(inplace=True),                                   # 7
        nn.Conv2d(384, 384, 3, padding=1, groups=groups),        # 8: CONV4 -> 13x13x384
        nn.ReLU(inplace=True),                                   # 9
        nn.Conv2d(384, 256, 3, padding=1, groups=groups),        # 10: CONV5 -> 13x13x256
        nn.ReLU(inplace=True),                                   # 11
        nn.MaxPool2d(3, stride=2))                               # 12: POOL3 -> 6x6x256
    self.classifier = nn.Sequential(
        nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),  # FC6
        nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),         # FC7
        nn.Linear(4096, num_classes))                                          # FC8

    groups=2 is the paper's split over two GPUs: CONV2, CONV4 and CONV5 only
    see the feature maps of their own GPU (CONV3 and the FC layers see both).
    With groups=2: 60,965,224 parameters and about 724 M multiply-adds (the
    paper's 60 M and the 720 M of MobileNet's Table 9); groups=1 is the
    single-tower network (62,378,344 parameters).
    """

    def __init__(self, num_classes=1000, groups=1):
        """Inputs:
        - num_classes: int, the number of outputs of the last layer.
        - groups: 1 or 2, the groups of CONV2, CONV4 and CONV5.
        """
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(inplace=True), nn.MaxPool2d(3, stride=2),
            nn.Conv2d(96, 256, 5, padding=2, groups=groups), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2),
            nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(384, 384, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, 3, padding=1, groups=groups), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2))
        self.classifier = nn.Sequential(
            nn.Dropout(0.5), nn.Linear(256 * 6 * 6, 4096), nn.ReLU(inplace=True),
            nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes))

    def forward(self, x):
        """x: tensor (N, 3, 227, 227) -> logits (N, num_classes):
        features, then torch.flatten(x, 1), then classifier."""
        return self.classifier(torch.flatten(self.features(x), 1))


def vgg16(num_classes=1000):
    """VGG16 (Simonyan and Zisserman, 2015, configuration D), laid out like torchvision's.

    Built from the configuration list
        [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
         512, 512, 512, "M", 512, 512, 512, "M"]
    where a number v is nn.Conv2d(in_channels, v, 3, padding=1) followed by
    nn.ReLU(inplace=True), and "M" is nn.MaxPool2d(2, stride=2) (a 2x2 pool
    after each block of convolutions, 5 in all).

    Returns an nn.Sequential with four named children, applied in this order:
    - "features": nn.Sequential of the configuration's layers (31 modules:
      features.0 is the first conv, features.30 the last pool);
    - "avgpool": nn.AdaptiveAvgPool2d((7, 7)) (the identity for 224x224
      inputs; it lets smaller inputs through);
    - "flatten": nn.Flatten() (to (N, 512 * 7 * 7));
    - "classifier": nn.Sequential(nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True),
      nn.Dropout(0.5), nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
      nn.Linear(4096, num_classes)).
    Its state_dict keys are then those of torchvision.models.vgg16
    ("features.0.weight", ..., "classifier.6.bias"), so torchvision's weights load
    into it. 138,357,544 parameters for num_classes=1000.

    Inputs:
    - num_classes: int, the number of outputs.

    Returns:
    - nn.Module mapping (N, 3, H, W) with H, W >= 32 to (N, num_classes).
    """
    config = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M",
              512, 512, 512, "M", 512, 512, 512, "M"]
    layers, channels = [], 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(2, stride=2))
        else:
            layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
            channels = v
    classifier = nn.Sequential(
        nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(0.5),
        nn.Linear(4096, num_classes))
    return nn.Sequential(OrderedDict([
        ("features", nn.Sequential(*layers)), ("avgpool", nn.AdaptiveAvgPool2d((7, 7))),
        ("flatten", nn.Flatten()), ("classifier", classifier)]))


class InceptionModule(nn.Module):
    """GoogLeNet's inception module (Szegedy et al., 2015, Figure 2b), as in the paper.

    Four parallel branches on the same input, concatenated along the CHANNELS
    (dim 1) in this order; every convolution has a bias and is followed by
    nn.ReLU(inplace=True):
    - self.branch1 = nn.Sequential(nn.Conv2d(in_channels, ch1x1, 1), nn.ReLU(True))
    - self.branch2 = nn.Sequential(nn.Conv2d(in_channels, ch3x3red, 1), nn.ReLU(True),
                                   nn.Conv2d(ch3x3red, ch3x3, 3, padding=1), nn.ReLU(True))
    - self.branch3 = nn.Sequential(nn.Conv2d(in_channels, ch5x5red, 1), nn.ReLU(True),
                                   nn.Conv2d(ch5x5red, ch5x5, 5, padding=2), nn.ReLU(True))
    - self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                   nn.Conv2d(in_channels, pool_proj, 1), nn.ReLU(True))
    The 1x1 convolutions before the 3x3 and 5x5 ones ("reductions") shrink the
    channels so that the large kernels stay cheap.
    Output: ch1x1 + ch3x3 + ch5x5 + pool_proj channels, the input's H and W.
    """

    def __init__(self, in_channels, ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj):
        """Inputs: ints, the columns of the paper's Table 1 ("#1x1", "#3x3 reduce",
        "#3x3", "#5x5 reduce", "#5x5", "pool proj") and the input channels."""
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(in_channels, ch1x1, 1), nn.ReLU(True))
        self.branch2 = nn.Sequential(nn.Conv2d(in_channels, ch3x3red, 1), nn.ReLU(True),
                                     nn.Conv2d(ch3x3red, ch3x3, 3, padding=1), nn.ReLU(True))
        self.branch3 = nn.Sequential(nn.Conv2d(in_channels, ch5x5red, 1), nn.ReLU(True),
                                     nn.Conv2d(ch5x5red, ch5x5, 5, padding=2), nn.ReLU(True))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                     nn.Conv2d(in_channels, pool_proj, 1), nn.ReLU(True))

    def forward(self, x):
        """x: tensor (N, in_channels, H, W) -> tensor (N, ch1x1 + ch3x3 + ch5x5 +
        pool_proj, H, W)."""
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x),
                          self.branch4(x)], dim=1)


def googlenet(num_classes=1000):
    """GoogLeNet (Szegedy et al., 2015, Table 1), without the auxiliary classifiers
    and without local response normalization.

    Returns an nn.Sequential whose named children run in this order
    (every max pool is nn.MaxPool2d(3, stride=2, ceil_mode=True): the
    table's sizes 112 -> 56 -> 28 -> 14 -> 7 need the ceiling):
    - "conv1": nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.ReLU(True))
    - "maxpool1"
    - "conv2": nn.Sequential(nn.Conv2d(64, 64, 1), nn.ReLU(True))
    - "conv3": nn.Sequential(nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(True))
    - "maxpool2"
    - "inception3a": InceptionModule(192, 64, 96, 128, 16, 32, 32)     -> 256 channels
    - "inception3b": InceptionModule(256, 128, 128, 192, 32, 96, 64)   -> 480
    - "maxpool3"
    - "inception4a": InceptionModule(480, 192, 96, 208, 16, 48, 64)    -> 512
    - "inception4b": InceptionModule(512, 160, 112, 224, 24, 64, 64)   -> 512
    - "inception4c": InceptionModule(512, 128, 128, 256, 24, 64, 64)   -> 512
    - "inception4d": InceptionModule(512, 112, 144, 288, 32, 64, 64)   -> 528
    - "inception4e": InceptionModule(528, 256, 160, 320, 32, 128, 128) -> 832
    - "maxpool4"
    - "inception5a": InceptionModule(832, 256, 160, 320, 32, 128, 128) -> 832
    - "inception5b": InceptionModule(832, 384, 192, 384, 48, 128, 128) -> 1024
    - "avgpool": nn.AdaptiveAvgPool2d(1)
    - "flatten": nn.Flatten()
    - "dropout": nn.Dropout(0.4)
    - "fc": nn.Linear(1024, num_classes)
    For a 224x224 input: 112x112x64 after conv1, 56x56 after maxpool1,
    28x28x192 after maxpool2, 28x28x256 after inception3a, 14x14 after
    maxpool3, 7x7 after maxpool4, 7x7x1024 after inception5b.

    Inputs:
    - num_classes: int, the number of outputs.

    Returns:
    - nn.Module mapping (N, 3, H, W) to (N, num_classes).
    """
    def pool():
        return nn.MaxPool2d(3, stride=2, ceil_mode=True)

    return nn.Sequential(OrderedDict([
        ("conv1", nn.Sequential(nn.Conv2d(3, 64, 7, stride=2, padding=3), nn.ReLU(True))),
        ("maxpool1", pool()),
        ("conv2", nn.Sequential(nn.Conv2d(64, 64, 1), nn.ReLU(True))),
        ("conv3", nn.Sequential(nn.Conv2d(64, 192, 3, padding=1), nn.ReLU(True))),
        ("maxpool2", pool()),
        ("inception3a", InceptionModule(192, 64, 96, 128, 16, 32, 32)),
        ("inception3b", InceptionModule(256, 128, 128, 192, 32, 96, 64)),
        ("maxpool3", pool()),
        ("inception4a", InceptionModule(480, 192, 96, 208, 16, 48, 64)),
        ("inception4b", InceptionModule(512, 160, 112, 224, 24, 64, 64)),
        ("inception4c", InceptionModule(512, 128, 128, 256, 24, 64, 64)),
        ("inception4d", InceptionModule(512, 112, 144, 288, 32, 64, 64)),
        ("inception4e", InceptionModule(528, 256, 160, 320, 32, 128, 128)),
        ("maxpool4", pool()),
        ("inception5a", InceptionModule(832, 256, 160, 320, 32, 128, 128)),
        ("inception5b", InceptionModule(832, 384, 192, 384, 48, 128, 128)),
        ("avgpool", nn.AdaptiveAvgPool2d(1)),
        ("flatten", nn.Flatten()),
        ("dropout", nn.Dropout(0.4)),
        ("fc", nn.Linear(1024, num_classes)),
    ]))


def receptive_field(layers):
    """Receptive field of a stack of convolution or pooling layers, along one dimension.

    Inputs:
    - layers: list of (kernel, stride) tuples of ints, the first layer first.

    Returns:
    - int: how many input pixels (along one dimension) one output pixel of the
      last layer depends on; 1 for an empty list. Layer i adds (kernel_i - 1)
      times the PRODUCT of the strides of the layers before it (the distance,
      in input pixels, between two neighbouring pixels of its input):
      r = 1 + sum_i (k_i - 1) * s_1 * ... * s_{i-1}.
    """
    field, jump = 1, 1
    for kernel, stride in layers:
        field += (kernel - 1) * jump
        jump *= stride
    return field


def stacked_conv_params(kernel, n_layers, channels):
    """Receptive field and weights of n_layers stacked kernel x kernel convolutions.

    Each layer has `channels` input and `channels` output channels, stride 1,
    and no bias (VGG's argument: three 3x3 layers see 7x7 pixels with
    3 * 9 * C^2 = 27 C^2 weights; one 7x7 layer needs 49 C^2).

    Inputs:
    - kernel: int, the kernel size (odd).
    - n_layers: int >= 1, the number of stacked layers.
    - channels: int, C.

    Returns a tuple of ints:
    - field: the receptive field of the stack, n_layers * (kernel - 1) + 1;
    - weights: n_layers * kernel * kernel * channels * channels (also the
      multiply-adds per output pixel).
    """
    field = n_layers * (kernel - 1) + 1
    weights = n_layers * kernel * kernel * channels * channels
    return field, weights


def training_memory(model, input_shape, batch_size, optimizer="sgd", dtype=torch.float32,
                    memory_bytes=None):
    """Memory needed to train a model on batches of a given size, in bytes.

    Counted with dtype's bytes per value b (4 for float32):
    - "params": every parameter of ``model.parameters()`` (each counted once), x b;
    - "grads": one gradient per parameter that requires grad, x b;
    - "optimizer": the optimizer's state per parameter that requires grad:
      "sgd" (plain) 0 values, "momentum" (SGD with momentum) 1 value (the
      velocity), "adam" 2 values (the running means of the gradient and of
      its square; the step counter is ignored), x b;
    - "activations": batch_size x the activations of ONE image that the
      backward pass keeps, counted as layer_table does:
      layer_table(model, (1, *input_shape), dtype)["totals"]["activation_bytes"];
    - "total": the sum of the four.
    - "max_batch_size": None when memory_bytes is None; otherwise the largest
      batch size B >= 0 for which params + grads + optimizer + B x (activation
      bytes of one image) <= memory_bytes (0 when not even one image fits).

    Inputs:
    - model: torch.nn.Module.
    - input_shape: tuple (C, H, W), the shape of ONE image.
    - batch_size: int >= 1.
    - optimizer: "sgd", "momentum" or "adam"; anything else raises ValueError.
    - dtype: torch dtype of the values (sets b).
    - memory_bytes: int or None, the memory available.

    Returns:
    - dict with the int values "params", "grads", "optimizer", "activations",
      "total", and "max_batch_size" (int or None).
    """
    states = {"sgd": 0, "momentum": 1, "adam": 2}
    if optimizer not in states:
        raise ValueError(f"optimizer must be one of {sorted(states)}, got {optimizer!r}")
    b = torch.empty((), dtype=dtype).element_size()
    params = list(model.parameters())
    n_params = sum(p.numel() for p in params)
    n_trainable = sum(p.numel() for p in params if p.requires_grad)
    per_image = layer_table(model, (1, *input_shape), dtype)["totals"]["activation_bytes"]
    memory = {"params": n_params * b, "grads": n_trainable * b,
              "optimizer": states[optimizer] * n_trainable * b,
              "activations": batch_size * per_image}
    memory = {k: int(v) for k, v in memory.items()}
    memory["total"] = sum(memory.values())
    if memory_bytes is None:
        memory["max_batch_size"] = None
    else:
        fixed = memory["params"] + memory["grads"] + memory["optimizer"]
        memory["max_batch_size"] = int(max(0, (memory_bytes - fixed) // per_image))
    return memory
