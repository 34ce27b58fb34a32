"""VGG-style ConvNets for CIFAR-10.

    ConvNet(3, 10)                  # Table 1 of the assignment: conv-BN-ReLU blocks and max-pools
    ConvNet(3, 10, arch='preact')   # the later revision: pre-activation residual blocks

Input [batch, 3, 32, 32], output logits [batch, 10]. Default PyTorch initialisation.
"""
import torch
from torch import nn

IMAGE_SIZE = 32  # five 3x3/2/1 max-pools take 32x32 down to 1x1
FINAL_CHANNELS = 512

# Table 1: ('conv', in, out) is Conv3x3 -> BatchNorm -> ReLU; 'pool' is MaxPool 3x3/2/1
TABLE_1 = [
    ('conv1', 'conv', 3, 64), ('maxpool1', 'pool'),
    ('conv2', 'conv', 64, 128), ('maxpool2', 'pool'),
    ('conv3_a', 'conv', 128, 256), ('conv3_b', 'conv', 256, 256), ('maxpool3', 'pool'),
    ('conv4_a', 'conv', 256, 512), ('conv4_b', 'conv', 512, 512), ('maxpool4', 'pool'),
    ('conv5_a', 'conv', 512, 512), ('conv5_b', 'conv', 512, 512), ('maxpool5', 'pool'),
]

# the pre-activation revision: ('conv3', in, out) a plain 3x3 convolution, ('conv1x1', in, out) a
# plain 1x1 convolution, ('preact', channels) x + Conv3x3(ReLU(BN(x))), 'pool' as above
PREACT = [
    ('conv0', 'conv3', 3, 64), ('PreAct1', 'preact', 64), ('conv1', 'conv1x1', 64, 128), ('maxpool1', 'pool'),
    ('PreAct2_a', 'preact', 128), ('PreAct2_b', 'preact', 128), ('conv2', 'conv1x1', 128, 256), ('maxpool2', 'pool'),
    ('PreAct3_a', 'preact', 256), ('PreAct3_b', 'preact', 256), ('conv3', 'conv1x1', 256, 512), ('maxpool3', 'pool'),
    ('PreAct4_a', 'preact', 512), ('PreAct4_b', 'preact', 512), ('maxpool4', 'pool'),
    ('PreAct5_a', 'preact', 512), ('PreAct5_b', 'preact', 512), ('maxpool5', 'pool'),
]
ARCHS = {'vgg': TABLE_1, 'preact': PREACT}


class PreActBlock(nn.Module):
    """x + Conv3x3(ReLU(BN(x))), channels unchanged."""

    def __init__(self, channels):
        super().__init__()
        self.bn = nn.BatchNorm2d(channels)
        self.conv = nn.Conv2d(channels, channels, kernel_size=3, stride=1, padding=1)

    def forward(self, x):
        return x + self.conv(torch.relu(self.bn(x)))


def make_layer(kind, *channels):
    if kind == 'pool':
        return nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    if kind == 'conv':
        c_in, c_out = channels
        return nn.Sequential(nn.Conv2d(c_in, c_out, kernel_size=3, stride=1, padding=1),
                             nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))
    if kind == 'conv3':
        return nn.Conv2d(*channels, kernel_size=3, stride=1, padding=1)
    if kind == 'conv1x1':
        return nn.Conv2d(*channels, kernel_size=1)
    if kind == 'preact':
        return PreActBlock(*channels)
    raise ValueError(f'unknown layer kind {kind!r}')


class ConvNet(nn.Module):
    """`arch='vgg'`: Table 1 exactly; `arch='preact'`: the pre-activation residual variant."""

    def __init__(self, n_channels=3, n_classes=10, arch='vgg'):
        super().__init__()
        if arch not in ARCHS:
            raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
        table = [list(row) for row in ARCHS[arch]]
        table[0][2] = n_channels  # first layer takes the image channels
        self.n_channels = n_channels
        self.features = nn.Sequential()
        for name, kind, *channels in table:
            self.features.add_module(name, make_layer(kind, *channels))
        head = [nn.BatchNorm2d(FINAL_CHANNELS), nn.ReLU(inplace=True)] if arch == 'preact' else []
        self.head = nn.Sequential(*head, nn.Flatten(), nn.Linear(FINAL_CHANNELS, n_classes))

    def forward(self, x):
        """x [batch, n_channels, 32, 32] -> logits [batch, n_classes]."""
        if x.dim() != 4 or x.shape[1] != self.n_channels or x.shape[2:] != (IMAGE_SIZE, IMAGE_SIZE):
            raise ValueError(f'ConvNet expects input [batch, {self.n_channels}, {IMAGE_SIZE}, {IMAGE_SIZE}], '
                             f'got {list(x.shape)}')
        return self.head(self.features(x))  # features: [batch, 512, 1, 1]
