"""Reference solution of Lab 08: residual and efficient architectures.

Every name here is defined by an answer cell of labs/08_modern_architectures.ipynb,
with the same signature and docstring.

Conventions (those of torchvision, so that its state_dicts load with strict=True):
- ResNet v1.5: in a Bottleneck the stride of a downsampling block is on the 3x3
  convolution (conv2), not on the first 1x1 (He et al. 2016 put it on the 1x1);
  projection shortcuts (1x1 conv + BN) wherever the shape changes.
- The attribute names of every module are fixed by its docstring.
- Images are (N, C, H, W) float32.
"""

import torch
from torch import nn


class BasicBlock(nn.Module):
    """ResNet's basic residual block (He et al. 2016, Fig. 2): two 3x3 convolutions.

    out = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))

    The addition comes BEFORE the last ReLU (the lecture's code:
    ``x = bn2(conv2(x)); x += identity; x = relu(x)``). The shortcut is the
    identity when the shape does not change, else the projection ``downsample``.

    Attributes (the names of torchvision.models.resnet.BasicBlock):
    - expansion = 1 (class attribute): the block outputs planes * expansion channels.
    - conv1: nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False).
    - bn1: nn.BatchNorm2d(planes).
    - conv2: nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False).
    - bn2: nn.BatchNorm2d(planes).
    - relu: nn.ReLU (inplace=True is fine).
    - downsample: None when stride == 1 and in_planes == planes (identity
      shortcut); otherwise the projection shortcut
      nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
      nn.BatchNorm2d(planes)).
    """

    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        """Inputs:
        - in_planes: int, number of input channels.
        - planes: int, number of output channels.
        - stride: int, stride of conv1 and of the projection shortcut.
        """
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != planes * self.expansion:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, planes * self.expansion, 1, stride=stride, bias=False),
                nn.BatchNorm2d(planes * self.expansion),
            )

    def forward(self, x):
        """Inputs:
        - x: float tensor of shape (N, in_planes, H, W). It is not modified.

        Returns:
        - tensor of shape (N, planes, H_out, W_out), H_out = (H - 1) // stride + 1
          (same for W_out); every value >= 0 (the last operation is the ReLU).
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out = out + identity
        return self.relu(out)


class Bottleneck(nn.Module):
    """ResNet's bottleneck block (He et al. 2016, Fig. 5), and ResNeXt's (Xie et al. 2017).

    1x1 conv (reduce to `width` channels), 3x3 conv (grouped in ResNeXt),
    1x1 conv (expand to planes * 4 channels), each followed by batch norm, with
    a ReLU after the first two and after the addition of the shortcut:

    out = relu(bn3(conv3(relu(bn2(conv2(relu(bn1(conv1(x)))))))) + shortcut(x))

    width = int(planes * (base_width / 64)) * groups. ResNet-50: groups=1,
    base_width=64, so width = planes. ResNeXt-50 (32x4d): groups=32 (the
    cardinality C), base_width=4, so width = 2 * planes.
    ResNet v1.5, as torchvision: the STRIDE is on the 3x3 conv (conv2), not on conv1.
    Only the 3x3 conv is grouped; the 1x1 convs never are.

    Attributes (the names of torchvision.models.resnet.Bottleneck):
    - expansion = 4 (class attribute): the block outputs planes * 4 channels.
    - conv1: nn.Conv2d(in_planes, width, 1, bias=False); bn1: nn.BatchNorm2d(width).
    - conv2: nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups,
      bias=False); bn2: nn.BatchNorm2d(width).
    - conv3: nn.Conv2d(width, planes * 4, 1, bias=False); bn3: nn.BatchNorm2d(planes * 4).
    - relu: nn.ReLU (inplace=True is fine).
    - downsample: None when stride == 1 and in_planes == planes * 4; otherwise
      nn.Sequential(nn.Conv2d(in_planes, planes * 4, 1, stride=stride, bias=False),
      nn.BatchNorm2d(planes * 4)).
    """

    expansion = 4

    def __init__(self, in_planes, planes, stride=1, groups=1, base_width=64):
        """Inputs:
        - in_planes: int, number of input channels.
        - planes: int, the block outputs planes * 4 channels.
        - stride: int, stride of conv2 (the 3x3) and of the projection shortcut.
        - groups: int, number of groups of conv2 (ResNeXt's cardinality C).
        - base_width: int, channels per group for planes = 64 (ResNeXt's d).
        """
        super().__init__()
        width = int(planes * (base_width / 64.0)) * groups
        out_planes = planes * self.expansion
        self.conv1 = nn.Conv2d(in_planes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, groups=groups,
                               bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, out_planes, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or in_planes != out_planes:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_planes, out_planes, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_planes),
            )

    def forward(self, x):
        """Inputs:
        - x: float tensor of shape (N, in_planes, H, W). It is not modified.

        Returns:
        - tensor of shape (N, planes * 4, H_out, W_out), H_out = (H - 1) // stride + 1
          (same for W_out); every value >= 0.
        """
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        out = out + identity
        return self.relu(out)


def resnet(block, layers, num_classes=1000, groups=1, width_per_group=64,
           widths=(64, 128, 256, 512), small_input=False):
    """Build a ResNet (He et al. 2016) or a ResNeXt (Xie et al. 2017).

    resnet(Bottleneck, [3, 4, 6, 3]) is ResNet-50 and
    resnet(Bottleneck, [3, 4, 6, 3], groups=32, width_per_group=4) is
    ResNeXt-50 (32x4d): the same modules, parameter names and shapes as
    torchvision.models.resnet50() / resnext50_32x4d() (ResNet v1.5).
    resnet(BasicBlock, [2, 2, 2, 2]) is ResNet-18.

    Inputs:
    - block: the block class, BasicBlock or Bottleneck (or a subclass); it is
      called as block(in_planes, planes, stride) for BasicBlock, and as
      block(in_planes, planes, stride, groups, width_per_group) for a block whose
      expansion is not 1.
    - layers: list of ints, the number of blocks of each stage (one stage per entry).
    - num_classes: int, outputs of the final fully connected layer.
    - groups, width_per_group: passed to each Bottleneck (ignored by BasicBlock).
    - widths: tuple of ints, the `planes` of each stage (as many as `layers`);
      the stem outputs widths[0] channels.
    - small_input: bool. False: ImageNet's stem, a 7x7 conv with stride 2 and
      padding 3 then a 3x3 max pool with stride 2 and padding 1 (224 -> 56).
      True: a CIFAR-sized stem for 32x32 images, a 3x3 conv with stride 1 and
      padding 1 and no pooling (``maxpool`` is nn.Identity()).

    Returns an nn.Module with the attributes (torchvision's names):
    - conv1: nn.Conv2d(3, widths[0], 7, stride=2, padding=3, bias=False) (see small_input).
    - bn1: nn.BatchNorm2d(widths[0]); relu: nn.ReLU.
    - maxpool: nn.MaxPool2d(3, stride=2, padding=1) (nn.Identity() if small_input).
    - layer1, layer2, ...: one nn.Sequential of blocks per stage. Stage i has
      layers[i] blocks of `planes` widths[i]; its first block has stride 1 for
      the first stage and 2 for the others (and in_planes the previous stage's
      output), the next blocks stride 1.
    - avgpool: nn.AdaptiveAvgPool2d((1, 1)).
    - fc: nn.Linear(widths[-1] * block.expansion, num_classes).
    Its forward maps (N, 3, H, W) images to (N, num_classes) logits
    (conv1, bn1, relu, maxpool, the stages, avgpool, flatten, fc).
    """
    if len(layers) != len(widths):
        raise ValueError(f"layers and widths must have the same length, got {len(layers)} "
                         f"and {len(widths)}")
    class ResNet(nn.Module):
        def __init__(self, block, layers, num_classes, groups, width_per_group, widths,
                     small_input):
            super().__init__()
            stem = widths[0]
            if small_input:
                self.conv1 = nn.Conv2d(3, stem, 3, stride=1, padding=1, bias=False)
            else:
                self.conv1 = nn.Conv2d(3, stem, 7, stride=2, padding=3, bias=False)
            self.bn1 = nn.BatchNorm2d(stem)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
            in_planes = stem
            self.num_stages = len(layers)
            for i, (n_blocks, planes) in enumerate(zip(layers, widths, strict=True)):
                blocks = []
                for j in range(n_blocks):
                    stride = 2 if (i > 0 and j == 0) else 1
                    if block.expansion == 1:
                        blocks.append(block(in_planes, planes, stride))
                    else:
                        blocks.append(block(in_planes, planes, stride, groups, width_per_group))
                    in_planes = planes * block.expansion
                setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(in_planes, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            for i in range(self.num_stages):
                x = getattr(self, f"layer{i + 1}")(x)
            return self.fc(torch.flatten(self.avgpool(x), 1))

    return ResNet(block, list(layers), num_classes, groups, width_per_group, list(widths),
                  small_input)


class DepthwiseSeparable(nn.Module):
    """MobileNet's depthwise separable block (Howard et al. 2017, Fig. 3).

    3x3 depthwise conv (one filter per input channel: groups=in_channels), BN,
    ReLU, then 1x1 pointwise conv (mixes the channels), BN, ReLU:

    out = relu(bn2(pointwise(relu(bn1(depthwise(x))))))

    Attributes:
    - depthwise: nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1,
      groups=in_channels, bias=False).
    - bn1: nn.BatchNorm2d(in_channels).
    - pointwise: nn.Conv2d(in_channels, out_channels, 1, bias=False).
    - bn2: nn.BatchNorm2d(out_channels).
    - relu: nn.ReLU.
    Parameters: 9 * in_channels + in_channels * out_channels (convs) plus
    2 * (in_channels + out_channels) (the BN weights and biases).
    """

    def __init__(self, in_channels, out_channels, stride=1):
        """Inputs:
        - in_channels, out_channels: ints.
        - stride: int, stride of the depthwise conv.
        """
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, 3, stride=stride, padding=1,
                                   groups=in_channels, bias=False)
        self.bn1 = nn.BatchNorm2d(in_channels)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x):
        """Inputs:
        - x: float tensor of shape (N, in_channels, H, W). It is not modified.

        Returns:
        - tensor of shape (N, out_channels, (H - 1) // stride + 1, (W - 1) // stride + 1).
        """
        x = self.relu(self.bn1(self.depthwise(x)))
        return self.relu(self.bn2(self.pointwise(x)))


def mobilenet_v1(num_classes=1000, width_mult=1.0, small_input=False):
    """Build MobileNet v1 (Howard et al. 2017, Table 1).

    The lecture's table: a 3x3 conv with stride 2 to 32 channels (BN, ReLU), then
    13 DepthwiseSeparable blocks (out channels, stride):
    (64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), 5 x (512, 1),
    (1024, 2), (1024, 1), a global average pool and a fully connected layer.
    (The paper's table prints "s2" for the last block too; the network's output
    is 7x7 there, so its stride is 1, as in every implementation.)

    Width multiplier alpha = width_mult: every layer's channel count c (the
    stem's 32 included, and the 1024 the classifier sees) becomes
    max(8, int(c * width_mult)), the rounding of the paper's reference code
    (TF-slim's mobilenet_v1: ``max(int(d * depth_multiplier), min_depth)`` with
    min_depth = 8): int() rounds DOWN, and no layer gets fewer than 8 channels.

    Inputs:
    - num_classes: int.
    - width_mult: float > 0, the width multiplier alpha (1.0, 0.75, 0.5, 0.25 in the paper).
    - small_input: bool. True: the first conv has stride 1 (for 32x32 images:
      the last blocks see 2x2 maps instead of 1x1). False: stride 2 (ImageNet).

    Returns an nn.Module with the attributes:
    - features: nn.Sequential of 14 modules: features[0] is
      nn.Sequential(nn.Conv2d(3, c0, 3, stride=2, padding=1, bias=False),
      nn.BatchNorm2d(c0), nn.ReLU()) with c0 = max(8, int(32 * width_mult));
      features[1] .. features[13] are the DepthwiseSeparable blocks of the table.
    - avgpool: nn.AdaptiveAvgPool2d((1, 1)).
    - fc: nn.Linear(max(8, int(1024 * width_mult)), num_classes).
    Its forward maps (N, 3, H, W) images to (N, num_classes) logits (features,
    avgpool, flatten, fc). At 224x224 and width 1.0 the output of features[i]
    has the size of the table's next "Input Size" row (112x112x32 after
    features[0], ..., 7x7x1024 after features[13]).
    """
    blocks = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2),
              (512, 1), (512, 1), (512, 1), (512, 1), (512, 1), (1024, 2), (1024, 1)]

    class MobileNetV1(nn.Module):
        def __init__(self, num_classes, width_mult, small_input):
            super().__init__()

            def depth(c):
                return max(8, int(c * width_mult))

            c_in = depth(32)
            layers = [nn.Sequential(
                nn.Conv2d(3, c_in, 3, stride=1 if small_input else 2, padding=1, bias=False),
                nn.BatchNorm2d(c_in), nn.ReLU(inplace=True))]
            for c, stride in blocks:
                layers.append(DepthwiseSeparable(c_in, depth(c), stride))
                c_in = depth(c)
            self.features = nn.Sequential(*layers)
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(c_in, num_classes)

        def forward(self, x):
            return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))

    return MobileNetV1(num_classes, width_mult, small_input)


class SeparableConv2d(nn.Module):
    """Xception's separable convolution (Chollet 2017): a depthwise conv, then a 1x1.

    Unlike MobileNet's block there is NO batch norm and NO ReLU between the
    depthwise and the pointwise convolutions (Chollet found it trains better
    without), and no bias (a batch norm follows in the network).

    Attributes:
    - depthwise: nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride,
      padding=padding, groups=in_channels, bias=False).
    - pointwise: nn.Conv2d(in_channels, out_channels, 1, bias=False).
    Parameters: kernel_size**2 * in_channels + in_channels * out_channels.
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=1):
        """Inputs:
        - in_channels, out_channels, kernel_size, stride, padding: ints.
        """
        super().__init__()
        self.depthwise = nn.Conv2d(in_channels, in_channels, kernel_size, stride=stride,
                                   padding=padding, groups=in_channels, bias=False)
        self.pointwise = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def forward(self, x):
        """Inputs:
        - x: float tensor of shape (N, in_channels, H, W).

        Returns:
        - tensor of shape (N, out_channels, H_out, W_out) with
          H_out = (H + 2 * padding - kernel_size) // stride + 1 (same for W_out).
        """
        return self.pointwise(self.depthwise(x))


