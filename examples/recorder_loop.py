"""Keep your own PyTorch training loop: ``sgi.Recorder`` takes its optimizer steps.

A standard loop (momentum SGD with weight decay, a StepLR scheduler, shuffled mini-batches)
on scikit-learn's digits, run twice from the same initial weights: once as it is, once with
the three lines that record it. The recorded model must equal the plain loop's; then the
recorded run answers influence queries like a run of ``sgi.fit``.

Run: python examples/recorder_loop.py   (a few seconds on one core)
"""

import copy

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import sgdinfluence as sgi

X, y = load_digits(return_X_y=True)
X = torch.tensor(X / 16.0, dtype=torch.float32)
y = torch.tensor(y)
X_train, X_val, y_train, y_val = train_test_split(X, y, test_size=0.3, random_state=0)

torch.manual_seed(0)
initial = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
epochs, batch_size = 5, 32


def train(record: bool):
    model = copy.deepcopy(initial)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-4)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=100, gamma=0.5)
    if record:
        rec = sgi.Recorder(model, optimizer, "cross_entropy", (X_train, y_train))  # added
    order = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        for idx in torch.randperm(len(y_train), generator=order).split(batch_size):
            if record:
                rec.step(idx)                                   # replaces the four lines below
            else:
                optimizer.zero_grad()
                loss = torch.nn.functional.cross_entropy(model(X_train[idx]), y_train[idx])
                loss.backward()
                optimizer.step()
            scheduler.step()
    return rec.finish() if record else model                    # added: a Run, as fit's


plain = train(record=False)
run = train(record=True)
gap = max((a - b).abs().max().item()
          for a, b in zip(plain.parameters(), run.model.parameters(), strict=True))
print(f"{run.num_steps} steps recorded; largest difference between the plain loop's "
      f"weights and the recorded run's: {gap:.1e}")

scores = sgi.influence(run, (X_val, y_val))  # the validation loss, each training example out
worst = np.argsort(scores)[:20]
truth = sgi.leave_out(run, (X_val, y_val), [worst])[0]
print(f"leaving out the 20 most harmful: estimated change of the validation loss "
      f"{scores[worst].sum():+.4f}, retrained {truth:+.4f}")
