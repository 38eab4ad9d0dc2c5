"""A run's parts as a run file holds them: tensors and plain data, nothing that runs.

A run file (``Run.save``, a DiskStore's manifest) is read with ``torch.load(weights_only=True)``,
which builds tensors, numbers, strings and containers and refuses anything else unread, so
opening a run file cannot run code, whoever wrote it. The parts of a run that are code:

- the model: its state dict, and its architecture as a nested weights-only checkpoint. That
  is rebuilt only when every class it names is a layer of ``torch.nn`` or a module of
  sgdinfluence (or one the caller trusts, by ``torch.serialization.add_safe_globals``). Any
  other model is given again, ``load_run(path, model=Net())``, built as for ``fit``; the
  file's state is loaded into it.
- the loss by its name, the augmentation :class:`RandomCrop` by its options; a callable of
  the user's is given again (``loss=``, ``augment=``).
- the training data as tensors; a Dataset is given again (``train=``).

What is given again is checked against the run: the model's state must fit it, the data must
have the run's length, and step 0's loss, recomputed with those parts, must be the recorded
one.
"""

from __future__ import annotations

import copy
import importlib
import io
import math
import pickle
from dataclasses import asdict

import torch
from torch import nn

from ..errors import RunFileError
from . import losses
from .augment import RandomCrop
from .data import Streamed, Tensors, TrainData


def qualname(obj) -> str:
    kind = obj if isinstance(obj, type) else type(obj)
    return f"{kind.__module__}.{kind.__qualname__}"


# --- the model --------------------------------------------------------------------------

def model_part(model: nn.Module) -> dict:
    """The model's class, state dict and architecture (None where torch cannot save the
    module, e.g. a class defined in a function or a hook holding a lambda)."""
    buffer = io.BytesIO()
    try:
        torch.save(model, buffer)
        architecture: bytes | None = buffer.getvalue()
    except Exception:  # noqa: BLE001 (pickling fails in many ways; the model is given again)
        architecture = None
    return {"class": qualname(model), "state": model.state_dict(), "architecture": architecture}


def rebuild_model(part: dict, given: nn.Module | None, map_location, path) -> nn.Module:
    """The run's model: ``given`` (a copy of it) or the file's architecture, with the file's
    state loaded."""
    model = _architecture(part, map_location, path) if given is None else copy.deepcopy(given)
    try:
        model.load_state_dict(part["state"])
    except RuntimeError as e:
        first = str(e).split("\n\t")[1:2] or [str(e)]
        raise RunFileError(f"the model does not fit the run {path} (a {part['class']}): "
                           f"{first[0].strip()}; pass the model built as for fit") from e
    return model


def _architecture(part: dict, map_location, path) -> nn.Module:
    blob, name = part["architecture"], part["class"]
    fix = (f"pass load_run({str(path)!r}, model=...) a {name.rsplit('.', 1)[-1]} built as "
           "for fit")
    if blob is None:
        raise RunFileError(f"the run {path} holds the state of its model ({name}) but not "
                           f"its architecture; {fix}")
    names = torch.serialization.get_unsafe_globals_in_checkpoint(io.BytesIO(blob))
    trusted: list = [c for c in map(_module_class, names) if c is not None]
    try:
        with torch.serialization.safe_globals(trusted):
            model = torch.load(io.BytesIO(blob), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        others = [n for n in names if _module_class(n) is None]
        raise RunFileError(f"the model of the run {path} is made of classes a run file does "
                           f"not rebuild ({', '.join(others[:3]) or name}; only torch.nn's "
                           f"layers and sgdinfluence's are); {fix}") from e
    if not isinstance(model, nn.Module):
        raise RunFileError(f"the run {path} holds a {type(model).__name__} as its model's "
                           "architecture, not a torch.nn.Module; it is corrupt")
    return model


def _module_class(name: str) -> type | None:
    """The class ``name`` when it is a torch.nn layer or an sgdinfluence module: importing
    those runs only torch's and sgdinfluence's own code. None for anything else."""
    module, _, attr = name.rpartition(".")
    if not (module.startswith("torch.nn.modules.") or module.startswith("sgdinfluence.")):
        return None
    try:
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError):
        return None
    return obj if isinstance(obj, type) and issubclass(obj, nn.Module) else None


