"""How big a network is: its parameters and the multiply-adds of one image's forward pass, and the
network a run record trained, rebuilt from its config."""
import numpy as np
import torch

import cifar10_utils
from convnet_pytorch import ConvNet
from mlp_pytorch import MLP


def macs_per_image(model):
    """Multiply-adds of one forward pass of a CIFAR-10 image through the model's convolutions and linear layers."""
    total = []

    def count(module, inputs, output):
        if isinstance(module, torch.nn.Conv2d):
            total.append(output[0].numel() * module.in_channels // module.groups * np.prod(module.kernel_size))
        elif isinstance(module, torch.nn.Linear):
            total.append(module.in_features * module.out_features)
    hooks = [m.register_forward_hook(count) for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    with torch.no_grad():
        model.eval()(torch.zeros(1, *cifar10_utils.IMAGE_SHAPE))
    for hook in hooks:
        hook.remove()
    return int(sum(total))


def network_of(record):
    """The model a run record trained, rebuilt from its config (for counting parameters and arithmetic)."""
    c = record['config']
    if c['name'].startswith('convnet'):
        return ConvNet(cifar10_utils.IMAGE_SHAPE[0], cifar10_utils.N_CLASSES, c['arch'])
    return MLP(cifar10_utils.IMAGE_SIZE, c['dnn_hidden_units'], cifar10_utils.N_CLASSES,
               activation=c['activation'], norm=c['norm'], dropout=c['dropout'])


def n_parameters(model):
    return sum(p.numel() for p in model.parameters())
