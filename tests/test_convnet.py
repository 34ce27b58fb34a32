"""ConvNet: Table 1 exactly (layers and parameter count), the pre-activation variant,
input checks, learning on synthetic data, the presets (the command line: test_cli.py)."""
import json

import pytest
import torch
from torch import nn

import train_convnet_pytorch
from convnet_pytorch import ConvNet, PreActBlock

# Table 1 of the assignment, as printed: (name, kernel, stride, padding, channels in, out)
TABLE_1 = [
    ('conv1', 3, 1, 1, 3, 64), ('maxpool1', 3, 2, 1, 64, 64),
    ('conv2', 3, 1, 1, 64, 128), ('maxpool2', 3, 2, 1, 128, 128),
    ('conv3_a', 3, 1, 1, 128, 256), ('conv3_b', 3, 1, 1, 256, 256), ('maxpool3', 3, 2, 1, 256, 256),
    ('conv4_a', 3, 1, 1, 256, 512), ('conv4_b', 3, 1, 1, 512, 512), ('maxpool4', 3, 2, 1, 512, 512),
    ('conv5_a', 3, 1, 1, 512, 512), ('conv5_b', 3, 1, 1, 512, 512), ('maxpool5', 3, 2, 1, 512, 512),
]


def test_table_1_layer_sequence():
    model = ConvNet(3, 10)
    names = [name for name, _ in model.features.named_children()]
    assert names == [row[0] for row in TABLE_1]
    for name, kernel, stride, padding, c_in, c_out in TABLE_1:
        block = getattr(model.features, name)
        if name.startswith('maxpool'):
            assert isinstance(block, nn.MaxPool2d)
            assert (block.kernel_size, block.stride, block.padding) == (kernel, stride, padding)
        else:  # conv -> BatchNorm -> ReLU
            conv, bn, relu = block
            assert isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
            assert conv.kernel_size == (kernel, kernel) and conv.stride == (stride, stride)
            assert conv.padding == (padding, padding)
            assert (conv.in_channels, conv.out_channels, bn.num_features) == (c_in, c_out, c_out)
    linear = model.head[-1]
    assert isinstance(linear, nn.Linear) and (linear.in_features, linear.out_features) == (512, 10)


def test_table_1_parameter_count():
    # per conv block: 3x3 weights + bias, BatchNorm scale + shift; then the 512 -> 10 linear layer
    expected = sum(k * k * c_in * c_out + c_out + 2 * c_out
                   for name, k, _, _, c_in, c_out in TABLE_1 if name.startswith('conv'))
    expected += 512 * 10 + 10
    assert sum(p.numel() for p in ConvNet(3, 10).parameters()) == expected == 9_231_114


def test_preact_variant_shapes():
    model = ConvNet(3, 10, arch='preact')
    x = torch.randn(2, 3, 32, 32)
    sizes = {}
    for name, layer in model.features.named_children():
        x = layer(x)
        sizes[name] = tuple(x.shape[1:])
    assert sizes['conv0'] == (64, 32, 32) and sizes['PreAct1'] == (64, 32, 32)
    assert sizes['maxpool1'] == (128, 16, 16) and sizes['PreAct2_b'] == (128, 16, 16)
    assert sizes['maxpool2'] == (256, 8, 8) and sizes['maxpool3'] == (512, 4, 4)
    assert sizes['maxpool4'] == (512, 2, 2) and sizes['maxpool5'] == (512, 1, 1)
    assert sum(isinstance(m, PreActBlock) for m in model.modules()) == 9
    assert isinstance(model.head[0], nn.BatchNorm2d) and isinstance(model.head[1], nn.ReLU)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)


def test_preact_block_is_residual():
    block = PreActBlock(8)
    nn.init.zeros_(block.conv.weight)
    nn.init.zeros_(block.conv.bias)
    x = torch.randn(2, 8, 4, 4)
    assert torch.equal(block(x), x)  # x + Conv(ReLU(BN(x))) with a zero convolution is the identity


@pytest.mark.parametrize('shape', [(2, 1, 32, 32), (2, 3, 28, 28), (3, 32, 32)])
def test_wrong_input_shape(shape):
    with pytest.raises(ValueError, match=r'expects input \[batch, 3, 32, 32\], got'):
        ConvNet(3, 10)(torch.randn(*shape))


def test_bad_arch():
    with pytest.raises(ValueError, match='arch must be one of'):
        ConvNet(3, 10, arch='resnet')


@pytest.mark.parametrize('arch', ['vgg', 'preact'])
def test_few_steps_lower_the_loss(arch):
    torch.manual_seed(0)
    x = torch.randn(8, 3, 32, 32)
    y = torch.arange(8) % 10
    model = ConvNet(3, 10, arch)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    for _ in range(4):
        loss = nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]


@pytest.mark.parametrize('name', sorted(train_convnet_pytorch.PRESETS))
def test_presets_run(name, fake_cifar_dir, tmp_path):
    preset = train_convnet_pytorch.PRESETS[name]
    args = train_convnet_pytorch.parse_args(['--preset', name, '--max_steps', '2', '--batch_size', '4', '--eval_freq',
                                             '2', '--data_dir', fake_cifar_dir, '--output_dir', str(tmp_path), '--quiet'])
    record = train_convnet_pytorch.train(args)
    assert record['summary']['status'] == 'completed' and record['test']['step'] == [2]
    assert record['config']['name'] == f"convnet_{preset.get('arch', 'vgg')}"
    assert all(record['config'][key] == value for key, value in preset.items() if key not in ('epochs', 'batch_size',
                                                                                             'eval_freq'))


def test_flip_tta_and_weight_averaging(fake_cifar_dir, tmp_path):
    record = train_convnet_pytorch.train(train_convnet_pytorch.parse_args(
        ['--max_steps', '4', '--eval_freq', '2', '--batch_size', '4', '--ema_decay', '0.5', '--tta', '--data_dir',
         fake_cifar_dir, '--output_dir', str(tmp_path), '--quiet']))
    assert record['summary']['status'] == 'completed'
    assert len(record['test']['accuracy_tta']) == 2  # beside every plain evaluation
    assert record['summary']['final_test_accuracy_tta'] == record['test']['accuracy_tta'][-1]
    assert list(json.loads((tmp_path / 'history.json').read_text())['test']) == ['step', 'loss', 'accuracy', 'accuracy_tta']


def test_flip_tta_averages_an_image_and_its_mirror():
    from torch_training import evaluate

    class LeftHalf(nn.Module):
        """Class 0 scores the left half of an image, class 1 a constant 1: a mirror image scores its right half."""

        def forward(self, x):
            return torch.stack([x[..., :2].sum((1, 2, 3)), torch.ones(len(x))], dim=1)
    images = torch.zeros(3, 1, 1, 4)
    images[0, ..., 0] = 3.0  # left 3: class 0 plainly (3 > 1) and averaged with its mirror ((3 + 0) / 2 > 1)
    images[1, ..., 3] = 3.0  # right 3: class 1 plainly (0 < 1), class 0 averaged (1.5 > 1)
    images[2, ..., 0] = 1.5  # left 1.5: class 0 plainly (1.5 > 1), class 1 averaged (0.75 < 1)
    _, accuracy, more = evaluate(LeftHalf(), images, torch.tensor([0, 0, 1]), batch_size=2, flip_tta=True)
    assert accuracy == pytest.approx(1 / 3) and more == {'accuracy_tta': 1.0}