# --- loss, augmentation, data -----------------------------------------------------------

def loss_part(loss_fn: losses.LossFn) -> str | dict:
    """A built-in loss by name, else the callable's name (given again on load)."""
    for name, fn in losses.LOSSES.items():
        if loss_fn is fn:
            return name
    return {"callable": qualname(loss_fn) if isinstance(loss_fn, type) else
            getattr(loss_fn, "__qualname__", qualname(loss_fn))}


def rebuild_loss(part, given, path) -> losses.LossFn:
    if given is not None:
        return losses.resolve(given)
    if isinstance(part, str):
        return losses.resolve(part)
    raise RunFileError(f"the run {path} was trained with the loss {part['callable']}, a "
                       "callable a run file does not hold; pass it again: load_run(path, "
                       "loss=...)")


def augment_part(augment) -> dict | None:
    if augment is None:
        return None
    if type(augment) is RandomCrop:
        return {"RandomCrop": asdict(augment)}
    return {"callable": qualname(augment)}


def rebuild_augment(part, given, path):
    if given is not None:
        return given
    if part is None:
        return None
    if "RandomCrop" in part:
        return RandomCrop(**part["RandomCrop"])
    raise RunFileError(f"the run {path} was trained with the augmentation {part['callable']}, "
                       "a callable a run file does not hold; pass it again: load_run(path, "
                       "augment=...)")


def train_part(data: TrainData) -> dict:
    if isinstance(data, Tensors):
        return {"X": data.X, "y": data.y}
    assert isinstance(data, Streamed)
    return {"dataset": qualname(data.dataset), "length": len(data), "workers": data.workers}


def rebuild_train(part: dict, given, loss_fn, dtype: torch.dtype, path) -> TrainData:
    if "X" in part:
        if given is not None:
            raise RunFileError(f"the run {path} holds its training data; load it without "
                               "train=")
        return Tensors(part["X"], part["y"])
    if given is None:
        raise RunFileError(f"the run {path} read its training data from a Dataset "
                           f"({part['dataset']}), which a run file does not hold; pass it "
                           "again: load_run(path, train=...)")
    data = Streamed(given, loss_fn, dtype, torch.device("cpu"), part["workers"])
    if len(data) != part["length"]:
        raise RunFileError(f"train has {len(data)} items, but the run {path} was trained on "
                           f"{part['length']}; pass the run's Dataset")
    return data


# --- checks of what a file says ---------------------------------------------------------

PARTS: dict[str, type | tuple[type, ...]] = {
    "model": dict, "initial_state": dict, "batches": list, "lrs": list, "seeds": list,
    "epoch_starts": list, "epoch_buffers": list, "losses": torch.Tensor, "config": dict,
    "store": dict, "train": dict, "loss": (str, dict), "augment": (dict, type(None)),
    "optimizer": dict, "groups": (torch.Tensor, type(None)), "eval_modules": list,
    "hypers": list, "micro": list}
MODEL: dict[str, type | tuple[type, ...]] = {"class": str, "state": dict,
                                            "architecture": (bytes, type(None))}


def check_parts(p: dict, path) -> None:
    """Refuse a file whose parts are not of their kinds, before any is used."""
    wrong = [k for k, kind in PARTS.items() if not isinstance(p.get(k), kind)]
    model = p.get("model")
    if isinstance(model, dict):
        wrong += [f"model's {k}" for k, kind in MODEL.items()
                  if not isinstance(model.get(k), kind)]
    if wrong:
        raise RunFileError(f"{path} is corrupt or lacks part of a run ({', '.join(wrong)} "
                           "missing or of the wrong kind); re-record it with sgi.fit")


