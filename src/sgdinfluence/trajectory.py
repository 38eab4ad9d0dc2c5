"""Where the SGD trajectory θ[0..T-1] is kept, and the run file format.

A store is a small interface: ``append(θ[t])`` during training, ``store[t]`` during the
backward sweep and when retraining from an epoch, ``len(store)``, and ``state()`` /
``from_state()`` for saving. θ[t] is one flat vector of the trainable parameters (P,).
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Protocol

import torch

FORMAT = "sgdinfluence.run"
VERSION = 1


class TrajectoryStore(Protocol):
    kind: str

    def append(self, theta: torch.Tensor) -> None: ...
    def __getitem__(self, t: int) -> torch.Tensor: ...
    def __len__(self) -> int: ...
    def state(self) -> dict: ...


class MemoryStore:
    """Every θ[t] kept in memory: T x P numbers. Fast; fine while that fits."""

    kind = "memory"

    def __init__(self, thetas: list[torch.Tensor] | None = None):
        self._thetas: list[torch.Tensor] = list(thetas or [])

    def append(self, theta: torch.Tensor) -> None:
        self._thetas.append(theta.detach())

    def __getitem__(self, t: int) -> torch.Tensor:
        return self._thetas[t]

    def __len__(self) -> int:
        return len(self._thetas)

    def nbytes(self) -> int:
        return sum(th.numel() * th.element_size() for th in self._thetas)

    def state(self) -> dict:
        return {"kind": self.kind, "thetas": torch.stack(self._thetas)}

    @classmethod
    def from_state(cls, state: dict) -> MemoryStore:
        return cls(list(state["thetas"].unbind(0)))


STORES = {"memory": MemoryStore}


def make_store(store) -> TrajectoryStore:
    if isinstance(store, str):
        if store not in STORES:
            raise ValueError(f"unknown store {store!r}; use one of {sorted(STORES)}")
        return STORES[store]()
    if all(hasattr(store, a) for a in ("append", "__getitem__", "__len__", "state")):
        return store
    raise TypeError(f"store must be one of {sorted(STORES)} or a TrajectoryStore, "
                    f"got {type(store).__name__}")


def store_from_state(state: dict) -> TrajectoryStore:
    return STORES[state["kind"]].from_state(state)


def write_run_file(path: str | os.PathLike, payload: dict) -> None:
    """Write atomically: a temporary file beside ``path``, renamed over it once complete."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(f"cannot save run: directory {path.parent} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save({"format": FORMAT, "version": VERSION, **payload}, f)
        os.replace(tmp, path)
    except (pickle.PicklingError, AttributeError, TypeError) as e:
        os.unlink(tmp)
        raise ValueError(f"cannot save run: part of it cannot be pickled ({e}); "
                         "a custom loss or model must be defined at module level") from e
    except BaseException:
        os.unlink(tmp)
        raise


def read_run_file(path: str | os.PathLike, map_location=None) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no run file at {path}")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=False)
    except Exception as e:  # torch raises several kinds for a cut or foreign file
        raise ValueError(f"{path} is not a readable sgdinfluence run "
                         f"(truncated or corrupt?): {type(e).__name__}: {e}") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not an sgdinfluence run file")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path} has run file format version {payload.get('version')!r}; "
                         f"this sgdinfluence reads version {VERSION}")
    return payload
