"""CIFAR-10 loading, preprocessing and mini-batching in NumPy.

    import cifar10_utils
    cifar10 = cifar10_utils.get_cifar10('cifar10/cifar-10-batches-py')
    x, y = cifar10['train'].next_batch(200)      # x: [200, 3, 32, 32] float32, y: [200, 10]
    x, y = cifar10.test.images, cifar10.test.labels

When the folder lacks the batch files, the official archive is downloaded next to
it (progress bar, MD5 check, safe extraction). Every problem with the data raises
CIFAR10Error with one message naming the file or folder and what to do.
"""
import hashlib
import os
import pickle
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

import numpy as np

CIFAR10_FOLDER = 'cifar10/cifar-10-batches-py'  # default data_dir, as in the skeleton
CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
ARCHIVE_NAME = 'cifar-10-python.tar.gz'
ARCHIVE_FOLDER = 'cifar-10-batches-py'  # the one folder inside the archive

TRAIN_FILES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_FILE = 'test_batch'
BATCH_FILES = TRAIN_FILES + (TEST_FILE,)

N_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)  # channels first
IMAGE_SIZE = int(np.prod(IMAGE_SHAPE))  # 3072 values per image in the pickles


class CIFAR10Error(RuntimeError):
    """A problem with the data files; the message says which file and what to do."""


# --------------------------------------------------------------------------- loading

def load_cifar10_batch(batch_filename):
    """Load one pickled batch file.

    Returns (X, Y): X uint8 [N, 3, 32, 32] (channels first), Y int64 [N] class indices.
    Raises CIFAR10Error if the file is missing, truncated or not a CIFAR-10 batch.
    """
    if not os.path.isfile(batch_filename):
        raise CIFAR10Error(f"CIFAR-10 batch file '{batch_filename}' is missing; "
                           "delete its folder and run again to download a fresh copy")
    try:
        with open(batch_filename, 'rb') as f:
            batch = pickle.load(f, encoding='latin1')
        data = np.asarray(batch['data'])
        labels = np.asarray(batch['labels'], dtype=np.int64)
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_SIZE:
            raise ValueError(f'data is {data.dtype} {data.shape}, expected uint8 [N, {IMAGE_SIZE}]')
        if labels.shape != (data.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) >= N_CLASSES:
            raise ValueError(f'labels do not match the {data.shape[0]} images or lie outside 0..{N_CLASSES - 1}')
    except (OSError, EOFError, pickle.UnpicklingError, KeyError, TypeError, ValueError,
            AttributeError, IndexError, UnicodeDecodeError) as err:
        raise CIFAR10Error(f"CIFAR-10 batch file '{batch_filename}' is corrupt or truncated "
                           f"({type(err).__name__}: {err}); delete it and run again to download "
                           "a fresh copy") from None
    # each row holds 1024 red, 1024 green, 1024 blue values: already channels first
    return data.reshape((-1,) + IMAGE_SHAPE), labels


def load_cifar10(cifar10_folder):
    """Load the five training batches and the test batch.

    Returns (X_train, Y_train, X_test, Y_test) with X uint8 [N, 3, 32, 32], Y int64 [N].
    """
    train = [load_cifar10_batch(os.path.join(cifar10_folder, name)) for name in TRAIN_FILES]
    X_test, Y_test = load_cifar10_batch(os.path.join(cifar10_folder, TEST_FILE))
    X_train = np.concatenate([x for x, _ in train])
    Y_train = np.concatenate([y for _, y in train])
    return X_train, Y_train, X_test, Y_test


def preprocess_cifar10_data(X_train_raw, Y_train_raw, X_test_raw, Y_test_raw):
    """Cast images to float32 and subtract the mean training image from both splits.

    Images come in and go out channels first, [N, 3, 32, 32].
    """
    # exact integer sum (50k * 255 fits in uint32), far faster than a float64 mean
    count = max(len(X_train_raw), 1)
    mean_image = (X_train_raw.sum(axis=0, dtype=np.uint32) / count).astype(np.float32)
    # cast and subtract in one pass, writing each 600 MB float32 array once
    X_train = np.subtract(X_train_raw, mean_image, dtype=np.float32)
    X_test = np.subtract(X_test_raw, mean_image, dtype=np.float32)
    return X_train, np.asarray(Y_train_raw), X_test, np.asarray(Y_test_raw)