class XceptionMiddleBlock(nn.Module):
    """One block of Xception's middle flow (Chollet 2017, Fig. 5), repeated 8 times there.

    Three times (ReLU, SeparableConv2d(channels, channels, 3), BatchNorm), and a
    residual connection around the three:

    out = x + bn3(sep3(relu(bn2(sep2(relu(bn1(sep1(relu(x)))))))))

    The ReLU comes BEFORE each separable conv, and nothing follows the addition.
    The input x itself must not be modified (a ReLU applied in place to x would
    destroy the shortcut: use nn.ReLU() without inplace for the first one).

    Attributes:
    - sep1, sep2, sep3: SeparableConv2d(channels, channels, 3, stride=1, padding=1).
    - bn1, bn2, bn3: nn.BatchNorm2d(channels).
    - relu: nn.ReLU() (not in place).
    """

    def __init__(self, channels=728):
        """Inputs:
        - channels: int (728 in Xception).
        """
        super().__init__()
        self.relu = nn.ReLU()
        self.sep1 = SeparableConv2d(channels, channels, 3, 1, 1)
        self.bn1 = nn.BatchNorm2d(channels)
        self.sep2 = SeparableConv2d(channels, channels, 3, 1, 1)
        self.bn2 = nn.BatchNorm2d(channels)
        self.sep3 = SeparableConv2d(channels, channels, 3, 1, 1)
        self.bn3 = nn.BatchNorm2d(channels)

    def forward(self, x):
        """Inputs:
        - x: float tensor of shape (N, channels, H, W). It is not modified.

        Returns:
        - tensor of shape (N, channels, H, W).
        """
        out = self.bn1(self.sep1(self.relu(x)))
        out = self.bn2(self.sep2(self.relu(out)))
        out = self.bn3(self.sep3(self.relu(out)))
        return x + out


