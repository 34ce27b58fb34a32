"""CIFAR-10 loading, preprocessing and mini-batching in NumPy.

    import cifar10_utils
    cifar10 = cifar10_utils.get_cifar10('cifar10/cifar-10-batches-py')
    x, y = cifar10['train'].next_batch(200)      # x: [200, 3, 32, 32] float32, y: [200, 10]
    x, y = cifar10.test.images, cifar10.test.labels
    cifar10.source                               # which files were read, and whether they are the official ones

When the folder has no batch files, the official archive is downloaded into it
(cifar10_download.py). The batch files are pickles: they are read with an unpickler that
builds numpy arrays and nothing else, so a file from elsewhere cannot run code, and their
content is checked. Every problem with the data raises CIFAR10Error with one message
naming the file or folder and what to do.
"""
import codecs
import concurrent.futures
import hashlib
import os
import pickle

import numpy as np

from cifar10_download import BATCH_FILES, TEST_FILE, TRAIN_FILES, CIFAR10Error, file_md5, maybe_download  # noqa: F401

CIFAR10_FOLDER = 'cifar10/cifar-10-batches-py'  # default data_dir, as in the skeleton

# MD5s of the batch files of the official release (as torchvision's CIFAR10 lists them)
OFFICIAL_MD5 = {'data_batch_1': 'c99cafc152244af753f735de768cd75f', 'data_batch_2': 'd4bba439e000b95fd0a9bffe97cbabec',
                'data_batch_3': '54ebc095f3ab1f0389bbae665268c751', 'data_batch_4': '634d18415352ddfa80567beed471001a',
                'data_batch_5': '482c414d41f54cd18b22e5b47cb7c3cb', 'test_batch': '40351d587109b95175f43aff81a1287e'}

MAX_BATCH_BYTES = 2 ** 30  # an official batch file is 31 MB: anything this large is not one
N_CLASSES = 10
IMAGE_SHAPE = (3, 32, 32)  # channels first
IMAGE_SIZE = int(np.prod(IMAGE_SHAPE))  # 3072 values per image in the pickles


# --------------------------------------------------------------------------- safe unpickling

def _array_reconstruct(subtype, shape, dtype):
    """numpy's own pickle constructor, for the empty array it always starts from (numpy
    then fills it from the pickled bytes): a declared size cannot allocate anything."""
    if subtype is not np.ndarray or tuple(shape) != (0,):
        raise pickle.UnpicklingError(f'unexpected array construction {subtype!r}, shape {shape!r}')
    return _RECONSTRUCT(subtype, shape, dtype)


def _latin1_bytes(text, encoding):
    """How Python 3 writes bytes into a protocol-2 pickle: codecs.encode(text, 'latin1')."""
    if encoding not in ('latin1', 'latin-1'):
        raise pickle.UnpicklingError(f'unexpected encoding {encoding!r}')
    return codecs.encode(text, 'latin1')


# numpy's pickle constructors, taken from what numpy itself pickles (their modules moved in numpy 2)
_RECONSTRUCT = np.zeros(0).__reduce__()[0]  # multiarray._reconstruct
_FROMBUFFER = np.zeros(0).__reduce_ex__(5)[0]  # numeric._frombuffer: arrays in protocol-5 pickles
_SCALAR = np.int64(0).__reduce__()[0]  # multiarray.scalar: numpy scalars
# Every global a CIFAR-10 batch can name, in old- and new-numpy spellings: the official files, written by
# Python 2, need the first four; files re-pickled by Python 3 may also hold bytes, numpy scalars or
# protocol-5 arrays.
ALLOWED_GLOBALS = {
    ('numpy.core.multiarray', '_reconstruct'): _array_reconstruct,
    ('numpy._core.multiarray', '_reconstruct'): _array_reconstruct,
    ('numpy', 'ndarray'): np.ndarray,
    ('numpy', 'dtype'): np.dtype,
    ('_codecs', 'encode'): _latin1_bytes,
    ('numpy.core.multiarray', 'scalar'): _SCALAR,
    ('numpy._core.multiarray', 'scalar'): _SCALAR,
    ('numpy.core.numeric', '_frombuffer'): _FROMBUFFER,
    ('numpy._core.numeric', '_frombuffer'): _FROMBUFFER,
}


class UnsafePickle(pickle.UnpicklingError):
    """A pickle asked for a global that no CIFAR-10 batch needs."""


class _CIFAR10Unpickler(pickle.Unpickler):
    """An unpickler that can build numpy arrays, dicts, lists, strings and numbers, and nothing
    else: every other global (os.system, a class with a __reduce__, ...) is refused unimported."""

    def find_class(self, module, name):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickle(f'{module}.{name}') from None