def dense_to_one_hot(labels_dense, num_classes):
    """Class indices [N] -> one-hot float32 [N, num_classes]."""
    labels_dense = np.asarray(labels_dense)
    one_hot = np.zeros((labels_dense.shape[0], num_classes), dtype=np.float32)
    one_hot[np.arange(labels_dense.shape[0]), labels_dense] = 1.0
    return one_hot


# --------------------------------------------------------------------------- batching

class DataSet:
    """Images and labels of one split, served in mini-batches.

    The first epoch is served in stored order; after each epoch the order is
    reshuffled with NumPy's global RNG (so np.random.seed makes runs reproducible)
    and the incomplete remainder of the old epoch is skipped, as in the original.
    """

    def __init__(self, images, labels):
        if images.shape[0] != labels.shape[0]:
            raise ValueError(f'{images.shape[0]} images but {labels.shape[0]} labels')
        self._images = images
        self._labels = labels
        self._num_examples = images.shape[0]
        self._order = np.arange(self._num_examples)  # shuffling permutes indices, not 600 MB of images
        self._index_in_epoch = 0
        self._epochs_completed = 0

    @property
    def images(self):
        return self._images

    @property
    def labels(self):
        return self._labels

    @property
    def num_examples(self):
        return self._num_examples

    @property
    def epochs_completed(self):
        return self._epochs_completed

    def next_batch(self, batch_size):
        """Return the next (images, labels) batch of exactly batch_size examples."""
        if not 0 < batch_size <= self._num_examples:
            raise ValueError(f'batch_size must be in 1..{self._num_examples}, got {batch_size}')
        start = self._index_in_epoch
        self._index_in_epoch += batch_size
        if self._index_in_epoch > self._num_examples:
            self._epochs_completed += 1
            perm = np.arange(self._num_examples)
            np.random.shuffle(perm)
            self._order = self._order[perm]
            start, self._index_in_epoch = 0, batch_size
        if self._epochs_completed == 0:  # stored order: views, no copy
            return self._images[start:self._index_in_epoch], self._labels[start:self._index_in_epoch]
        idx = self._order[start:self._index_in_epoch]
        return self._images[idx], self._labels[idx]


class DataSplits(dict):
    """The dict of splits, also readable as attributes: splits.test is splits['test']."""

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no split '{name}'; splits are {sorted(self)}") from None


def read_data_sets(data_dir, one_hot=True, validation_size=0, download=True):
    """Load (downloading if needed), preprocess and split CIFAR-10.

    Returns DataSplits with 'train', 'validation' (the first validation_size
    training images) and 'test' DataSets.
    """
    if download:
        maybe_download(data_dir)
    train_raw, train_labels, test_raw, test_labels = load_cifar10(data_dir)
    if not 0 <= validation_size <= len(train_raw):
        raise ValueError(f'validation_size must be in 0..{len(train_raw)}, got {validation_size}')
    train_images, train_labels, test_images, test_labels = preprocess_cifar10_data(
        train_raw, train_labels, test_raw, test_labels)
    if one_hot:
        train_labels = dense_to_one_hot(train_labels, N_CLASSES)
        test_labels = dense_to_one_hot(test_labels, N_CLASSES)
    return DataSplits(
        train=DataSet(train_images[validation_size:], train_labels[validation_size:]),
        validation=DataSet(train_images[:validation_size], train_labels[:validation_size]),
        test=DataSet(test_images, test_labels))


def get_cifar10(data_dir=CIFAR10_FOLDER, one_hot=True, validation_size=0, download=True):
    """The skeleton's entry point: see read_data_sets."""
    return read_data_sets(data_dir, one_hot, validation_size, download)


# --------------------------------------------------------------------------- download

