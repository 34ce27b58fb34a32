"""ImageNet ResNets from torchvision, adapted to CIFAR-10 for fine-tuning (question 4 b, bonus).

    state = load_weights('resnet18', 'imagenet')      # or a local .pth file, or 'none' for random weights
    model = build_model('resnet18', state, input_mode='stem', freeze=False)   # logits [batch, 10]

Input adaptation: 'stem' swaps the 7x7/2 convolution and max-pool for a 3x3/1 convolution
(initialised from the centre of the pretrained 7x7 kernels), so 32x32 images keep their
resolution; 'resize' upsamples them to 224x224 and keeps the network as it is. The pretrained
weights expect images normalised with IMAGENET_MEAN and IMAGENET_STD (train_transfer.py does it).
"""
import os
import urllib.error

import torch
from torch import nn
from torchvision import models

import cifar10_utils
from training_utils import RunError

MODELS = {'resnet18': (models.resnet18, models.ResNet18_Weights),
          'resnet34': (models.resnet34, models.ResNet34_Weights),
          'resnet50': (models.resnet50, models.ResNet50_Weights)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_SIZE = 224  # input side for --input resize

INPUT_MODES = ('stem', 'resize')


class TransferError(RunError):
    """Weights that cannot be had; the message says what to do instead."""


class TransferNet(nn.Module):
    """A ResNet with a new classifier; `frozen` keeps everything but the classifier fixed,
    BatchNorm statistics included (the backbone stays in eval mode)."""

    def __init__(self, net, frozen=False, resize_to=None):
        super().__init__()
        self.net, self.frozen, self.resize_to = net, frozen, resize_to
        if frozen:
            for name, param in net.named_parameters():
                param.requires_grad_(name.startswith('fc.'))

    def train(self, mode=True):
        super().train(mode)
        if self.frozen:
            self.net.eval()
            self.net.fc.train(mode)
        return self

    def forward(self, x):
        if self.resize_to:  # [B, 3, 32, 32] -> [B, 3, 224, 224]
            x = nn.functional.interpolate(x, size=self.resize_to, mode='bilinear', align_corners=False)
        return self.net(x)


def load_weights(name, weights):
    """State dict for 'imagenet' (torchvision's download) or a file path; None for 'none'."""
    if weights == 'none':
        return None
    if weights == 'imagenet':
        try:
            return MODELS[name][1].DEFAULT.get_state_dict(progress=True)
        except (urllib.error.URLError, OSError, RuntimeError) as err:
            raise TransferError(f'cannot download the ImageNet weights of {name} ({getattr(err, "reason", err)}); '
                                f'pass --weights PATH to a local {name} .pth file, or --weights none to train '
                                'from scratch') from None
    if not os.path.isfile(weights):
        raise TransferError(f"weights file '{weights}' not found; pass a torchvision {name} state_dict (.pth), "
                            "'imagenet' or 'none'")
    try:
        return torch.load(weights, map_location='cpu', weights_only=True)  # tensors and plain values, never code
    except Exception as err:  # noqa: BLE001 (broken or hostile: our own line, not torch's advice to trust the file)
        raise TransferError(f"cannot read weights file '{weights}' as a state_dict of tensors ({type(err).__name__}); "
                            f"pass a torchvision {name} state_dict (.pth), 'imagenet' or 'none'") from None


def build_model(name='resnet18', state=None, input_mode='stem', freeze=False, n_classes=cifar10_utils.N_CLASSES):
    """The ResNet `name` with the state dict `state` (from load_weights; None: random weights),
    adapted to 32x32 inputs and a new n_classes classifier."""
    net = MODELS[name][0](weights=None)
    if state is not None:
        try:
            net.load_state_dict(state)
        except RuntimeError as err:
            raise TransferError(f'the weights do not fit {name}: {str(err).splitlines()[0]}') from None
    if input_mode == 'stem':
        stem = nn.Conv2d(3, net.conv1.out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        if state is not None:  # keep the pretrained low-level filters: the centre of each 7x7 kernel
            with torch.no_grad():
                stem.weight.copy_(net.conv1.weight[:, :, 2:5, 2:5])
        net.conv1, net.maxpool = stem, nn.Identity()
    net.fc = nn.Linear(net.fc.in_features, n_classes)
    return TransferNet(net, frozen=freeze, resize_to=IMAGENET_SIZE if input_mode == 'resize' else None)
