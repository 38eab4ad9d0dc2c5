"""The loops people really write, through sgi.Recorder: for each feature of a training loop,
is the recorded run the user's training (θ: max relative difference between the model the
user's loop trains without the recorder and with it) and does it replay (retrain(exclude=[])
against the trained model), or is it refused, and with what line? Issue 21's table, float64,
a small MLP (batch norm where a row needs it), 64 instances, batches of 8, 2 epochs.

Scores against the unrolled oracle are the tests' (named per row); this prints the table.

    OMP_NUM_THREADS=1 python benchmarks/loops.py     # about 3 s
"""
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

import sgdinfluence as sgi

torch.manual_seed(0)
N, D = 64, 6
X = torch.randn(N, D, dtype=torch.float64)
Y = (X[:, 0] + X[:, 1] > 0).long()
STEPS = [b for _ in range(2) for b in torch.randperm(N).split(8)]
ROWS = []


def net(bn=False):
    torch.manual_seed(1)
    layers = [nn.Linear(D, 16), *([nn.BatchNorm1d(16)] if bn else []), nn.ReLU(),
              nn.Linear(16, 2)]
    return nn.Sequential(*layers).double()


def rel(a: nn.Module, b: nn.Module) -> float:
    pa, pb = (torch.cat([t.flatten() for t in m.state_dict().values() if t.is_floating_point()])
              for m in (a, b))
    return ((pa - pb).abs().max() / pb.abs().max()).item()


def row(feature, how, theta=None, replay=None, note=""):
    def fmt(v):
        return "" if v is None else f"{v:.1e}"

    ROWS.append((feature, how, fmt(theta), fmt(replay), note))


def refused(call) -> str:
    try:
        call()
    except (sgi.Error, TypeError) as e:
        return f"refused: {str(e)[:110]}..."
    return "NOT refused"


def loop(model, opt, step, scheduler=None, recorder=None, **kw):
    """The user's loop: ``step(model, opt, idx)`` without the recorder, rec.step with it."""
    for idx in STEPS:
        if recorder is None:
            opt.zero_grad()
            step(model, opt, idx)
        else:
            recorder.step(idx, **kw)
        if scheduler is not None:
            scheduler.step()
    return recorder.finish() if recorder is not None else None


def plain_step(model, opt, idx):
    F.cross_entropy(model(X[idx]), Y[idx]).backward()
    opt.step()


def compare(feature, how, make_opt, step, note="", bn=False, rec_kwargs=None, step_kwargs=None,
            schedule=None):
    plain, mine = net(bn), net(bn)
    opt = make_opt(plain)
    loop(plain, opt, step, schedule(opt) if schedule else None)
    opt = make_opt(mine)
    rec = sgi.Recorder(mine, opt, "cross_entropy", (X, Y), **(rec_kwargs or {}))
    run = loop(mine, opt, step, schedule(opt) if schedule else None, rec, **(step_kwargs or {}))
    row(feature, how, rel(mine, plain), rel(run.retrain([]), mine), note)
    return run


def clipped(model, opt, idx):
    F.cross_entropy(model(X[idx]), Y[idx]).backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)
    opt.step()


compare("clip_grad_norm_", "Recorder(max_grad_norm=0.05)",
        lambda m: torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9), clipped,
        "tests/core/test_clipping.py: scores vs oracle < 1e-9", rec_kwargs={"max_grad_norm": 0.05})


def hooked():
    m = net()
    opt = torch.optim.SGD(m.parameters(), lr=0.2)
    opt.register_step_pre_hook(
        lambda o, a, k: torch.nn.utils.clip_grad_norm_(m.parameters(), 0.01) and None)
    sgi.Recorder(m, opt, "cross_entropy", (X, Y)).step(STEPS[0])


row("clip in an optimizer pre-hook", refused(hooked))


def accumulated(model, opt, idx):
    for part in idx.tensor_split(4):
        (F.cross_entropy(model(X[part]), Y[part], reduction="sum") / len(idx)).backward()
    opt.step()


compare("accumulation, 4 micro-batches", "rec.step(idx, micro_batches=4)",
        lambda m: torch.optim.SGD(m.parameters(), lr=0.2, momentum=0.9), accumulated,
        "batch norm per micro-batch; test_recorder.py: vs oracle < 1e-9", bn=True,
        step_kwargs={"micro_batches": 4})


class Noisy(Dataset):
    def __len__(self):
        return N

    def __getitem__(self, i):
        return X[i] + 0.3 * torch.randn(D, dtype=torch.float64), Y[i]


m = net()
rec = sgi.Recorder(m, torch.optim.SGD(m.parameters(), lr=0.2), "cross_entropy", Noisy())
run = loop(m, None, None, recorder=rec)
row("augmentation in Dataset.__getitem__", "reads seeded per step and item",
    replay=rel(run.retrain([]), m),
    note="θ: the loop's own draws differ by design; test_dataset_augmentation.py < 1e-9")


def one_image(image):
    return image + 0.3 * torch.randn(())


