"""Shared fixtures and helpers: tiny synthetic CIFAR-10 folders, the real copy when CIFAR10_DIR is set,
and running the training scripts as a user would."""
import importlib
import io
import json
import os
import pathlib
import pickle
import subprocess
import sys
import tarfile

import numpy as np
import pytest

import cifar10_download
import cifar10_utils

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
N_TRAIN_PER_BATCH = 40  # 200 training images in all
N_TEST = 50
REL_TOL = 1e-7  # gradient checks in float64: a correct backward gives ~1e-10
PNG_SIGNATURE = b'\x89PNG\r\n\x1a\n'
OFFLINE = {'CIFAR10_URL': 'http://127.0.0.1:9/cifar-10-python.tar.gz'}  # port 9: refused, never the internet


def fake_batch(n, rng, label_offset=0):
    """A CIFAR-format batch dict whose images carry a class-specific colour pattern,
    so a model can learn it in a few steps."""
    labels = (np.arange(n) + label_offset) % cifar10_utils.N_CLASSES
    rng.shuffle(labels)
    patterns = np.random.default_rng(1234).integers(0, 256, (cifar10_utils.N_CLASSES, cifar10_utils.IMAGE_SIZE))
    noise = rng.integers(-40, 41, (n, cifar10_utils.IMAGE_SIZE))
    data = np.clip(patterns[labels] + noise, 0, 255).astype(np.uint8)
    return {'batch_label': 'synthetic', 'labels': labels.tolist(), 'data': data,
            'filenames': [f'img_{i}.png' for i in range(n)]}


def write_fake_cifar(folder, n_train_per_batch=N_TRAIN_PER_BATCH, n_test=N_TEST, seed=0):
    """Write data_batch_1..5, test_batch and batches.meta in the official format."""
    rng = np.random.default_rng(seed)
    os.makedirs(folder, exist_ok=True)
    for i, name in enumerate(cifar10_utils.TRAIN_FILES):
        with open(os.path.join(folder, name), 'wb') as f:
            pickle.dump(fake_batch(n_train_per_batch, rng, label_offset=i), f, protocol=2)
    with open(os.path.join(folder, cifar10_utils.TEST_FILE), 'wb') as f:
        pickle.dump(fake_batch(n_test, rng), f, protocol=2)
    with open(os.path.join(folder, 'batches.meta'), 'wb') as f:
        pickle.dump({'label_names': [f'class_{c}' for c in range(cifar10_utils.N_CLASSES)]}, f, protocol=2)
    return str(folder)


def make_archive(source_dir, archive_path, extra_members=()):
    """tar.gz with the batch files under cifar-10-batches-py/, like the official archive.
    extra_members: (name, bytes) pairs added as they are (for hostile archives)."""
    with tarfile.open(archive_path, 'w:gz') as tar:
        tar.add(source_dir, arcname=cifar10_download.ARCHIVE_FOLDER)
        for name, payload in extra_members:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return str(archive_path)


@pytest.fixture
def fake_cifar_dir(tmp_path):
    return write_fake_cifar(tmp_path / 'cifar-10-batches-py')


@pytest.fixture(scope='session')
def real_cifar_dir():
    folder = os.environ.get('CIFAR10_DIR')
    if not folder:
        pytest.skip('set CIFAR10_DIR to the cifar-10-batches-py folder to run the real-data tests')
    return folder


@pytest.fixture(scope='session')
def real_cifar(real_cifar_dir):
    """The real copy, loaded once per test session (one-hot labels)."""
    return cifar10_utils.get_cifar10(real_cifar_dir, download=False)


def run_script(script, args, env=None, timeout=300):
    """`python SCRIPT.py ARGS` from the repository root, as a user runs it: the finished process."""
    return subprocess.run([sys.executable, os.path.join(ROOT, f'{script}.py'), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=timeout, env={**os.environ, **(env or {})})


def run_main(script, args, monkeypatch, capsys, env=None):
    """A script's main() under run_cli in this process: (exit status, stderr)."""
    module = importlib.import_module(script)
    monkeypatch.setattr('sys.argv', [f'{script}.py', *args])
    for key, value in (env or {}).items():
        monkeypatch.setenv(key, value)
    try:
        code = module.run_cli(module.main)
    except SystemExit as exit_info:  # argparse exits by itself
        code = exit_info.code
    return code, capsys.readouterr().err


def assert_one_line_error(stderr, *fragments):
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert 'error:' in lines[0] and 'Traceback' not in stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def read_record(output_dir):
    """history.json of a run, refusing NaN or Infinity tokens (the records are strict JSON)."""
    text = pathlib.Path(output_dir, 'history.json').read_text()

    def refuse(token):
        raise AssertionError(f'{token} in a record: not strict JSON')
    return json.loads(text, parse_constant=refuse)
