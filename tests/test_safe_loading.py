"""Batch files from elsewhere cannot run code: the loader builds numpy arrays and nothing else,
checks what it built, and says in one line which file asked for what."""
import os
import pickle
import pickletools
import struct

import numpy as np
import pytest
from conftest import assert_one_line_error, fake_batch, run_script

import cifar10_utils
from cifar10_utils import CIFAR10Error


class RunsACommand:
    """Unpickling this would run a shell command that leaves a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


def write_batch(folder, name, obj, protocol=2):
    with open(os.path.join(folder, name), 'wb') as f:
        pickle.dump(obj, f, protocol=protocol)


def test_the_official_files_need_only_numpy_array_globals(fake_cifar_dir):
    payload = open(os.path.join(fake_cifar_dir, 'data_batch_1'), 'rb').read()
    names = {arg for op, arg, _ in pickletools.genops(payload) if op.name == 'GLOBAL'}
    assert names <= {f'{module} {name}' for module, name in cifar10_utils.ALLOWED_GLOBALS}


@pytest.mark.parametrize('protocol', [2, 4, 5])
def test_batches_pickled_by_any_protocol_still_load(fake_cifar_dir, protocol):
    batch = fake_batch(20, np.random.default_rng(0))
    batch['labels'] = np.asarray(batch['labels'], dtype=np.int64)  # numpy integers instead of a list of ints
    write_batch(fake_cifar_dir, 'test_batch', batch, protocol)
    images, labels = cifar10_utils.load_cifar10_batch(os.path.join(fake_cifar_dir, 'test_batch'))
    assert images.shape == (20, 3, 32, 32) and labels.tolist() == batch['labels'].tolist()


@pytest.mark.parametrize('where', ['inside a valid batch', 'bare'])
def test_a_payload_is_refused_unrun(fake_cifar_dir, tmp_path, where):
    marker = tmp_path / 'pwned'
    if where == 'bare':
        obj = RunsACommand(marker)
    else:
        obj = fake_batch(10, np.random.default_rng(0))
        obj['extra'] = RunsACommand(marker)
    write_batch(fake_cifar_dir, 'data_batch_2', obj)
    path = os.path.join(fake_cifar_dir, 'data_batch_2')
    with pytest.raises(CIFAR10Error, match=f"'{path}' asks to load '{os.system.__module__}.system'.*not read"):
        cifar10_utils.get_cifar10(fake_cifar_dir)
    assert not marker.exists()


def test_the_command_line_refuses_it_in_one_line(fake_cifar_dir, tmp_path):
    marker = tmp_path / 'pwned'
    batch = fake_batch(40, np.random.default_rng(0))
    batch['extra'] = RunsACommand(marker)
    write_batch(fake_cifar_dir, 'data_batch_1', batch)
    result = run_script('train_mlp_numpy', ['--data_dir', fake_cifar_dir, '--max_steps', '5', '--batch_size', '10',
                                            '--output_dir', str(tmp_path / 'out')])
    assert result.returncode == 1
    assert_one_line_error(result.stderr, 'data_batch_1', 'system')
    assert not marker.exists()


def test_a_global_from_a_module_that_does_not_exist(fake_cifar_dir):
    payload = b'\x80\x02cno_such_module\nno_such_name\nq\x00.'
    open(os.path.join(fake_cifar_dir, 'test_batch'), 'wb').write(payload)
    with pytest.raises(CIFAR10Error, match="asks to load 'no_such_module.no_such_name'"):
        cifar10_utils.load_cifar10_batch(os.path.join(fake_cifar_dir, 'test_batch'))


def test_huge_declared_sizes_are_one_error(fake_cifar_dir):
    path = os.path.join(fake_cifar_dir, 'test_batch')
    # BINBYTES8 announcing 2**62 bytes that are not there
    open(path, 'wb').write(b'\x80\x04\x8e' + struct.pack('<Q', 2 ** 62) + b'abc')
    with pytest.raises(CIFAR10Error, match='is corrupt or truncated'):
        cifar10_utils.load_cifar10_batch(path)
    # numpy's array constructor asked for 10**12 elements: only its empty start (shape (0,)) is allowed
    count = (10 ** 12).to_bytes(6, 'little')
    payload = (b'\x80\x02' + b'cnumpy._core.multiarray\n_reconstruct\n' + b'cnumpy\nndarray\n'  # two GLOBALs
               + b'\x8a\x06' + count + b'\x85'  # LONG1 10**12, TUPLE1
               + b'C\x01b' + b'\x87R.')  # SHORT_BINBYTES b'b', TUPLE3, REDUCE, STOP
    open(path, 'wb').write(payload)
    with pytest.raises(CIFAR10Error, match=r'is corrupt or truncated \(UnpicklingError: unexpected array construction'):
        cifar10_utils.load_cifar10_batch(path)


@pytest.mark.parametrize('change, problem', [
    (lambda b: b.update(labels=[float(v) for v in b['labels']]), "'labels' of float64"),
    (lambda b: b.update(labels=[v + 10 for v in b['labels']]), 'labels outside 0..9'),
    (lambda b: b.update(labels=b['labels'][:-1]), "expected 10 integers"),
    (lambda b: b.update(data=b['data'].astype(np.float32)), "'data' of float32"),
    (lambda b: b.pop('labels'), "does not hold a CIFAR-10 batch"),
])
def test_the_content_is_checked(fake_cifar_dir, change, problem):
    batch = fake_batch(10, np.random.default_rng(0))
    change(batch)
    write_batch(fake_cifar_dir, 'test_batch', batch)
    with pytest.raises(CIFAR10Error, match=problem):
        cifar10_utils.load_cifar10_batch(os.path.join(fake_cifar_dir, 'test_batch'))