class DenseLayer(nn.Module):
    """One layer of a DenseNet-B dense block (Huang et al. 2017): BN-ReLU-Conv1x1-BN-ReLU-Conv3x3.

    It receives the concatenation of the feature maps of all the preceding
    layers (in_channels of them) and returns only its own NEW feature maps,
    growth_rate of them; the dense block concatenates them to its input.
    The 1x1 "bottleneck" conv reduces the input to bn_size * growth_rate channels.

    Attributes (the names of torchvision.models.densenet's dense layer):
    - norm1: nn.BatchNorm2d(in_channels); relu1: nn.ReLU.
    - conv1: nn.Conv2d(in_channels, bn_size * growth_rate, 1, bias=False).
    - norm2: nn.BatchNorm2d(bn_size * growth_rate); relu2: nn.ReLU.
    - conv2: nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False).
    """

    def __init__(self, in_channels, growth_rate, bn_size=4):
        """Inputs:
        - in_channels: int, number of input channels.
        - growth_rate: int, k, the number of new feature maps.
        - bn_size: int, the bottleneck has bn_size * k channels.
        """
        super().__init__()
        inner = bn_size * growth_rate
        self.norm1 = nn.BatchNorm2d(in_channels)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(in_channels, inner, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(inner)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(inner, growth_rate, 3, padding=1, bias=False)

    def forward(self, x):
        """Inputs:
        - x: float tensor of shape (N, in_channels, H, W), the concatenated
          features of all the preceding layers. It is not modified.

        Returns:
        - new features: tensor of shape (N, growth_rate, H, W).
        """
        out = self.conv1(self.relu1(self.norm1(x)))
        return self.conv2(self.relu2(self.norm2(out)))


class DenseBlock(nn.Module):
    """A dense block (Huang et al. 2017): every layer receives the feature maps of all
    the preceding ones.

    Layer i (i = 1 .. num_layers) is DenseLayer(in_channels + (i - 1) * growth_rate,
    growth_rate, bn_size); its input is the CONCATENATION (torch.cat on the channel
    axis) of the block's input and the outputs of layers 1 .. i - 1, in that order,
    and the block returns the concatenation of its input and of all the layers'
    outputs: in_channels + num_layers * growth_rate channels.

    Attributes (torchvision's names): denselayer1, denselayer2, ..., denselayerN
    (the DenseLayer modules, registered under these names).
    """

    def __init__(self, num_layers, in_channels, growth_rate, bn_size=4):
        """Inputs:
        - num_layers: int.
        - in_channels: int, channels of the block's input.
        - growth_rate: int, k.
        - bn_size: int, passed to each DenseLayer.
        """
        super().__init__()
        self.num_layers = num_layers
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}",
                            DenseLayer(in_channels + i * growth_rate, growth_rate, bn_size))

    def forward(self, x):
        """Inputs:
        - x: float tensor of shape (N, in_channels, H, W). It is not modified.

        Returns:
        - tensor of shape (N, in_channels + num_layers * growth_rate, H, W):
          torch.cat([x, new_1, ..., new_L], dim=1).
        """
        features = [x]
        for i in range(self.num_layers):
            layer = getattr(self, f"denselayer{i + 1}")
            features.append(layer(torch.cat(features, 1)))
        return torch.cat(features, 1)


