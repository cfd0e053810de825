"""Convolutional families, compact variants sized for small images (8x8 digits, 28x28 MNIST, 32x32 CIFAR).

The stock torchvision models are built for 224 px ImageNet: their stems and pools downsample 32x, which
leaves nothing of an 8x8 digit. Each family here keeps its paper's building block (torchvision's own
`BasicBlock` and `Inception` where they fit), swaps the stem for a stride-1 3x3 or 5x5 conv, and ends in
adaptive pooling so any input of 8 px or more builds.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import torch
from pydantic import Field, StrictBool, StrictInt
from torch import nn

from pipeline.datainfo import DataInfo
from pipeline.errors import ConfigError
from pipeline.models import register_model
from pipeline.registry import Count, Float, Options, Width

ConvActivation = Literal["relu", "leaky_relu", "tanh", "sigmoid"]

_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}


def make_activation(name: str) -> nn.Module:
    return _ACTIVATIONS[name]()


def image_shape(info: DataInfo, family: str) -> tuple[int, int, int]:
    """(C, H, W) of the input, or a ConfigError naming the family when the data is not an image."""
    if len(info.input_shape) != 3:
        raise ConfigError(f"{family} needs image input (C, H, W), got shape {tuple(info.input_shape)}", key="model")
    c, h, w = info.input_shape
    return c, h, w


def num_outputs(info: DataInfo) -> int:
    # binary and one-output regression data declare num_classes=1; never build a 0-wide head
    return max(info.num_classes, 1)


def conv_act(
    n_in: int, n_out: int, *, activation: str, batch_norm: bool, kernel_size: int = 3, **kwargs
) -> nn.Sequential:
    """Conv, optional BatchNorm, activation. Keyword-compatible with torchvision's `conv_block` hook."""
    # the conv bias is redundant when BatchNorm's shift follows
    layers: list[nn.Module] = [nn.Conv2d(n_in, n_out, kernel_size, bias=not batch_norm, **kwargs)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(n_out))
    layers.append(make_activation(activation))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- LeNet-5


class LeNetOptions(Options):
    width: Width = 6  # first conv's channels; the second gets 8/3 of it (6 -> 16 as in 1998)
    hidden: list[Width] = Field(default_factory=lambda: [120, 84])
    activation: ConvActivation = "relu"
    pool: Literal["max", "avg"] = "max"  # "avg" is closer to LeNet's trainable subsampling
    batch_norm: StrictBool = False


