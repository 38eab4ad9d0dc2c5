"""RecordingCallback: a LightningModule's automatic optimization (its optimizer and scheduler,
gradient_clip_val, accumulate_grad_batches), recorded: the same model as the plain
lightning.Trainer in float64, literal retraining, and the oracle's scores."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

L = pytest.importorskip("lightning")

import sgdinfluence as sgi  # noqa: E402
from oracle import unrolled_optimizer  # noqa: E402
from problems import small_problem  # noqa: E402
from sgdinfluence.errors import Error  # noqa: E402

N, LR, BATCH = 40, 0.1, 5


class Classifier(L.LightningModule):
    """A plain module: forward is the network, training_step its mean cross-entropy."""

    def __init__(self, net, smoothing=0.0):
        super().__init__()
        self.net, self.smoothing = net, smoothing

    def forward(self, x):
        return self.net(x)

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y, label_smoothing=self.smoothing)

    def configure_optimizers(self):
        optimizer = torch.optim.SGD(self.parameters(), lr=LR, momentum=0.9)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)]


def fit(module, train, callbacks=(), accumulate=2, clip=0.5, **options):
    trainer = L.Trainer(max_epochs=2, precision="64-true", gradient_clip_val=clip,
                        accumulate_grad_batches=accumulate, callbacks=list(callbacks),
                        logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0, **options)
    torch.manual_seed(1)  # the loader's shuffling draws from torch's generator
    trainer.fit(module, DataLoader(TensorDataset(*train), batch_size=BATCH, shuffle=True))
    return trainer


@pytest.mark.parametrize("accumulate", [1, 2])
def test_the_recorded_fit_trains_as_the_plain_one_and_matches_the_oracle(accumulate):
    net, train, val = small_problem(n=N)
    plain, mine = Classifier(copy.deepcopy(net)), Classifier(copy.deepcopy(net))
    fit(plain, train, accumulate=accumulate)
    recorder = sgi.integrations.RecordingCallback("cross_entropy")
    fit(mine, train, [recorder], accumulate=accumulate)
    run = recorder.run
    per_epoch = N // BATCH // accumulate
    assert run.num_steps == 2 * per_epoch and run.epoch_starts == [0, per_epoch]
    assert "training_step" not in mine.__dict__  # the module's own methods are back
    for p, q in zip(plain.parameters(), mine.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-13, atol=1e-15)
    for p, q in zip(run.retrain([]).parameters(), mine.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    rates = [LR * 0.5 ** (t // per_epoch) for t in range(run.num_steps)]  # StepLR per epoch
    expected, final = unrolled_optimizer(
        copy.deepcopy(net), *train, lambda o, t: F.cross_entropy(o, t, reduction="none"),
        run.batches, rates, lambda forward: F.cross_entropy(forward(val[0]), val[1]),
        momentum=0.9, max_grad_norm=0.5, micro=accumulate)
    for p, q in zip(mine.parameters(), final, strict=True):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-14)
    scores = sgi.influence(run, val)
    assert np.abs(expected.numpy()).max() > 1e-4
    assert np.abs(scores - expected.numpy()).max() / np.abs(expected.numpy()).max() < 1e-9


class Manual(Classifier):
    def __init__(self, net):
        super().__init__(net)
        self.automatic_optimization = False


class OwnStep(Classifier):
    def optimizer_step(self, *args, **kwargs):
        super().optimizer_step(*args, **kwargs)


REFUSALS = {  # what a run cannot replay -> the one line naming the fix
    "manual optimization": (Manual, dict(accumulate=1, clip=None),
                            "with manual optimization call rec.step"),
    "an own optimizer_step": (OwnStep, {}, "OwnStep overrides optimizer_step, which the "
                                          r"recorder takes over: remove it"),
    "mixed precision": (Classifier, dict(precision="bf16-mixed"),
                        r"precision='bf16-mixed'\) trains under autocast .* "
                        "use precision='32-true'"),
    "a shorter last accumulation": (Classifier, dict(accumulate=3),
                                    "accumulate_grad_batches=3 divides each micro-batch's mean "
                                    r"loss by 3, .* \(8 batches of 5 of 40 instances\)"),
    "another loss in training_step": (lambda net: Classifier(net, smoothing=0.1), {},
                                      r"Classifier.training_step returns .* give "
                                      "RecordingCallback the loss training_step computes"),
}


@pytest.mark.parametrize("case", REFUSALS)
def test_what_a_run_cannot_replay_is_refused_naming_the_fix(case):
    make, options, message = REFUSALS[case]
    net, train, _ = small_problem(n=N)
    if "precision" in options:
        options = dict(options, accumulate=1)
        module = make(net.float())
        train = (train[0].float(), train[1])
        with pytest.raises(Error, match=message) as refused:
            L.Trainer(max_epochs=1, callbacks=[sgi.integrations.RecordingCallback()],
                      logger=False, enable_progress_bar=False, precision=options["precision"]
                      ).fit(module, DataLoader(TensorDataset(*train), batch_size=BATCH))
    else:
        with pytest.raises(Error, match=message) as refused:
            fit(make(net), train, [sgi.integrations.RecordingCallback()], **options)
    assert "\n" not in str(refused.value)
