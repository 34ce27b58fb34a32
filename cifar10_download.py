"""Download the official CIFAR-10 archive (or a mirror's copy), verify it, and extract its batch files
safely. The data layer's base: the batch files' names and CIFAR10Error live here.

    maybe_download('cifar10/cifar-10-batches-py')   # does nothing when the folder has batch files

Environment: CIFAR10_URL, a mirror's address of the same cifar-10-python.tar.gz; CIFAR10_MD5, that
file's MD5 when it is not the official archive's. Bytes go to a '.part' file renamed only when complete
and verified: an interrupted or corrupt download never leaves a file that looks finished.
"""
import contextlib
import errno
import glob
import hashlib
import os
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.request

try:
    import fcntl  # POSIX file locks: runs started together take turns to download
except ImportError:  # Windows: no turns
    fcntl = None

CIFAR10_URL = 'https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz'
CIFAR10_MD5 = 'c58f30108f718f92721af3b95e74349a'
ARCHIVE_NAME = 'cifar-10-python.tar.gz'
ARCHIVE_FOLDER = 'cifar-10-batches-py'  # the one folder inside the archive
CHUNK = 1 << 20
DISK_ERRORS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT)  # the disk's fault, not the net's
TRAIN_FILES = tuple(f'data_batch_{i}' for i in range(1, 6))
TEST_FILE = 'test_batch'
BATCH_FILES = TRAIN_FILES + (TEST_FILE,)


class CIFAR10Error(RuntimeError):
    """A problem with the data files; the message says which file and what to do."""


def file_md5(path, chunk_size=1 << 22):
    digest = hashlib.md5()
    with open(path, 'rb') as f:
        for chunk in iter(lambda: f.read(chunk_size), b''):
            digest.update(chunk)
    return digest.hexdigest()


