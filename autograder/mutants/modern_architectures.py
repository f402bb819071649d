"""Seeded student bugs for Lab 08 (residual and efficient architectures).

Each is a mistake seen in real code or one step away from one. The selfcheck
proves that the hidden checks catch every one of them. A mutant that needs the
reference's own builder takes it as a default argument (bound before the
name is rebound to the mutant).
"""

from collections import OrderedDict

import torch
from torch import nn

from autograder.mutants import mutant
from solutions.modern_architectures import (
    BasicBlock,
    Bottleneck,
    DenseBlock,
    DenseLayer,
    DepthwiseSeparable,
    SeparableConv2d,
    Transition,
    XceptionMiddleBlock,
    densenet,
    mobilenet_v1,
    resnet,
)


@mutant("BasicBlock applies the last ReLU before adding the shortcut", replaces="BasicBlock")
class BasicBlockReluBeforeAdd(BasicBlock):
    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return out + identity


@mutant("BasicBlock adds a projection shortcut only when the stride changes, not the width",
        replaces="BasicBlock")
class BasicBlockNoProjectionForWidth(BasicBlock):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__(in_planes, planes, stride)
        if stride == 1:
            self.downsample = None

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        if identity.shape[1] != out.shape[1]:  # "fix" the mismatch by cropping or padding
            c = out.shape[1]
            identity = (identity[:, :c] if identity.shape[1] > c else
                        torch.nn.functional.pad(identity, (0, 0, 0, 0, 0, c - identity.shape[1])))
        return self.relu(out + identity)


@mutant("Bottleneck puts the stride on the first 1x1 conv (ResNet v1) instead of the 3x3 "
        "(torchvision's v1.5)", replaces="Bottleneck")
class BottleneckStrideOn1x1(Bottleneck):
    def __init__(self, in_planes, planes, stride=1, groups=1, base_width=64):
        super().__init__(in_planes, planes, stride, groups, base_width)
        self.conv1.stride = (stride, stride)
        self.conv2.stride = (1, 1)


@mutant("Bottleneck expands by 2 instead of 4", replaces="Bottleneck")
class BottleneckExpansion2(Bottleneck):
    expansion = 2  # the reference's __init__ sizes conv3, bn3 and the projection from it


@mutant("Bottleneck groups the 1x1 convolutions too, not only the 3x3", replaces="Bottleneck")
class BottleneckGroupedPointwise(Bottleneck):
    def __init__(self, in_planes, planes, stride=1, groups=1, base_width=64):
        super().__init__(in_planes, planes, stride, groups, base_width)
        if groups > 1 and in_planes % groups == 0:
            width = self.conv1.out_channels
            self.conv1 = nn.Conv2d(in_planes, width, 1, groups=groups, bias=False)
            self.conv3 = nn.Conv2d(width, planes * 4, 1, groups=groups, bias=False)


@mutant("resnet strides the first block of the first stage too", replaces="resnet")
def resnet_first_stage_strided(block, layers, num_classes=1000, groups=1, width_per_group=64,
                               widths=(64, 128, 256, 512), small_input=False, _resnet=resnet):
    model = _resnet(block, layers, num_classes, groups, width_per_group, widths, small_input)
    first = model.layer1[0]
    conv = first.conv2 if hasattr(first, "conv3") else first.conv1
    conv.stride = (2, 2)
    if first.downsample is not None:
        first.downsample[0].stride = (2, 2)
    else:
        first.downsample = nn.Sequential(nn.MaxPool2d(1, stride=2))
    return model


@mutant("resnet keeps ImageNet's max pool when small_input is True", replaces="resnet")
def resnet_small_input_max_pool(block, layers, num_classes=1000, groups=1, width_per_group=64,
                                widths=(64, 128, 256, 512), small_input=False, _resnet=resnet):
    model = _resnet(block, layers, num_classes, groups, width_per_group, widths, small_input)
    model.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
    return model


@mutant("DepthwiseSeparable's 3x3 conv is a full convolution (no groups=in_channels)",
        replaces="DepthwiseSeparable")
class DepthwiseSeparableNoGroups(DepthwiseSeparable):
    def __init__(self, in_channels, out_channels, stride=1):
        super().__init__(in_channels, out_channels, stride)
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1,
                                   bias=False)


@mutant("DepthwiseSeparable has no BN and no ReLU after the pointwise conv",
        replaces="DepthwiseSeparable")
class DepthwiseSeparableBarePointwise(DepthwiseSeparable):
    def forward(self, x):
        return self.pointwise(self.relu(self.bn1(self.depthwise(x))))


@mutant("mobilenet_v1 rounds the width multiplier with round() and no minimum of 8 channels",
        replaces="mobilenet_v1")
def mobilenet_v1_rounded(num_classes=1000, width_mult=1.0, small_input=False):
    def depth(c):
        return max(1, round(c * width_mult))

    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1),
              (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]
    c_in = depth(32)
    layers = [nn.Sequential(
        nn.Conv2d(3, c_in, 3, stride=1 if small_input else 2, padding=1, bias=False),
        nn.BatchNorm2d(c_in), nn.ReLU(inplace=True))]
    for c, stride in blocks:
        layers.append(DepthwiseSeparable(c_in, depth(c), stride))
        c_in = depth(c)
    model = nn.Module()
    model.features = nn.Sequential(*layers)
    model.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    model.fc = nn.Linear(c_in, num_classes)
    model.forward = lambda x: model.fc(torch.flatten(model.avgpool(model.features(x)), 1))
    return model


@mutant("mobilenet_v1 copies the paper's table literally: stride 2 in the last block",
        replaces="mobilenet_v1")
