"""The loader: interface.md's API on tiny synthetic files, error messages, the download
path (file:// and loopback only, never the internet), and the real copy if CIFAR10_DIR is set.
Hostile batch files are in test_safe_loading.py."""
import errno
import hashlib
import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
from conftest import N_TEST, N_TRAIN_PER_BATCH, ROOT, make_archive, write_fake_cifar

import cifar10_download
import cifar10_utils
from cifar10_utils import CIFAR10Error

N_TRAIN = 5 * N_TRAIN_PER_BATCH


def md5_of(path):
    return hashlib.md5(open(path, 'rb').read()).hexdigest()


# ------------------------------------------------------------------ API

def test_splits_shapes_and_access(fake_cifar_dir):
    cifar10 = cifar10_utils.get_cifar10(fake_cifar_dir)
    assert set(cifar10) == {'train', 'validation', 'test'}
    assert cifar10.test is cifar10['test'] and cifar10.train is cifar10['train']
    with pytest.raises(AttributeError, match="no split 'valid'"):
        cifar10.valid
    train, test = cifar10['train'], cifar10.test
    assert train.images.shape == (N_TRAIN, 3, 32, 32) and train.images.dtype == np.float32
    assert test.images.shape == (N_TEST, 3, 32, 32)
    assert train.labels.shape == (N_TRAIN, 10) and test.labels.shape == (N_TEST, 10)
    np.testing.assert_array_equal(train.labels.sum(axis=1), 1.0)
    assert train.num_examples == N_TRAIN and cifar10['validation'].num_examples == 0
    x, y = train.next_batch(7)
    assert x.shape == (7, 3, 32, 32) and x.dtype == np.float32 and y.shape == (7, 10)


def test_preprocessing_matches_the_raw_pixels(fake_cifar_dir):
    raw = pickle.load(open(os.path.join(fake_cifar_dir, 'data_batch_1'), 'rb'), encoding='latin1')
    train_raw = np.concatenate([pickle.load(open(os.path.join(fake_cifar_dir, name), 'rb'), encoding='latin1')['data']
                                for name in cifar10_utils.TRAIN_FILES]).astype(np.float64)
    mean = train_raw.mean(axis=0)
    cifar10 = cifar10_utils.get_cifar10(fake_cifar_dir, one_hot=False)
    first = cifar10.train.images[:N_TRAIN_PER_BATCH]
    # channels first: values 0..1023 are red, 1024..2047 green, 2048..3071 blue
    np.testing.assert_allclose(first.reshape(N_TRAIN_PER_BATCH, -1), raw['data'] - mean, atol=1e-4)
    np.testing.assert_allclose(cifar10.train.images.mean(axis=0), 0, atol=1e-4)
    np.testing.assert_array_equal(cifar10.train.labels[:N_TRAIN_PER_BATCH], raw['labels'])
    assert cifar10.train.labels.dtype == np.int64


def test_dense_labels_and_one_hot(fake_cifar_dir):
    dense = cifar10_utils.get_cifar10(fake_cifar_dir, one_hot=False)
    one_hot = cifar10_utils.get_cifar10(fake_cifar_dir, one_hot=True)
    assert dense.test.labels.shape == (N_TEST,)
    np.testing.assert_array_equal(one_hot.test.labels.argmax(axis=1), dense.test.labels)
    np.testing.assert_array_equal(cifar10_utils.dense_to_one_hot(np.array([2, 0]), 3), [[0, 0, 1], [1, 0, 0]])


def test_validation_split(fake_cifar_dir):
    full = cifar10_utils.get_cifar10(fake_cifar_dir, one_hot=False)
    split = cifar10_utils.get_cifar10(fake_cifar_dir, one_hot=False, validation_size=30)
    assert split.validation.num_examples == 30 and split.train.num_examples == N_TRAIN - 30
    np.testing.assert_array_equal(split.validation.images, full.train.images[:30])
    np.testing.assert_array_equal(split.train.images, full.train.images[30:])
    with pytest.raises(ValueError, match='validation_size'):
        cifar10_utils.get_cifar10(fake_cifar_dir, validation_size=N_TRAIN + 1)