# --------------------------------------------------------------------------- loading

def _refuse(path, problem, advice=None):
    folder = os.path.dirname(path) or '.'
    advice = advice or f"delete the folder '{folder}' and run again to download a fresh copy"
    raise CIFAR10Error(f"CIFAR-10 batch file '{path}' {problem}; {advice}")


def _check_file(path):
    if not os.path.isfile(path):
        _refuse(path, 'is missing')
    if os.path.getsize(path) > MAX_BATCH_BYTES:
        _refuse(path, f'is {os.path.getsize(path):,} bytes, far larger than any CIFAR-10 batch')


def load_cifar10_batch(batch_filename):
    """Load one batch file: (X uint8 [N, 3, 32, 32] channels first, Y int64 [N] class indices).

    Raises CIFAR10Error if the file is missing, asks for code, is not a pickle, or does not
    hold a CIFAR-10 batch (keys, dtypes, shapes and integer labels in range are checked).
    """
    path = batch_filename
    _check_file(path)
    try:
        with open(path, 'rb') as f:  # 'bytes': Python 2's str arrives as bytes, which numpy takes without a copy
            batch = _CIFAR10Unpickler(f, encoding='bytes').load()
    except UnsafePickle as err:
        _refuse(path, f"asks to load '{err}', which no CIFAR-10 batch needs, so it was not read (it may be "
                      'malicious)', 'delete it and use a copy from the official archive')
    except Exception as err:  # noqa: BLE001 (any file can sit in a data folder: every failure is one message)
        detail = f'{type(err).__name__}: {str(err)[:200]}' if str(err) else type(err).__name__
        _refuse(path, f'is corrupt or truncated ({detail})')
    if isinstance(batch, dict):  # keys are bytes in the official (Python 2) files, str in files Python 3 wrote
        batch = {key.decode('latin1') if isinstance(key, bytes) else key: value for key, value in batch.items()}
    if not isinstance(batch, dict) or 'data' not in batch or 'labels' not in batch:
        _refuse(path, "does not hold a CIFAR-10 batch (a dict with 'data' and 'labels')")
    data, labels = batch['data'], np.asarray(batch['labels'])
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != IMAGE_SIZE:
        _refuse(path, f"has 'data' of {getattr(data, 'dtype', type(data).__name__)} "
                      f"{getattr(data, 'shape', '')}, expected uint8 [N, {IMAGE_SIZE}]")
    if labels.dtype.kind not in 'iu' or labels.shape != (len(data),):
        _refuse(path, f"has 'labels' of {labels.dtype} {labels.shape}, expected {len(data)} integers")
    if len(labels) and not 0 <= labels.min() <= labels.max() < N_CLASSES:
        _refuse(path, f'has labels outside 0..{N_CLASSES - 1} ({labels.min()}..{labels.max()})')
    # each row holds 1024 red, 1024 green, 1024 blue values: already channels first
    return data.reshape((-1,) + IMAGE_SHAPE), labels.astype(np.int64)


def fingerprint_in_background(cifar10_folder):
    """Start computing data_source() of the folder's batch files on a second thread (hashlib
    releases the GIL, so it runs beside loading and preprocessing); returns a function that
    waits for it. Call it after the files have been loaded, which checks they are there."""
    hasher = concurrent.futures.ThreadPoolExecutor(max_workers=1)
    paths = [os.path.join(cifar10_folder, name) for name in BATCH_FILES]
    ready = all(os.path.isfile(path) and os.path.getsize(path) <= MAX_BATCH_BYTES for path in paths)
    digests = {name: hasher.submit(file_md5, path) for name, path in zip(BATCH_FILES, paths)} if ready else {}
    hasher.shutdown(wait=False)
    return lambda: data_source(cifar10_folder, {name: digest.result() for name, digest in digests.items()})


def _check_folder(cifar10_folder):
    if not os.path.isdir(cifar10_folder):
        raise CIFAR10Error(f"'{cifar10_folder}' is {'a file' if os.path.exists(cifar10_folder) else 'missing'}, not a "
                           'folder with the CIFAR-10 batch files; pass the cifar-10-batches-py folder as --data_dir '
                           '(or $CIFAR10_DIR)')


def data_source(folder, md5s):
    """What a run records of its data: the folder, each file's MD5, a short fingerprint of all
    six, and whether they are byte for byte the official release."""
    fingerprint = hashlib.sha256(' '.join(md5s[name] for name in BATCH_FILES).encode()).hexdigest()[:16]
    return {'folder': folder, 'fingerprint': fingerprint,  # as the user gave it: no machine's absolute path
            'official': all(md5s[name] == OFFICIAL_MD5[name] for name in BATCH_FILES), 'md5': md5s}


