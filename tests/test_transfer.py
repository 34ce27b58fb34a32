"""transfer_pytorch.py and train_transfer.py with random weights on tiny synthetic data: input adaptation,
freezing, local weight files, and a clear message when the weights cannot be had."""
import urllib.error

import pytest
import torch
from torchvision import models

import train_transfer
from conftest import OFFLINE, assert_one_line_error, run_script
from transfer_pytorch import IMAGENET_MEAN, IMAGENET_STD, TransferError, build_model, load_weights


@pytest.mark.parametrize('input_mode, side', [('stem', 32), ('resize', 224)])
def test_input_adaptation(input_mode, side):
    model = build_model('resnet18', None, input_mode).eval()
    seen = []
    model.net.conv1.register_forward_hook(lambda module, inputs, out: seen.append(inputs[0].shape[-1]))
    with torch.no_grad():
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert seen == [side]
    assert (model.net.conv1.kernel_size == (3, 3)) == (input_mode == 'stem')


def test_local_weights_file_and_freeze(tmp_path):
    torch.manual_seed(0)
    reference = models.resnet18(weights=None)
    path = tmp_path / 'resnet18.pth'
    torch.save(reference.state_dict(), path)
    model = build_model('resnet18', load_weights('resnet18', str(path)), 'stem', freeze=True)
    # the new 3x3 stem starts from the centre of the file's 7x7 kernels
    assert torch.equal(model.net.conv1.weight, reference.conv1.weight[:, :, 2:5, 2:5])
    assert torch.equal(model.net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)
    trainable = [name for name, p in model.named_parameters() if p.requires_grad]
    assert trainable == ['net.fc.weight', 'net.fc.bias']
    model.train()
    assert not model.net.layer1[0].bn1.training and model.net.fc.training  # frozen BatchNorm statistics
    stats = model.net.bn1.running_mean.clone()
    opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.1)
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 3, 32, 32)), torch.arange(4))
    loss.backward()
    opt.step()
    assert torch.equal(model.net.bn1.running_mean, stats)
    assert torch.equal(model.net.layer1[0].conv1.weight, reference.layer1[0].conv1.weight)


def test_offline_imagenet_weights_give_a_clear_error(monkeypatch):
    def offline(*args, **kwargs):
        raise urllib.error.URLError('Name or service not known')
    monkeypatch.setattr(models.ResNet18_Weights.DEFAULT.__class__, 'get_state_dict', offline)
    with pytest.raises(TransferError, match='cannot download the ImageNet weights of resnet18.*--weights none'):
        load_weights('resnet18', 'imagenet')


def test_bad_weight_files(tmp_path):
    with pytest.raises(TransferError, match="not found"):
        load_weights('resnet18', str(tmp_path / 'missing.pth'))
    (tmp_path / 'junk.pth').write_bytes(b'junk')
    with pytest.raises(TransferError, match='cannot read weights file'):
        load_weights('resnet18', str(tmp_path / 'junk.pth'))
    torch.save(models.resnet34(weights=None).state_dict(), tmp_path / 'r34.pth')
    with pytest.raises(TransferError, match='do not fit resnet18'):
        build_model('resnet18', load_weights('resnet18', str(tmp_path / 'r34.pth')))


def test_a_weights_file_that_would_run_code_is_refused(tmp_path):
    import os
    marker = tmp_path / 'pwned'

    class RunsACommand:
        def __reduce__(self):
            return os.system, (f'touch {marker}',)
    torch.save({'conv1.weight': RunsACommand()}, tmp_path / 'evil.pth')
    with pytest.raises(TransferError, match='cannot read weights file'):
        load_weights('resnet18', str(tmp_path / 'evil.pth'))  # torch.load(weights_only=True) refuses the global
    assert not marker.exists()
    result = run_script('train_transfer', ['--weights', str(tmp_path / 'evil.pth'), '--data_dir', str(tmp_path / 'none'),
                                           '--output_dir', str(tmp_path / 'out')], env=OFFLINE)
    assert result.returncode == 1 and not marker.exists()
    assert_one_line_error(result.stderr, f"cannot read weights file '{tmp_path / 'evil.pth'}' as a state_dict of tensors")
    assert 'weights_only=False' not in result.stderr  # never the advice to load it unrestricted


def test_missing_weights_fail_before_any_data_is_loaded(tmp_path):
    with pytest.raises(TransferError, match='not found'):
        train_transfer.train(weights=str(tmp_path / 'missing.pth'), data_dir=str(tmp_path / 'none'), progress=False)
    assert not (tmp_path / 'none').exists()


def test_fine_tuning_run_on_synthetic_data(fake_cifar_dir, tmp_path):
    record = train_transfer.train(weights='none', max_steps=3, eval_freq=3, batch_size=8, data_dir=fake_cifar_dir,
                                  output_dir=str(tmp_path), progress=False)
    assert record['summary']['status'] == 'completed' and record['test']['step'] == [3]
    assert record['config']['weights'] == 'none' and (tmp_path / 'best_model.pt').is_file()


def test_imagenet_normalization(fake_cifar_dir):
    splits = train_transfer.imagenet_normalized(fake_cifar_dir)
    images = splits['train'].images
    assert images.dtype == 'float32' and images.shape[1:] == (3, 32, 32)
    # a 0 pixel maps to -mean/std, a 255 pixel to (1 - mean)/std, per channel
    for c, (mean, std) in enumerate(zip(IMAGENET_MEAN, IMAGENET_STD)):
        assert images[:, c].min() >= -mean / std - 1e-5 and images[:, c].max() <= (1 - mean) / std + 1e-5