def test_next_batch_cycles_and_reshuffles():
    images = np.arange(10, dtype=np.float32).reshape(10, 1)
    dataset = cifar10_utils.DataSet(images, np.arange(10))
    np.random.seed(42)
    first_epoch = [dataset.next_batch(4)[1] for _ in range(2)]
    np.testing.assert_array_equal(np.concatenate(first_epoch), np.arange(8))  # stored order first
    assert dataset.epochs_completed == 0
    x, y = dataset.next_batch(4)  # only 2 left: a new, shuffled epoch starts
    assert dataset.epochs_completed == 1
    np.testing.assert_array_equal(x[:, 0], y)  # images and labels stay paired
    second_epoch = np.concatenate([y, dataset.next_batch(4)[1]])
    assert len(set(second_epoch.tolist())) == 8  # no repeats within an epoch
    assert not np.array_equal(second_epoch, np.arange(8))
    # np.random.seed makes the order reproducible
    again = cifar10_utils.DataSet(images, np.arange(10))
    np.random.seed(42)
    batches = [again.next_batch(4)[1] for _ in range(4)]
    np.testing.assert_array_equal(np.concatenate(batches[2:]), second_epoch)
    with pytest.raises(ValueError, match='batch_size'):
        dataset.next_batch(11)


# ------------------------------------------------------------------ errors

def test_missing_folder_without_download(tmp_path):
    with pytest.raises(CIFAR10Error, match="nowhere' is missing, not a folder with the CIFAR-10 batch files"):
        cifar10_utils.get_cifar10(str(tmp_path / 'nowhere'), download=False)


def test_a_data_dir_that_is_a_file(tmp_path):
    (tmp_path / 'file').write_text('x')
    with pytest.raises(CIFAR10Error, match="--data_dir '.*file' is a file"):
        cifar10_utils.get_cifar10(str(tmp_path / 'file'))
    assert os.listdir(tmp_path) == ['file']  # nothing downloaded next to it


def test_a_batch_file_far_too_large_is_not_read(fake_cifar_dir):
    path = os.path.join(fake_cifar_dir, 'data_batch_4')
    os.truncate(path, 2 * cifar10_utils.MAX_BATCH_BYTES)  # sparse: no disk used
    with pytest.raises(CIFAR10Error, match="data_batch_4' is 2,147,483,648 bytes, far larger than any CIFAR-10 batch"):
        cifar10_utils.get_cifar10(fake_cifar_dir)


def test_missing_batch_file(fake_cifar_dir):
    os.remove(os.path.join(fake_cifar_dir, 'data_batch_3'))
    with pytest.raises(CIFAR10Error, match="data_batch_3' is missing"):
        cifar10_utils.get_cifar10(fake_cifar_dir)