run = sgi.fit(net(), (X, Y), epochs=2, batch_size=8, lr=0.2, augment=one_image)
batch = sgi.core.augment.apply(one_image, torch.zeros(8, D))
row("a transform of one image as augment=", "applied image by image",
    replay=rel(run.retrain([]), run.model),
    note=f"{len(set(batch[:, 0].tolist()))} draws for 8 images")
for name, make, top in (
        ("SGD", lambda m: torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9), 0.1),
        ("Adam", lambda m: torch.optim.Adam(m.parameters(), lr=0.01), 0.02)):
    compare(f"OneCycleLR ({name}): momentum/betas cycled", "recorded per step", make, plain_step,
            "test_recorder.py: vs oracle < 1e-9", schedule=lambda o, top=top: torch.optim.
            lr_scheduler.OneCycleLR(o, max_lr=top, total_steps=len(STEPS)))


def frozen_bn(model, opt, idx):
    plain_step(model, opt, idx)


plain, mine = net(bn=True), net(bn=True)
for m in (plain, mine):
    m.train()
    m[1].eval()
opt = torch.optim.SGD(plain.parameters(), lr=0.2, momentum=0.9)
loop(plain, opt, plain_step)
opt = torch.optim.SGD(mine.parameters(), lr=0.2, momentum=0.9)
run = loop(mine, opt, plain_step, recorder=sgi.Recorder(mine, opt, "cross_entropy", (X, Y)))
row("backbone.eval() inside a training model", "modes recorded and replayed",
    rel(mine, plain), rel(run.retrain([]), mine),
    f"left in eval mode: {not mine[1].training}; test_modes.py: vs oracle < 1e-9")
row("CrossEntropyLoss(weight=...)", refused(lambda: sgi.Recorder(
    net(), torch.optim.SGD(net().parameters(), lr=0.1),
    nn.CrossEntropyLoss(weight=torch.ones(2).double(), reduction="none"), (X, Y))))


def autocast():
    m = net()
    rec = sgi.Recorder(m, torch.optim.SGD(m.parameters(), lr=0.1), "cross_entropy", (X, Y))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        rec.step(STEPS[0])


row("autocast bf16", refused(autocast))
row("BatchNorm running statistics", "their adjoint carried by the sweep",
    note="test_batchnorm.py: vs oracle < 1e-9 (> 1e-2 without); sweep +30% on the CIFAR CNN")
row("sdpa attention (multi-head)", "swept with the math kernel",
    note="test_attention.py: vs oracle < 1e-9 (failed before)")


class Head(nn.Module):
    def __init__(self):
        super().__init__()
        self.backbone, self.head = nn.Linear(D, 8).double(), nn.Linear(8, 2).double()

    def forward(self, x):
        return {"logits": self.head(self.backbone(x).relu())}


h = Head()
row("optimizer over the head, backbone requires_grad", refused(lambda: sgi.Recorder(
    h, torch.optim.SGD(h.head.parameters(), lr=0.1), "cross_entropy", (X, Y))))
row("fused AdamW (the HF Trainer's default)", refused(lambda: sgi.Recorder(
    h, torch.optim.AdamW(h.parameters(), fused=True), "cross_entropy", (X, Y))))


class Wrapped:
    def __init__(self, optimizer):
        self.optimizer = optimizer


row("a wrapped optimizer (accelerate, Lightning)", refused(lambda: sgi.Recorder(
    h, Wrapped(torch.optim.SGD(h.parameters(), lr=0.1)), "cross_entropy", (X, Y))))
h.backbone.requires_grad_(False)
opt = torch.optim.SGD(h.head.parameters(), lr=0.1)
run = loop(h, opt, None, recorder=sgi.Recorder(h, opt, "cross_entropy", (X, Y)))
row("an HF model returning .logits", "read by its logits", replay=rel(run.retrain([]), h))
row("HF Trainer / Lightning", "sgi.integrations.RecordingTrainer / RecordingCallback",
    note="tests/integrations: θ equal to the plain trainer's, scores vs oracle ~1e-13")


class Slow(Dataset):
    """Items that take 2 ms each to read (decoding an image, say)."""

    def __len__(self):
        return N

    def __getitem__(self, i):
        time.sleep(0.002)
        return X[i], Y[i]


seconds = []
for workers in (0, 2):
    m = net()
    rec = sgi.Recorder(m, torch.optim.SGD(m.parameters(), lr=0.2), "cross_entropy", Slow(),
                       workers=workers)
    rec.step(torch.arange(N))  # workers start
    start = time.perf_counter()
    for _ in range(5):
        rec.step(torch.randperm(N))
    seconds.append(time.perf_counter() - start)
row("Recorder(workers=2)", "a step's items read by 2 processes",
    note=f"5 steps of {N} items at 2 ms: {seconds[0]:.2f} s -> {seconds[1]:.2f} s")

print("| loop feature | now | θ vs the user's loop | replay | note |")
print("|---|---|---|---|---|")
for r in ROWS:
    print("| " + " | ".join(r) + " |")