def check_schedule(p: dict, num_train: int, path) -> None:
    """Refuse a schedule no run can have: indices outside the data, rates or seeds that are
    not numbers, epochs that do not partition the steps, states that are not finite."""
    T = len(p["batches"])

    def bad(what: str):
        raise RunFileError(f"the run {path} is corrupt: {what}; re-record it with sgi.fit")

    if T == 0 or len(p["lrs"]) != T or len(p["seeds"]) != T:
        bad(f"it has {T} batches, {len(p['lrs'])} rates and {len(p['seeds'])} seeds")
    for t, b in enumerate(p["batches"]):
        if not isinstance(b, torch.Tensor) or b.ndim != 1 or b.dtype != torch.long or not len(b):
            bad(f"batch {t} is not a non-empty 1-D tensor of indices")
        if b.min() < 0 or b.max() >= num_train:
            bad(f"batch {t} holds indices outside [0, {num_train})")
    for t, r in enumerate(p["lrs"]):  # a float, or one per parameter group
        rates = r if isinstance(r, tuple) and p["groups"] is not None else (r,)
        if not all(type(v) is float and math.isfinite(v) and v >= 0 for v in rates):
            bad(f"the learning rate of step {t} is {r!r}")
    if not all(type(v) is int and 0 <= v < 2**63 for v in p["seeds"]):
        bad("its seeds are not all ints in [0, 2**63)")
    starts = p["epoch_starts"]
    if (not isinstance(starts, list) or not all(type(v) is int for v in starts) or not starts
            or starts[0] != 0 or sorted(set(starts)) != starts or starts[-1] >= T
            or not isinstance(p["epoch_buffers"], list)
            or len(p["epoch_buffers"]) != len(starts)):
        bad(f"its epochs start at steps {str(starts)[:40]} of {T}")
    states = [p["initial_state"], p["model"]["state"], *p["epoch_buffers"]]
    if not all(isinstance(d, dict) and all(isinstance(v, torch.Tensor) for v in d.values())
               for d in states):
        bad("its model states are not dicts of tensors")
    if any(v.is_floating_point() and not torch.isfinite(v).all()
           for d in states for v in d.values()):
        bad("its model's parameters hold NaN or infinite values")
    losses_ = p["losses"]
    if not (isinstance(losses_, torch.Tensor) and losses_.shape == (T,)
            and torch.isfinite(losses_).all()):
        bad(f"its step losses are not {T} finite numbers")
    changes = p["eval_modules"]
    if not all(isinstance(c, list) and len(c) == 2 and type(c[0]) is int and 0 <= c[0] < T
               and isinstance(c[1], list) and all(isinstance(n, str) for n in c[1])
               for c in changes) or [c[0] for c in changes] != sorted({c[0] for c in changes}):
        bad("its modules' train/eval modes are not [step, [names]] in the order of steps")
    hypers = p["hypers"]
    if not all(isinstance(c, list) and len(c) == 2 and type(c[0]) is int and 0 <= c[0] < T
               and isinstance(c[1], dict) and set(c[1]) <= {"momentum", "betas", "weight_decay"}
               for c in hypers) or [c[0] for c in hypers] != sorted({c[0] for c in hypers}):
        bad("its momentum, betas or weight decay per step are not [step, {...}] in order")
    micro = p["micro"]
    if not all(isinstance(c, list) and len(c) == 2 and type(c[0]) is int and 0 <= c[0] < T
               and type(c[1]) is int and c[1] >= 1 for c in micro) or \
            [c[0] for c in micro] != sorted({c[0] for c in micro}):
        bad("its micro-batches per step are not [step, count] in order")
    groups = p["groups"]
    if groups is not None and not (isinstance(groups, torch.Tensor) and groups.ndim == 1
                                   and groups.dtype == torch.long):
        bad("its parameter groups are not a 1-D tensor of group indices")
