"""Fine-tune an ImageNet ResNet from torchvision on CIFAR-10 (question 4 b, bonus).

    python train_transfer.py --data_dir ../shared/cifar10/cifar-10-batches-py              # resnet18, ImageNet weights
    python train_transfer.py --weights ~/resnet18-f37072fd.pth --data_dir ...               # a local weights file
    python train_transfer.py --weights none --data_dir ...                                  # the same network from scratch
    python train_transfer.py --freeze --input resize --data_dir ...                         # linear probe on 224x224 inputs

Input adaptation: 'stem' swaps the 7x7/2 convolution and max-pool for a 3x3/1
convolution (initialised from the centre of the pretrained 7x7 kernels), so 32x32
images keep their resolution; 'resize' upsamples them to 224x224 on the device and
keeps the network as it is. Images are normalised with the ImageNet mean and std.
--freeze trains only the new classifier (backbone and its BatchNorm statistics fixed).
Writes history.json, CSVs, curves.png and best_model.pt into --output_dir.
"""
import os
import urllib.error

import numpy as np
import torch
from torch import nn
from torchvision import models

import cifar10_utils
from cifar10_download import maybe_download
from cli_utils import Switch, parse_settings, run_cli, training_parser
from torch_training import add_torch_flags, train_torch
from training_utils import RunError, exit_status, require_choice, run_config

MODELS = {'resnet18': (models.resnet18, models.ResNet18_Weights),
          'resnet34': (models.resnet34, models.ResNet34_Weights),
          'resnet50': (models.resnet50, models.ResNet50_Weights)}
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
IMAGENET_SIZE = 224  # input side for --input resize
PIXEL_MAX = 255.0

INPUT_MODES = ('stem', 'resize')
EVAL_BATCH_SIZE = 250


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
        return torch.load(weights, map_location='cpu', weights_only=True)
    except Exception as err:  # any unreadable file: say which and why
        raise TransferError(f"cannot read weights file '{weights}' ({type(err).__name__}: {err})") from None


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


def imagenet_normalized(data_dir):
    """CIFAR-10 splits with images scaled to [0, 1] and normalised per channel with the
    ImageNet statistics (what the pretrained weights expect), labels one-hot."""
    maybe_download(data_dir)
    x_train, y_train, x_test, y_test, source = cifar10_utils.load_cifar10_files(data_dir)
    mean = np.array(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1) * PIXEL_MAX
    scale = 1.0 / (np.array(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1) * PIXEL_MAX)

    def split(images, labels):
        normalized = np.subtract(images, mean, dtype=np.float32)
        normalized *= scale
        return cifar10_utils.DataSet(normalized, cifar10_utils.dense_to_one_hot(labels, cifar10_utils.N_CLASSES))

    empty = cifar10_utils.DataSet(np.zeros((0, *cifar10_utils.IMAGE_SHAPE), np.float32),
                                  np.zeros((0, cifar10_utils.N_CLASSES), np.float32))
    splits = cifar10_utils.DataSplits(train=split(x_train, y_train), validation=empty, test=split(x_test, y_test))
    splits.source = source()
    return splits


def train(*, model='resnet18', weights='imagenet', input_mode='stem', freeze=False, learning_rate=1e-2,
          max_steps=2000, batch_size=128, eval_freq=500, seed=42, data_dir=cifar10_utils.CIFAR10_FOLDER,
          optimizer='momentum', momentum=0.9, weight_decay=5e-4, scheduler='cosine', warmup_steps=0,
          label_smoothing=0.0, augment=True, ema_decay=None, tta=False, epochs=None, device='auto', output_dir=None,
          progress=True, data=None):
    """Fine-tune and return the run record. The defaults are the usual fine-tuning recipe: SGD with
    momentum and a cosine schedule. `data`: splits from imagenet_normalized()."""
    config = run_config(f'transfer_{model}', locals())
    require_choice('model', model, MODELS)
    require_choice('input_mode', input_mode, INPUT_MODES)
    config.update(channels_last=None, eval_batch_size=EVAL_BATCH_SIZE)  # None: channels_last on CUDA only
    state = load_weights(model, weights)  # before any data is loaded: a missing file fails at once
    return train_torch(config, lambda: build_model(model, state, input_mode, freeze),
                       lambda: data if data is not None else imagenet_normalized(data_dir),
                       output_dir=output_dir, progress=progress)


def build_parser():
    parser = training_parser(__doc__, train, __file__)
    parser.add_argument('--model', choices=sorted(MODELS), help='which torchvision ResNet')
    parser.add_argument('--weights',
                        help="'imagenet' (torchvision download), a local state_dict file, or 'none' (from scratch)")
    parser.add_argument('--input', dest='input_mode', choices=INPUT_MODES,
                        help='stem: 3x3/1 first convolution, no max-pool, 32x32 inputs; resize: upsample to 224x224')
    parser.add_argument('--freeze', action=Switch, help='train only the new classifier')
    add_torch_flags(parser)
    return parser


def main(argv=None):
    return exit_status(train(**parse_settings(build_parser(), argv=argv)))


if __name__ == '__main__':
    raise SystemExit(run_cli(main))