def load_cifar10_batches(cifar10_folder):
    """[(X uint8 [N, 3, 32, 32], Y int64 [N]) of each training batch file..., then of the test file]."""
    _check_folder(cifar10_folder)
    return [load_cifar10_batch(os.path.join(cifar10_folder, name)) for name in BATCH_FILES]


def load_cifar10(cifar10_folder):
    """Load the five training batches and the test batch.

    Returns (X_train, Y_train, X_test, Y_test) with X uint8 [N, 3, 32, 32], Y int64 [N].
    """
    parsed = load_cifar10_batches(cifar10_folder)
    X_train = np.concatenate([x for x, _ in parsed[:-1]])
    Y_train = np.concatenate([y for _, y in parsed[:-1]])
    X_test, Y_test = parsed[-1]
    return X_train, Y_train, X_test, Y_test


def mean_image_of(X_train_raw):
    """The mean training image, float32 [3, 32, 32]."""
    # exact integer sum (50k * 255 fits in uint32), far faster than a float64 mean
    return (X_train_raw.sum(axis=0, dtype=np.uint32) / max(len(X_train_raw), 1)).astype(np.float32)


def preprocess_cifar10_data(X_train_raw, Y_train_raw, X_test_raw, Y_test_raw, mean_image=None):
    """Cast images to float32 and subtract the mean training image (mean_image_of, unless
    given) from both splits. Images come in and go out channels first, [N, 3, 32, 32].
    """
    mean_image = mean_image_of(X_train_raw) if mean_image is None else mean_image
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

    images = property(lambda self: self._images)
    labels = property(lambda self: self._labels)
    num_examples = property(lambda self: self._num_examples)
    epochs_completed = property(lambda self: self._epochs_completed)

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

    def position(self):
        """Where the batches stand, (order, index in the epoch, epochs completed): a resumed run goes on from it."""
        return self._order, self._index_in_epoch, self._epochs_completed

    def set_position(self, order, index_in_epoch, epochs_completed):
        self._order, self._index_in_epoch, self._epochs_completed = np.asarray(order), int(index_in_epoch), int(
            epochs_completed)


class DataSplits(dict):
    """The dict of splits, also readable as attributes: splits.test is splits['test'].
    `source` says which files they came from (data_source(); None if not from files);
    `mean_image` is what was subtracted from the images (add it back to show them)."""

    source = None
    mean_image = None

    def __getattr__(self, name):
        try:
            return self[name]
        except KeyError:
            raise AttributeError(f"no split '{name}'; splits are {sorted(self)}") from None


def get_cifar10(data_dir=CIFAR10_FOLDER, one_hot=True, validation_size=0, download=True):
    """The skeleton's entry point: load (downloading if needed), preprocess and split CIFAR-10.

    Returns DataSplits with 'train', 'validation' (the first validation_size
    training images) and 'test' DataSets, and the files' `source`.
    """
    if download:
        maybe_download(data_dir)
    source = fingerprint_in_background(data_dir)  # hashes nothing unless all six files are there
    *train, (test_raw, test_labels) = load_cifar10_batches(data_dir)
    n_train = sum(len(x) for x, _ in train)
    if not 0 <= validation_size <= n_train:
        raise ValueError(f'validation_size must be in 0..{n_train}, got {validation_size}')
    # mean_image_of and preprocess_cifar10_data, batch file by batch file: no concatenated copy of the pixels
    mean_image = (sum(x.sum(axis=0, dtype=np.uint32) for x, _ in train) / max(n_train, 1)).astype(np.float32)
    train_images = np.empty((n_train, *IMAGE_SHAPE), np.float32)
    for i, (x, _) in enumerate(train):
        np.subtract(x, mean_image, out=train_images[i * len(x):(i + 1) * len(x)], dtype=np.float32)
    train_labels = np.concatenate([y for _, y in train])
    test_images = np.subtract(test_raw, mean_image, dtype=np.float32)
    if one_hot:
        train_labels = dense_to_one_hot(train_labels, N_CLASSES)
        test_labels = dense_to_one_hot(test_labels, N_CLASSES)
    splits = DataSplits(
        train=DataSet(train_images[validation_size:], train_labels[validation_size:]),
        validation=DataSet(train_images[:validation_size], train_labels[:validation_size]),
        test=DataSet(test_images, test_labels))
    splits.source, splits.mean_image = source(), mean_image  # the fingerprint, computed meanwhile
    return splits


def read_data_sets(data_dir, one_hot=True, validation_size=0, download=True):
    """The original name of get_cifar10."""
    return get_cifar10(data_dir, one_hot, validation_size, download)