@register_model("lenet", LeNetOptions, inputs="image")
def build_lenet(opts: LeNetOptions, info: DataInfo) -> nn.Module:
    """LeNet-5: conv5-pool-conv5-pool-fc120-fc84-out."""
    c, h, w = image_shape(info, "lenet")
    c2 = max(1, opts.width * 8 // 3)
    pool = nn.MaxPool2d if opts.pool == "max" else nn.AvgPool2d
    # The first conv pads 2, as LeCun padded 28 px MNIST to 32. The second is unpadded (classic 10x10 maps on
    # MNIST) unless the map is too small for a 5x5 kernel, as on 8x8 digits.
    pad2 = 0 if min(h, w) // 2 >= 5 else 2
    layers: list[nn.Module] = [
        conv_act(c, opts.width, kernel_size=5, padding=2, activation=opts.activation, batch_norm=opts.batch_norm),
        pool(2),
        conv_act(opts.width, c2, kernel_size=5, padding=pad2, activation=opts.activation, batch_norm=opts.batch_norm),
        pool(2),
        # 5x5 is the map LeNet-5 had at this point (16*5*5 = 400 features); adaptive pooling keeps it for any size
        nn.AdaptiveAvgPool2d(5),
        nn.Flatten(),
    ]
    n_in = c2 * 25
    for width in opts.hidden:
        layers += [nn.Linear(n_in, width), make_activation(opts.activation)]
        n_in = width
    layers.append(nn.Linear(n_in, num_outputs(info)))
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- AlexNet


class AlexNetOptions(Options):
    width: Width = 16  # first conv's channels (64 in AlexNet)
    hidden: Width = 256  # the two fully connected layers (4096 in AlexNet)
    dropout: Float = Field(default=0.5, ge=0.0, lt=1.0)
    activation: ConvActivation = "relu"
    batch_norm: StrictBool = False  # AlexNet used local response normalization; BN is the modern stand-in


@register_model("alexnet", AlexNetOptions, inputs="image")
def build_alexnet(opts: AlexNetOptions, info: DataInfo) -> nn.Module:
    """Five convs and three overlapping max pools, channel ratios 1:3:6:4:4 as torchvision's AlexNet."""
    c, _, _ = image_shape(info, "alexnet")
    # torchvision's 11x11 stride-4 stem would shrink 32 px to 7 before the first pool; a stride-1 5x5 keeps the
    # five-conv layout meaningful on small images.
    w = opts.width
    chans = [w, 3 * w, 6 * w, 4 * w, 4 * w]
    block = partial(conv_act, activation=opts.activation, batch_norm=opts.batch_norm)
    # overlapping pools (3x3, stride 2) as in the paper; padding 1 so a 1x1 map stays 1x1 instead of vanishing
    features = nn.Sequential(
        block(c, chans[0], kernel_size=5, padding=2),
        nn.MaxPool2d(3, 2, padding=1),
        block(chans[0], chans[1], kernel_size=5, padding=2),
        nn.MaxPool2d(3, 2, padding=1),
        block(chans[1], chans[2], padding=1),
        block(chans[2], chans[3], padding=1),
        block(chans[3], chans[4], padding=1),
        nn.MaxPool2d(3, 2, padding=1),
        nn.AdaptiveAvgPool2d(2),
    )
    classifier = nn.Sequential(
        nn.Flatten(),
        nn.Dropout(opts.dropout),
        nn.Linear(chans[4] * 4, opts.hidden),
        make_activation(opts.activation),
        nn.Dropout(opts.dropout),
        nn.Linear(opts.hidden, opts.hidden),
        make_activation(opts.activation),
        nn.Linear(opts.hidden, num_outputs(info)),
    )
    return nn.Sequential(features, classifier)


# ---------------------------------------------------------------- VGG


class VGGOptions(Options):
    width: Width = 16  # first stage's channels, doubled each stage (64 in VGG)
    depth: StrictInt = Field(default=3, ge=1, le=5)  # stages, each ending in a 2x2 max pool
    blocks: Count = 2  # 3x3 convs per stage
    activation: ConvActivation = "relu"
    batch_norm: StrictBool = False


@register_model("vgg", VGGOptions, inputs="image")
def build_vgg(opts: VGGOptions, info: DataInfo) -> nn.Module:
    """Stages of 3x3 convs with doubling channels, then global pooling and one linear layer."""
    c, h, w = image_shape(info, "vgg")
    # torchvision's VGG hard-codes 3 input channels and a 512*7*7 classifier; the compact form replaces the
    # three 4096-wide layers by global average pooling, as the CIFAR variants of VGG do.
    layers: list[nn.Module] = []
    size = min(h, w)
    n_in = c
    for stage in range(opts.depth):
        n_out = opts.width * 2**stage
        for _ in range(opts.blocks):
            layers.append(conv_act(n_in, n_out, padding=1, activation=opts.activation, batch_norm=opts.batch_norm))
            n_in = n_out
        # a 2x2 pool of a 1x1 map is empty; deep variants on 8x8 digits just stop shrinking
        if size >= 2:
            layers.append(nn.MaxPool2d(2))
            size //= 2
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(n_in, num_outputs(info))]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- GoogLeNet

# torchvision's Inception configs for 3a..5b: (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj), at width 64
_INCEPTION_STAGES: list[list[tuple[int, ...]]] = [
    [(64, 96, 128, 16, 32, 32), (128, 128, 192, 32, 96, 64)],
    [
        (192, 96, 208, 16, 48, 64),
        (160, 112, 224, 24, 64, 64),
        (128, 128, 256, 24, 64, 64),
        (112, 144, 288, 32, 64, 64),
        (256, 160, 320, 32, 128, 128),
    ],
    [(256, 160, 320, 32, 128, 128), (384, 192, 384, 48, 128, 128)],
]


class GoogLeNetOptions(Options):
    width: Width = 16  # scales every Inception branch; 64 is the paper's size
    depth: StrictInt = Field(default=3, ge=1, le=3)  # Inception stages kept: 3 (2 blocks), 4 (5 blocks), 5 (2 blocks)
    dropout: Float = Field(default=0.2, ge=0.0, lt=1.0)
    activation: ConvActivation = "relu"
    batch_norm: StrictBool = True  # torchvision's BasicConv2d has BN