def maybe_download(data_dir, url=None, md5=None):
    """Download and extract CIFAR-10 into data_dir unless it holds batch files already (some of them: loading
    names the missing one). url, md5: $CIFAR10_URL and $CIFAR10_MD5, else the official archive's. The archive
    is kept beside data_dir; runs started together take turns; folders made for a download that fails go."""
    url = url or os.environ.get('CIFAR10_URL') or CIFAR10_URL
    md5 = (md5 or os.environ.get('CIFAR10_MD5') or CIFAR10_MD5).lower()
    existing = data_dir  # the nearest part of the path that exists must be a folder
    while existing and not os.path.lexists(existing):
        existing = os.path.dirname(os.path.normpath(existing))
    if not data_dir or existing and not os.path.isdir(existing):
        where = '' if existing == data_dir else f" lies under '{existing}', which"
        what = 'a file or a link to no folder' if data_dir else 'empty'
        raise CIFAR10Error(f'--data_dir {data_dir!r}{where} is {what}; pass the folder that holds (or is to hold) '
                           'the CIFAR-10 batch files')
    if _has_batch_files(data_dir):
        return
    parent = os.path.dirname(os.path.normpath(data_dir))
    made = [path for path in (parent, data_dir) if path and not os.path.exists(path)]
    try:
        os.makedirs(data_dir, exist_ok=True)
        folder = os.open(data_dir, os.O_RDONLY)  # the data folder itself is the lock: no lock file to leave behind
    except OSError as err:
        raise CIFAR10Error(_cannot_write(data_dir, err)) from None
    try:
        if fcntl:
            try:
                fcntl.flock(folder, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                print(f"waiting for another run's download of CIFAR-10 into '{data_dir}'", file=sys.stderr)
                fcntl.flock(folder, fcntl.LOCK_EX)
        if not _has_batch_files(data_dir):  # else the run we waited for has put them there
            archive = os.path.join(parent or '.', ARCHIVE_NAME)
            if not (os.path.isfile(archive) and file_md5(archive) == md5):
                download_file(url, archive, md5, data_dir)
            extract_archive(archive, data_dir)
    except BaseException:
        for path in reversed(made):  # what this call made and left empty goes
            with contextlib.suppress(OSError):
                os.rmdir(path)
        raise
    finally:
        os.close(folder)  # and the lock with it


def _has_batch_files(data_dir):
    return any(os.path.exists(os.path.join(data_dir, name)) for name in BATCH_FILES)


def _cannot_write(folder, err):
    cure = 'free some space' if err.errno in (errno.ENOSPC, errno.EDQUOT) else 'make it writable'
    return f"cannot write into '{folder}' ({err.strerror or err}); {cure}, or pass another --data_dir"


def download_file(url, path, md5, data_dir):
    """Download url to path with a progress bar; keep it only if it is complete and its MD5 matches."""
    from tqdm import tqdm
    partial = f'{path}.{os.getpid()}.part'  # this process's own: another run's download never mixes with it
    digest, received, total = hashlib.md5(), 0, None
    by_hand = (f"download {url} by hand and extract it so that '{data_dir}' holds the batch files, or point "
               '--data_dir (or $CIFAR10_DIR) at a copy you have')
    try:
        with open(partial, 'wb') as out, urllib.request.urlopen(url, timeout=60) as response:  # a disk first
            total = int(response.headers.get('Content-Length') or 0) or None
            with tqdm(total=total, unit='B', unit_scale=True, unit_divisor=1024,
                      desc=f'downloading {os.path.basename(path)}', file=sys.stderr) as bar:
                for chunk in iter(lambda: response.read(CHUNK), b''):
                    out.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    bar.update(len(chunk))
    except BaseException as err:  # the network, the disk, or Ctrl-C: nothing half-written is left
        _remove(partial)
        if not isinstance(err, (urllib.error.URLError, OSError, ValueError)):
            raise
        if getattr(err, 'errno', None) in DISK_ERRORS:
            raise CIFAR10Error(_cannot_write(os.path.dirname(path) or '.', err)) from None
        raise CIFAR10Error(f"cannot download CIFAR-10 from {url} ({getattr(err, 'reason', None) or err}); "
                           f'{by_hand}') from None
    if total is not None and received < total:
        _remove(partial)
        raise CIFAR10Error(f'the connection to {url} closed after {received:,} of {total:,} bytes; '
                           f'run again to retry, or {by_hand}')
    if digest.hexdigest() != md5:
        _remove(partial)
        raise CIFAR10Error(f'checksum mismatch for {url} ({received:,} bytes): MD5 {digest.hexdigest()}, expected '
                           f'{md5}; the file differs from the expected archive (set CIFAR10_MD5 for a mirror '
                           f'with another copy), or {by_hand}')
    os.replace(partial, path)


def extract_archive(archive, data_dir):
    """Extract the batch files of the archive's one folder into data_dir, through a staging folder inside it
    (the same file system even when data_dir is a mount point; a killed run's staging goes first). Only
    regular files directly inside that folder are written; an absolute path, '..', a link or a device in
    the archive aborts before anything lands."""
    stagings = os.path.join(glob.escape(data_dir), '.cifar10-extract-*')
    for stale in glob.glob(stagings):
        shutil.rmtree(stale, ignore_errors=True)
    try:
        staging = tempfile.mkdtemp(prefix='.cifar10-extract-', dir=data_dir)
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
        for name in os.listdir(staging):
            os.replace(os.path.join(staging, name), os.path.join(data_dir, name))
    except (tarfile.TarError, EOFError) as err:
        raise CIFAR10Error(f"'{archive}' is damaged ({err}); delete it and run again") from None
    except OSError as err:  # the disk, not the archive: keep the archive
        raise CIFAR10Error(_cannot_write(data_dir, err)) from None
    finally:
        for staging in glob.glob(stagings):
            shutil.rmtree(staging, ignore_errors=True)


def _remove(path):
    with contextlib.suppress(OSError):  # absent, or on a disk that refuses even this: nothing more to do
        os.remove(path)
