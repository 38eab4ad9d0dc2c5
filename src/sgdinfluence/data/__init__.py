"""Dataset loaders reading a data directory (``--data-dir`` or ``$SGDINFLUENCE_DATA``).

Files are read in their published formats. A missing file is downloaded from its usual
source when the machine is online; offline, the error names the directory and the files.
"""

from __future__ import annotations

import gzip
import os
import urllib.request
from pathlib import Path

import numpy as np

ENV = "SGDINFLUENCE_DATA"

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}
MNIST_URLS = {
    "mnist": "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "fashion-mnist": "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
}


def data_dir(path: str | os.PathLike | None = None) -> Path:
    """The data directory: ``path``, else ``$SGDINFLUENCE_DATA``, else a per-user cache."""
    if path is not None:
        return Path(path).expanduser()
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "sgdinfluence"


def fetch(folder: Path, files: list[str], base_url: str) -> list[Path]:
    """Paths of ``files`` in ``folder``, downloading the missing ones from ``base_url``."""
    missing = [f for f in files if not (folder / f).is_file()]
    for f in missing:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            tmp = folder / f".{f}.part"
            urllib.request.urlretrieve(base_url + f, tmp)  # noqa: S310 (fixed https source)
            tmp.replace(folder / f)
        except OSError as e:
            raise FileNotFoundError(
                f"dataset files missing in {folder}: expected {', '.join(missing)}; the download "
                f"from {base_url} failed ({e}). Put the files there, or point --data-dir / "
                f"${ENV} at a directory that has them.") from e
    return [folder / f for f in files]


def read_idx(path: Path) -> np.ndarray:
    """Read a (gzipped) IDX file: the format of MNIST and Fashion-MNIST."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise ValueError(f"{path} is not an unsigned-byte IDX file")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != np.prod(shape):
        raise ValueError(f"{path} is truncated: {data.size} values for shape {shape}")
    return data.reshape(shape)


def mnist(split: str = "train", root=None, name: str = "mnist") -> tuple[np.ndarray, np.ndarray]:
    """MNIST (or ``name="fashion-mnist"``) from the IDX files in ``<data dir>/<name>/``.

    Returns images (n, 1, 28, 28) float32 in [0, 1] and labels (n,) int64.
    """
    if split not in MNIST_FILES:
        raise ValueError(f"unknown split {split!r}; use one of {sorted(MNIST_FILES)}")
    images, labels = fetch(data_dir(root) / name, list(MNIST_FILES[split]), MNIST_URLS[name])
    X = read_idx(images).astype(np.float32)[:, None] / 255.0
    return X, read_idx(labels).astype(np.int64)
