"""Record the runs of the trainers people use, so that ``sgi.influence`` can explain them.

The optional extra ``integrations`` (``pip install 'sgdinfluence[integrations]'``) brings
transformers and lightning; each is imported only when its class is first used.

Hugging Face (two changed lines, one added)::

    trainer = sgi.integrations.RecordingTrainer(model=model, args=args,
                                                train_dataset=train_dataset)
    trainer.train()
    run = trainer.run

Lightning (two added lines, one changed)::

    recorder = sgi.integrations.RecordingCallback("cross_entropy")
    trainer = L.Trainer(max_epochs=3, callbacks=[recorder])
    trainer.fit(module, train_loader)
    run = recorder.run

Each records the training the plain trainer would do (optimizer, scheduler, clipping,
gradient accumulation) through :class:`sgdinfluence.Recorder`, and refuses, in one line
naming what to do, what a run cannot replay.
"""

from __future__ import annotations

__all__ = ["RecordingCallback", "RecordingTrainer"]


def __getattr__(name: str):
    if name == "RecordingTrainer":
        from .huggingface import RecordingTrainer

        return RecordingTrainer
    if name == "RecordingCallback":
        from .lightning import RecordingCallback

        return RecordingCallback
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