class Transition(nn.Module):
    """A DenseNet transition layer (Huang et al. 2017): BN, ReLU, 1x1 conv, 2x2 average pool.

    It sits between two dense blocks: the 1x1 conv changes the number of
    channels (DenseNet-BC compresses them: out_channels = in_channels // 2,
    chosen by the caller) and the pooling halves the height and width.

    Attributes (torchvision's names):
    - norm: nn.BatchNorm2d(in_channels); relu: nn.ReLU.
    - conv: nn.Conv2d(in_channels, out_channels, 1, bias=False).
    - pool: nn.AvgPool2d(2, stride=2).
    """

    def __init__(self, in_channels, out_channels):
        """Inputs:
        - in_channels, out_channels: ints.
        """
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        self.pool = nn.AvgPool2d(2, stride=2)

    def forward(self, x):
        """Inputs:
        - x: float tensor of shape (N, in_channels, H, W). It is not modified.

        Returns:
        - tensor of shape (N, out_channels, H // 2, W // 2).
        """
        return self.pool(self.conv(self.relu(self.norm(x))))


def densenet(growth_rate=32, block_config=(6, 12, 24, 16), num_init_features=64,
             bn_size=4, num_classes=1000, small_input=False):
    """Build a DenseNet-BC (Huang et al. 2017).

    densenet(32, (6, 12, 24, 16), 64) is DenseNet-121: the same modules,
    parameter names and shapes as torchvision.models.densenet121().

    Inputs:
    - growth_rate: int, k.
    - block_config: tuple of ints, the number of layers of each dense block.
    - num_init_features: int, channels of the stem's conv.
    - bn_size: int, the bottleneck width factor of each DenseLayer.
    - num_classes: int.
    - small_input: bool. False: ImageNet's stem, 7x7 conv with stride 2 and
      padding 3, then a 3x3 max pool with stride 2 and padding 1. True: for 32x32
      images, a 3x3 conv with stride 1 and padding 1 and no pooling (``pool0`` is
      nn.Identity()).

    Returns an nn.Module with the attributes (torchvision's names):
    - features: an nn.Sequential whose modules are named conv0
      (nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False)),
      norm0 (BatchNorm2d), relu0 (ReLU), pool0 (nn.MaxPool2d(3, stride=2, padding=1)),
      then denseblock1, transition1, denseblock2, transition2, ..., denseblockB
      (no transition after the last block), then norm5 (BatchNorm2d of the
      last block's output channels). Each transition halves the channels
      (compression 0.5): Transition(c, c // 2).
    - classifier: nn.Linear(channels of the last block, num_classes).
    Its forward: features, ReLU, global average pool, flatten, classifier:
    (N, 3, H, W) images -> (N, num_classes) logits.
    """
    class DenseNet(nn.Module):
        def __init__(self, growth_rate, block_config, num_init_features, bn_size, num_classes,
                     small_input):
            super().__init__()
            if small_input:
                conv0 = nn.Conv2d(3, num_init_features, 3, stride=1, padding=1, bias=False)
                pool0 = nn.Identity()
            else:
                conv0 = nn.Conv2d(3, num_init_features, 7, stride=2, padding=3, bias=False)
                pool0 = nn.MaxPool2d(3, stride=2, padding=1)
            self.features = nn.Sequential()
            self.features.add_module("conv0", conv0)
            self.features.add_module("norm0", nn.BatchNorm2d(num_init_features))
            self.features.add_module("relu0", nn.ReLU(inplace=True))
            self.features.add_module("pool0", pool0)
            channels = num_init_features
            for i, num_layers in enumerate(block_config):
                self.features.add_module(f"denseblock{i + 1}",
                                         DenseBlock(num_layers, channels, growth_rate, bn_size))
                channels += num_layers * growth_rate
                if i != len(block_config) - 1:
                    self.features.add_module(f"transition{i + 1}",
                                             Transition(channels, channels // 2))
                    channels //= 2
            self.features.add_module("norm5", nn.BatchNorm2d(channels))
            self.classifier = nn.Linear(channels, num_classes)

        def forward(self, x):
            out = torch.relu(self.features(x))
            out = torch.flatten(nn.functional.adaptive_avg_pool2d(out, (1, 1)), 1)
            return self.classifier(out)

    return DenseNet(growth_rate, tuple(block_config), num_init_features, bn_size, num_classes,
                    small_input)
