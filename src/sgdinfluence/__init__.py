"""sgdinfluence: find the training instances that hurt a model trained with SGD.

Hara, Nitanda & Maehara, "Data Cleansing for Models Trained with SGD", NeurIPS 2019.

    import sgdinfluence as sgi
    run = sgi.fit(model, (X, y), loss="cross_entropy", epochs=20, batch_size=64, lr=0.05)
    scores = sgi.influence(run, query=(X_val, y_val))   # negative = harmful
    model_wo = run.retrain(exclude=scores.argsort()[:30])
"""

from . import errors, integrations
from .core import metrics
from .core.augment import RandomCrop
from .core.estimators import Reliability, influence, leave_out, reliability, select
from .core.optimizers import LRSchedule
from .core.queries import PerExample
from .core.recorder import Recorder
from .core.repair import Repair, RepairConfig, repair
from .core.train import FitConfig, Run, fit, load_run
from .core.trajectory import DiskStore, MemoryStore, ReplayStore, Store
from .errors import Error

__all__ = ["DiskStore", "Error", "FitConfig", "LRSchedule", "MemoryStore", "PerExample",
           "RandomCrop", "Recorder", "Reliability", "Repair", "RepairConfig", "ReplayStore", "Run",
           "Store", "errors", "fit", "influence", "integrations", "leave_out", "load_run",
           "metrics", "reliability", "repair", "select"]
__version__ = "0.1.0"