@register_model("googlenet", GoogLeNetOptions, inputs="image")
def build_googlenet(opts: GoogLeNetOptions, info: DataInfo) -> nn.Module:
    """Inception blocks 3a..5b (torchvision's `Inception`) on a stride-1 3x3 stem, without auxiliary heads."""
    from torchvision.models.googlenet import Inception as inception  # lazy: see _blocks

    c, _, _ = image_shape(info, "googlenet")
    scale = opts.width / 64

    def scaled(ch: int) -> int:
        return max(1, round(ch * scale))

    block = partial(conv_act, activation=opts.activation, batch_norm=opts.batch_norm)
    # torchvision's stem (7x7 stride 2, pools) shrinks 8x before Inception 3a; one 3x3 conv keeps the resolution.
    # The auxiliary classifiers are left out: they need 14x14 maps and only add a training loss.
    n_in = scaled(192)
    layers: list[nn.Module] = [block(c, n_in, padding=1)]
    for i, stage in enumerate(_INCEPTION_STAGES[: opts.depth]):
        if i > 0:
            layers.append(nn.MaxPool2d(3, 2, padding=1, ceil_mode=True))
        for cfg in stage:
            branches = [scaled(ch) for ch in cfg]
            layers.append(inception(n_in, *branches, conv_block=block))
            # the block concatenates branches 1x1, 3x3, "5x5" and pool projection
            n_in = branches[0] + branches[2] + branches[4] + branches[5]
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(opts.dropout), nn.Linear(n_in, num_outputs(info))]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- ResNet


def _blocks() -> tuple[type[nn.Module], type[nn.Module]]:
    """torchvision's BasicBlock and a plain variant, imported on first use: importing torchvision.models
    costs about 3 s, which every trial process would otherwise pay even for an MLP."""
    from torchvision.models.resnet import BasicBlock

    class PlainBlock(BasicBlock):
        """BasicBlock without the shortcut: the 'plain' network that He et al. compare ResNets against."""

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.relu(self.bn1(self.conv1(x)))
            return self.relu(self.bn2(self.conv2(out)))

    return BasicBlock, PlainBlock


class ResNetOptions(Options):
    width: Width = 16  # first stage's channels, doubled each stage
    depth: StrictInt = Field(default=3, ge=1, le=4)  # stages; all but the first downsample 2x
    blocks: Count = 1  # BasicBlocks per stage: 6*blocks+2 layers with 3 stages (ResNet-20: 3)
    activation: ConvActivation = "relu"
    batch_norm: StrictBool = True
    residual: StrictBool = True  # False gives the plain network of the same depth


@register_model("resnet", ResNetOptions, inputs="image")
def build_resnet(opts: ResNetOptions, info: DataInfo) -> nn.Module:
    """CIFAR-style ResNet (He et al. 2016, section 4.2) from torchvision's `BasicBlock`."""
    c, _, _ = image_shape(info, "resnet")
    # torchvision's ResNet stem (7x7 stride 2 + max pool) and 64-wide stages are ImageNet-sized; the CIFAR
    # layout has a 3x3 stem and stride-2 convs only at stage boundaries, which suits 8-32 px inputs.
    norm = nn.BatchNorm2d if opts.batch_norm else nn.Identity  # Identity swallows BatchNorm's channel argument
    basic, plain = _blocks()
    block_cls = basic if opts.residual else plain
    layers: list[nn.Module] = [
        conv_act(c, opts.width, padding=1, activation=opts.activation, batch_norm=opts.batch_norm)
    ]
    n_in = opts.width
    for stage in range(opts.depth):
        n_out = opts.width * 2**stage
        for b in range(opts.blocks):
            stride = 2 if stage > 0 and b == 0 else 1
            downsample = None
            # projection shortcut (option B) when the shape changes; a plain block has no shortcut to project
            if opts.residual and (stride != 1 or n_in != n_out):
                downsample = nn.Sequential(nn.Conv2d(n_in, n_out, 1, stride=stride, bias=False), norm(n_out))
            block = block_cls(n_in, n_out, stride=stride, downsample=downsample, norm_layer=norm)
            # BasicBlock hard-codes ReLU; its one activation module is used at both places, so swap that
            block.relu = make_activation(opts.activation)
            layers.append(block)
            n_in = n_out
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(n_in, num_outputs(info))]
    return nn.Sequential(*layers)


# ---------------------------------------------------------------- deep plain CNN (initialization study)


class DeepCNNOptions(Options):
    width: Width = 16
    depth: Count = 8  # conv3x3 layers, all at input resolution
    activation: ConvActivation = "relu"


@register_model("deep_cnn", DeepCNNOptions, inputs="image")
def build_deep_cnn(opts: DeepCNNOptions, info: DataInfo) -> nn.Module:
    """`depth` conv3x3 layers with no normalization, so only the initialization keeps signals alive."""
    c, _, _ = image_shape(info, "deep_cnn")
    layers: list[nn.Module] = []
    n_in = c
    for _ in range(opts.depth):
        layers += [nn.Conv2d(n_in, opts.width, 3, padding=1), make_activation(opts.activation)]
        n_in = opts.width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(n_in, num_outputs(info))]
    return nn.Sequential(*layers)