def maybe_download(data_dir, url=None, md5=None):
    """Download and extract CIFAR-10 into data_dir unless its batch files are there.

    url defaults to $CIFAR10_URL if set (a mirror), else the official archive; md5
    to the official checksum. A folder holding some but not all batch files is left
    alone: loading then names the missing file.
    """
    url = url or os.environ.get('CIFAR10_URL') or CIFAR10_URL
    md5 = md5 or CIFAR10_MD5
    if any(os.path.exists(os.path.join(data_dir, name)) for name in BATCH_FILES):
        return
    parent = os.path.dirname(os.path.abspath(data_dir))
    try:
        os.makedirs(parent, exist_ok=True)
    except OSError as err:
        raise CIFAR10Error(f"cannot create folder '{parent}' for CIFAR-10 ({err.strerror}); "
                           "pass a writable --data_dir") from None
    archive = os.path.join(parent, ARCHIVE_NAME)
    if not (os.path.isfile(archive) and file_md5(archive) == md5):
        download_file(url, archive, md5)
    extract_archive(archive, data_dir)


def file_md5(path, chunk_size=1 << 20):
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(url, path, md5):
    """Download url to path with a progress bar; keep it only if its MD5 matches.

    Bytes go to path + '.part' first and are renamed only once verified, so an
    interrupted or corrupt download never leaves a file at path.
    """
    from tqdm import tqdm
    partial = path + '.part'
    digest = hashlib.md5()
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(partial, 'wb') as out:
            total = int(response.headers.get('Content-Length') or 0) or None
            with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024,
                      desc=f'downloading {os.path.basename(path)}', file=sys.stderr) as bar:
                for chunk in iter(lambda: response.read(1 << 20), b''):
                    out.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as err:
        _remove(partial)
        reason = getattr(err, 'reason', None) or err
        raise CIFAR10Error(f'cannot download CIFAR-10 from {url} ({reason}); download it by hand '
                           f"and extract it so that '{os.path.dirname(path)}/{ARCHIVE_FOLDER}' "
                           'holds the batch files, or pass --data_dir') from None
    except BaseException:  # Ctrl-C: leave nothing half-written
        _remove(partial)
        raise
    if digest.hexdigest() != md5:
        _remove(partial)
        raise CIFAR10Error(f'checksum mismatch for {url}: MD5 {digest.hexdigest()}, expected {md5}; '
                           'the download was corrupted or replaced, run again or download by hand')
    os.replace(partial, path)


def extract_archive(archive, data_dir):
    """Extract the batch files of the archive's one folder into data_dir.

    Only regular files directly inside that folder are written; a member with an
    absolute path, a '..' component, a link or a device aborts before anything lands.
    """
    data_dir = os.path.abspath(data_dir)
    parent = os.path.dirname(data_dir)
    staging = tempfile.mkdtemp(prefix='.cifar10-extract-', dir=parent)
    try:
        with tarfile.open(archive, 'r:gz') as tar:
            for member in tar:
                parts = member.name.replace('\\', '/').split('/')
                if os.path.isabs(member.name) or '..' in parts or not (member.isfile() or member.isdir()):
                    raise CIFAR10Error(f"unsafe member '{member.name}' in '{archive}'; "
                                       'delete the archive and download it again')
                if member.isfile() and len(parts) == 2 and parts[0] == ARCHIVE_FOLDER:
                    with tar.extractfile(member) as src, open(os.path.join(staging, parts[1]), 'wb') as dst:
                        shutil.copyfileobj(src, dst)
        missing = [name for name in BATCH_FILES if not os.path.isfile(os.path.join(staging, name))]
        if missing:
            raise CIFAR10Error(f"'{archive}' lacks {', '.join(missing)}; delete it and download it again")
        os.makedirs(data_dir, exist_ok=True)
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(data_dir, name))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CIFAR10Error(f"cannot extract '{archive}' ({err}); delete it and run again") from None
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _remove(path):
    try:
        os.remove(path)
    except FileNotFoundError:
        pass