@pytest.mark.parametrize('damage', ['truncate', 'garbage', 'wrong_shape'])
def test_corrupt_batch_file(fake_cifar_dir, damage):
    path = os.path.join(fake_cifar_dir, 'test_batch')
    if damage == 'truncate':
        payload = open(path, 'rb').read()
        open(path, 'wb').write(payload[:len(payload) // 2])
    elif damage == 'garbage':
        open(path, 'wb').write(b'not a pickle at all')
    else:
        pickle.dump({'data': np.zeros((3, 100), np.uint8), 'labels': [0, 1, 2]}, open(path, 'wb'))
    problem = "has 'data' of uint8 \\(3, 100\\)" if damage == 'wrong_shape' else 'is corrupt or truncated'
    with pytest.raises(CIFAR10Error, match=f"test_batch' {problem}.*; delete the folder '{fake_cifar_dir}' and run again"):
        cifar10_utils.get_cifar10(fake_cifar_dir)


def test_following_the_advice_for_a_corrupt_file_gets_a_fresh_copy(fake_cifar_dir, archive, monkeypatch):
    open(os.path.join(fake_cifar_dir, 'test_batch'), 'wb').write(b'junk')
    with pytest.raises(CIFAR10Error, match=f"delete the folder '{fake_cifar_dir}'"):
        cifar10_utils.get_cifar10(fake_cifar_dir)
    import shutil
    shutil.rmtree(fake_cifar_dir)  # as the message says
    monkeypatch.setenv('CIFAR10_URL', 'file://' + archive)
    monkeypatch.setenv('CIFAR10_MD5', md5_of(archive))
    assert cifar10_utils.get_cifar10(fake_cifar_dir).test.num_examples == N_TEST


# ------------------------------------------------------------------ download

@pytest.fixture
def archive(tmp_path):
    source = write_fake_cifar(tmp_path / 'source')
    return make_archive(source, tmp_path / 'served.tar.gz')


def test_download_from_local_url(tmp_path, archive, monkeypatch):
    monkeypatch.setattr(cifar10_download, 'CIFAR10_URL', 'file://' + archive)
    monkeypatch.setattr(cifar10_download, 'CIFAR10_MD5', md5_of(archive))
    data_dir = tmp_path / 'data' / 'cifar-10-batches-py'
    cifar10 = cifar10_utils.get_cifar10(str(data_dir))  # downloads, verifies, extracts, loads
    assert cifar10.train.num_examples == N_TRAIN
    assert sorted(os.listdir(data_dir)) == sorted(cifar10_utils.BATCH_FILES + ('batches.meta',))
    assert os.path.isfile(tmp_path / 'data' / cifar10_download.ARCHIVE_NAME)
    assert not [name for name in os.listdir(tmp_path / 'data') if name.startswith('.') or name.endswith('.part')]


def test_download_over_loopback_http(tmp_path, archive):
    import functools
    import http.server
    import threading
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=os.path.dirname(archive))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f'http://127.0.0.1:{server.server_address[1]}/{os.path.basename(archive)}'
        data_dir = tmp_path / 'http' / 'cifar10'  # any folder name works
        cifar10_download.maybe_download(str(data_dir), url=url, md5=md5_of(archive))
    finally:
        server.shutdown()
    assert cifar10_utils.get_cifar10(str(data_dir), download=False).test.num_examples == N_TEST


def test_checksum_mismatch_leaves_nothing(tmp_path, archive):
    data_dir = tmp_path / 'data' / 'cifar-10-batches-py'
    with pytest.raises(CIFAR10Error, match='checksum mismatch'):
        cifar10_download.maybe_download(str(data_dir), url='file://' + archive, md5='0' * 32)
    assert not (tmp_path / 'data').exists()  # the folders made for the download went again


def test_offline_download_error(tmp_path, monkeypatch):
    monkeypatch.setenv('CIFAR10_URL', 'http://127.0.0.1:9/cifar-10-python.tar.gz')  # port 9: refused
    data_dir = tmp_path / 'data' / 'cifar-10-batches-py'
    with pytest.raises(CIFAR10Error, match=f"cannot download CIFAR-10 from http://127.0.0.1:9/.*so that '{data_dir}' holds"):
        cifar10_utils.get_cifar10(str(data_dir))
    assert not (tmp_path / 'data').exists()  # the folders made for the download went again


def serve_once(handler_body):
    """A loopback HTTP server whose GET runs handler_body(request); returns (server, url)."""
    import http.server
    import threading

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            handler_body(self)

        def log_message(self, *args):
            pass
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f'http://127.0.0.1:{server.server_address[1]}/cifar-10-python.tar.gz'


def test_a_connection_closed_early_is_reported_as_such(tmp_path, archive):
    payload = open(archive, 'rb').read()

    def half(request):
        request.send_response(200)
        request.send_header('Content-Length', str(len(payload)))
        request.end_headers()
        request.wfile.write(payload[:len(payload) // 2])  # then the handler returns and the connection closes
    server, url = serve_once(half)
    data_dir = tmp_path / 'data' / 'cifar-10-batches-py'
    try:
        with pytest.raises(CIFAR10Error, match=f'closed after {len(payload) // 2:,} of {len(payload):,} bytes'):
            cifar10_download.maybe_download(str(data_dir), url=url, md5=md5_of(archive))
    finally:
        server.shutdown()
    assert not (tmp_path / 'data').exists()  # the folders made for the download went again


def test_a_mirror_with_its_own_checksum(tmp_path, archive, monkeypatch):
    monkeypatch.setenv('CIFAR10_URL', 'file://' + archive)
    data_dir = tmp_path / 'data' / 'cifar-10-batches-py'
    with pytest.raises(CIFAR10Error, match='checksum mismatch.*set CIFAR10_MD5 for a mirror'):
        cifar10_utils.get_cifar10(str(data_dir))  # the official MD5 does not fit the mirror's file
    monkeypatch.setenv('CIFAR10_MD5', md5_of(archive).upper())
    assert cifar10_utils.get_cifar10(str(data_dir)).train.num_examples == N_TRAIN


def test_ctrl_c_during_a_download_leaves_no_file(tmp_path, monkeypatch):
    class Response:
        headers = {'Content-Length': str(10 * cifar10_download.CHUNK)}
        reads = 0

        def read(self, size):
            Response.reads += 1
            if Response.reads == 3:
                raise KeyboardInterrupt
            return b'x' * size

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False
    monkeypatch.setattr(cifar10_download.urllib.request, 'urlopen', lambda url, timeout: Response())
    data_dir = tmp_path / 'data' / 'cifar-10-batches-py'
    with pytest.raises(KeyboardInterrupt):
        cifar10_download.maybe_download(str(data_dir), url='http://example.invalid/a.tar.gz', md5='0' * 32)
    assert not (tmp_path / 'data').exists()  # the folders made for the download went again


def test_unsafe_archive_member_is_refused(tmp_path):
    source = write_fake_cifar(tmp_path / 'source')
    evil = make_archive(source, tmp_path / 'evil.tar.gz', extra_members=[('../escaped.txt', b'gotcha')])
    data_dir = tmp_path / 'target' / 'cifar-10-batches-py'
    with pytest.raises(CIFAR10Error, match="unsafe member '../escaped.txt'"):
        cifar10_download.maybe_download(str(data_dir), url='file://' + evil, md5=md5_of(evil))
    assert not os.path.exists(tmp_path / 'escaped.txt') and not os.path.exists(tmp_path / 'target' / 'escaped.txt')
    assert not os.path.exists(data_dir)
    assert [name for name in os.listdir(tmp_path / 'target') if name.startswith('.')] == []


# ------------------------------------------------------------------ the real copy

@pytest.mark.slow
def test_real_cifar10(real_cifar):
    assert real_cifar.train.images.shape == (50000, 3, 32, 32)
    assert real_cifar.test.images.shape == (10000, 3, 32, 32)
    np.testing.assert_array_equal(real_cifar.train.labels.sum(axis=0), 5000)
    np.testing.assert_array_equal(real_cifar.test.labels.sum(axis=0), 1000)
    assert abs(float(real_cifar.train.images.mean())) < 1e-3
    source = real_cifar.source
    assert set(source['md5']) == set(cifar10_utils.BATCH_FILES) and len(source['fingerprint']) == 16
    # the official files' MD5s decide 'official'; this is either that release or another copy, and says which
    assert source['official'] == all(source['md5'][name] == md5 for name, md5 in cifar10_utils.OFFICIAL_MD5.items())


def test_runs_started_together_take_turns_to_download(tmp_path, archive):
    data_dir = tmp_path / 'data' / 'cifar-10-batches-py'
    code = (f'import cifar10_download; cifar10_download.maybe_download({str(data_dir)!r}, '
            f'url={"file://" + archive!r}, md5={md5_of(archive)!r})')
    runs = [subprocess.Popen([sys.executable, '-c', code], cwd=ROOT, stderr=subprocess.PIPE, text=True)
            for _ in range(3)]
    results = [(run.wait(timeout=120), run.stderr.read()) for run in runs]
    assert all(status == 0 for status, _ in results), results
    assert cifar10_utils.get_cifar10(str(data_dir), download=False).test.num_examples == N_TEST
    assert sorted(os.listdir(tmp_path / 'data')) == sorted([cifar10_download.ARCHIVE_NAME, 'cifar-10-batches-py'])


def test_a_data_folder_that_is_a_link_to_nowhere_is_refused_before_any_download(tmp_path, monkeypatch):
    loop = tmp_path / 'loop'
    os.symlink(loop, loop)  # a link to itself: it exists, as a name, but is no folder
    monkeypatch.setattr(cifar10_download, 'download_file', lambda *args: pytest.fail('downloaded first'))
    with pytest.raises(CIFAR10Error, match=f"--data_dir '{loop}' is a file or a link to no folder"):
        cifar10_download.maybe_download(str(loop))


def test_a_data_folder_that_cannot_be_written_is_one_line(tmp_path, monkeypatch):
    def read_only(path, *args, **kwargs):
        raise OSError(errno.EROFS, 'Read-only file system', path)
    monkeypatch.setattr(cifar10_download, 'open', read_only, raising=False)  # as a read-only disk answers
    monkeypatch.setenv('CIFAR10_URL', 'file:///no/such/archive.tar.gz')
    with pytest.raises(CIFAR10Error, match=f"cannot write into '{tmp_path}' \\(Read-only file system\\); make it "
                                           'writable, or pass another --data_dir'):
        cifar10_download.maybe_download(str(tmp_path / 'cifar-10-batches-py'))
    assert os.listdir(tmp_path) == []


def test_a_disk_error_while_extracting_keeps_the_good_archive(tmp_path, archive, monkeypatch):
    data_dir = tmp_path / 'data' / 'cifar-10-batches-py'
    monkeypatch.setattr(cifar10_download.shutil, 'copyfileobj', lambda *args: (_ for _ in ()).throw(
        OSError(errno.ENOSPC, 'No space left on device')))
    with pytest.raises(CIFAR10Error, match='No space left on device.*free some space') as refused:
        cifar10_download.maybe_download(str(data_dir), url='file://' + archive, md5=md5_of(archive))
    assert 'delete' not in str(refused.value)  # the archive is good: nothing tells the user to delete it
    assert os.listdir(tmp_path / 'data') == [cifar10_download.ARCHIVE_NAME]


def test_a_data_folder_that_is_a_mount_point_is_filled(tmp_path, archive, monkeypatch):
    """Files cannot move across file systems (EXDEV): extraction stages inside the data folder itself."""
    data_dir = tmp_path / 'mnt' / 'cifar-10-batches-py'
    data_dir.mkdir(parents=True)  # as an empty file system mounted there
    replace = os.replace

    def one_file_system(src, dst):
        if not str(src).startswith(str(data_dir) + os.sep):
            raise OSError(errno.EXDEV, 'Invalid cross-device link')
        replace(src, dst)
    monkeypatch.setattr(cifar10_download.os, 'replace', one_file_system)
    (data_dir / '.cifar10-extract-killed').mkdir()  # what an extraction killed by SIGKILL left
    cifar10_download.extract_archive(archive, str(data_dir))
    assert sorted(os.listdir(data_dir)) == sorted(cifar10_utils.BATCH_FILES + ('batches.meta',))


def test_a_data_folder_under_a_link_loop_is_refused_before_any_download(tmp_path, monkeypatch):
    os.symlink(tmp_path / 'loopA', tmp_path / 'loopB')
    os.symlink(tmp_path / 'loopB', tmp_path / 'loopA')
    monkeypatch.setattr(cifar10_download, 'download_file', lambda *args: pytest.fail('downloaded first'))
    with pytest.raises(CIFAR10Error, match="--data_dir '.*loopA/sub' lies under '.*loopA', which is a file or a "
                                           'link to no folder'):
        cifar10_download.maybe_download(str(tmp_path / 'loopA' / 'sub'))
