"""sgdinfluence: find the training instances that hurt a model trained with SGD.

Hara, Nitanda & Maehara, "Data Cleansing for Models Trained with SGD", NeurIPS 2019.

    import sgdinfluence as sgi
    run = sgi.fit(model, (X, y), loss="cross_entropy", epochs=20, batch_size=64, lr=0.05)
    scores = sgi.influence(run, query=(X_val, y_val))   # negative = harmful
    model_wo = run.retrain(exclude=scores.argsort()[:30])
"""

from .estimators import influence
from .queries import PerExample
from .train import FitConfig, Run, fit, load_run
from .trajectory import DiskStore, MemoryStore, ReplayStore

__all__ = ["DiskStore", "FitConfig", "MemoryStore", "PerExample", "ReplayStore", "Run", "fit",
           "influence", "load_run"]
__version__ = "0.1.0"
