"""Label noise in a table: flip 10% of the training labels, rank, remove, retrain.

scikit-learn's breast-cancer table (569 tumours, 30 measurements). The training labels of
10% of the tumours are flipped; validation and test labels stay clean. SGD-influence ranks
the training rows by how much leaving each out would lower the validation loss; we count
the flipped labels among the most harmful (precision), beside the highest-training-loss
ranking that label-noise tools use, then remove each ranking's first and retrain on the
identical schedule. (Measured here: the training loss finds more flipped labels, while
removing SGD-influence's picks helps the test accuracy more; see docs/benchmarks.md.)

Run: python examples/label_noise.py   (a few seconds on one core)
"""

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

import sgdinfluence as sgi

X, y = load_breast_cancer(return_X_y=True)
X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.4, random_state=0,
                                                    stratify=y)
X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, test_size=0.5, random_state=0,
                                                stratify=y_rest)
scaler = StandardScaler().fit(X_train)
X_train, X_val, X_test = (torch.tensor(scaler.transform(a), dtype=torch.float32)
                          for a in (X_train, X_val, X_test))
y_val, y_test = torch.tensor(y_val), torch.tensor(y_test)

rng = np.random.default_rng(0)
flipped = rng.choice(len(y_train), round(0.1 * len(y_train)), replace=False)
noisy = y_train.copy()
noisy[flipped] = 1 - noisy[flipped]
m = len(flipped)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(30, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
run = sgi.fit(model, (X_train, torch.tensor(noisy)), loss="cross_entropy", epochs=20,
              batch_size=16, lr=0.05, seed=0)
scores = sgi.influence(run, (X_val, y_val))          # (N,), negative = harmful
order = np.argsort(scores)                           # the most harmful first

with torch.no_grad():
    loss = torch.nn.functional.cross_entropy(run.model(X_train), torch.tensor(noisy),
                                             reduction="none").numpy()
by_loss = np.argsort(-loss)                          # the label-noise tools' ranking


def accuracy(net):
    with torch.no_grad():
        return (net(X_test).argmax(1) == y_test).float().mean().item()


print(f"{len(y_train)} training rows, {m} with a flipped label")
print(f"flipped labels among the {m} most harmful by SGD-influence: "
      f"{np.isin(order[:m], flipped).sum()} (precision {np.isin(order[:m], flipped).mean():.0%}); "
      f"by highest training loss: {np.isin(by_loss[:m], flipped).sum()} "
      f"(precision {np.isin(by_loss[:m], flipped).mean():.0%}); at random about "
      f"{m * m / len(y_train):.0f}")
print(f"test accuracy as trained: {accuracy(run.model):.1%}")
print("after removing the k first and retraining on the identical schedule:")
print("     k  SGD-influence  training loss")
for k in (m // 2, m, 2 * m):
    print(f"  {k:4d}  {accuracy(run.retrain(exclude=order[:k])):12.1%}"
          f"  {accuracy(run.retrain(exclude=by_loss[:k])):12.1%}")