def mobilenet_v1_last_stride_2(num_classes=1000, width_mult=1.0, small_input=False,
                               _mobilenet_v1=mobilenet_v1):
    model = _mobilenet_v1(num_classes, width_mult, small_input)
    model.features[13].depthwise.stride = (2, 2)
    return model


@mutant("SeparableConv2d puts a BN and a ReLU between depthwise and pointwise (MobileNet's "
        "block, not Xception's)", replaces="SeparableConv2d")
class SeparableConv2dWithBnRelu(SeparableConv2d):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding)
        self.bn = nn.BatchNorm2d(in_channels)

    def forward(self, x):
        return self.pointwise(torch.relu(self.bn(self.depthwise(x))))


@mutant("XceptionMiddleBlock's first ReLU is in place: it overwrites x, the shortcut",
        replaces="XceptionMiddleBlock")
class XceptionMiddleBlockInplace(XceptionMiddleBlock):
    def forward(self, x):
        out = self.bn1(self.sep1(torch.relu_(x)))
        out = self.bn2(self.sep2(self.relu(out)))
        out = self.bn3(self.sep3(self.relu(out)))
        return x + out


@mutant("XceptionMiddleBlock applies a ReLU after the addition and none before sep1",
        replaces="XceptionMiddleBlock")
class XceptionMiddleBlockPostActivation(XceptionMiddleBlock):
    def forward(self, x):
        out = self.bn1(self.sep1(x))
        out = self.bn2(self.sep2(self.relu(out)))
        out = self.bn3(self.sep3(self.relu(out)))
        return self.relu(x + out)


@mutant("DenseLayer forgets the 1x1 bottleneck's BN and ReLU (conv1 right after the input)",
        replaces="DenseLayer")
class DenseLayerNoPreactivation(DenseLayer):
    def forward(self, x):
        return self.conv2(self.relu2(self.norm2(self.conv1(x))))


@mutant("DenseLayer returns its input concatenated with its new maps, not the new maps only",
        replaces="DenseLayer")
class DenseLayerReturnsConcatenation(DenseLayer):
    def forward(self, x):
        return torch.cat([x, super().forward(x)], 1)


@mutant("DenseBlock returns only the new feature maps, without the block's input",
        replaces="DenseBlock")
class DenseBlockForgetsInput(DenseBlock):
    def forward(self, x):
        return super().forward(x)[:, x.shape[1]:]


@mutant("DenseBlock adds the new feature maps (ResNet-style) instead of concatenating them",
        replaces="DenseBlock")
class DenseBlockAdding(nn.Module):
    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            width = in_channels + (growth_rate if i else 0)
            self.add_module(f"denselayer{i + 1}", DenseLayer(width, growth_rate, bn_size))

    def forward(self, x):
        total = None
        for i in range(self.num_layers):
            layer = getattr(self, f"denselayer{i + 1}")
            new = layer(x if total is None else torch.cat([x, total], 1))
            total = new if total is None else total + new
        return torch.cat([x, total], 1)


@mutant("Transition pools with a max pool instead of an average pool", replaces="Transition")
class TransitionMaxPool(Transition):
    def __init__(self, in_channels, out_channels):
        super().__init__(in_channels, out_channels)
        self.pool = nn.MaxPool2d(2, stride=2)


@mutant("densenet's transitions keep every channel (no 0.5 compression)", replaces="densenet")
def densenet_no_compression(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64,
                            bn_size=4, num_classes=1000, small_input=False, _densenet=densenet):
    model = _densenet(growth_rate, block_config, num_init_features, bn_size, num_classes,
                      small_input)
    channels = num_init_features
    features = model.features
    for i, num_layers in enumerate(block_config):
        block = DenseBlock(num_layers, channels, growth_rate, bn_size)
        setattr(features, f"denseblock{i + 1}", block)
        channels += num_layers * growth_rate
        if i != len(block_config) - 1:
            setattr(features, f"transition{i + 1}", Transition(channels, channels))
    features.norm5 = nn.BatchNorm2d(channels)
    model.classifier = nn.Linear(channels, num_classes)
    return model


# --- promises of the docstrings beyond the main path: defaults, layer names -----------------


@mutant("BasicBlock's stride defaults to 2 (a downsampling block unless told otherwise)",
        replaces="BasicBlock")
class BasicBlockDefaultStride2(BasicBlock):
    def __init__(self, in_planes, planes, stride=2):
        super().__init__(in_planes, planes, stride)


@mutant("Bottleneck's base_width defaults to 32 instead of torchvision's 64",
        replaces="Bottleneck")
class BottleneckDefaultWidth32(Bottleneck):
    def __init__(self, in_planes, planes, stride=1, groups=1, base_width=32):
        super().__init__(in_planes, planes, stride, groups, base_width)


@mutant("SeparableConv2d's padding defaults to 0 (the maps shrink by 2 pixels)",
        replaces="SeparableConv2d")
class SeparableConv2dDefaultPadding0(SeparableConv2d):
    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=0):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding)


@mutant("mobilenet_v1's stem has no ReLU after its batch norm", replaces="mobilenet_v1")
def mobilenet_v1_stem_without_relu(num_classes=1000, width_mult=1.0, small_input=False,
                                   _reference=mobilenet_v1):
    model = _reference(num_classes, width_mult, small_input)
    model.features[0] = model.features[0][:2]
    return model


@mutant("densenet's stem pool is named `pool` instead of torchvision's `pool0`",
        replaces="densenet")
def densenet_pool_renamed(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64,
                          bn_size=4, num_classes=1000, small_input=False, _reference=densenet):
    model = _reference(growth_rate, block_config, num_init_features, bn_size, num_classes,
                       small_input)
    layers = [("pool" if name == "pool0" else name, m)
              for name, m in model.features.named_children()]
    model.features = nn.Sequential(OrderedDict(layers))
    return model
