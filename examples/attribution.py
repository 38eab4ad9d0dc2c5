"""Which training examples made the model get this one test example wrong? Ask, then check.

scikit-learn's digits (8x8 images as 64 numbers), a small MLP. ``sgi.fit`` trains it and
returns a ``Run`` (the model plus its recorded trajectory). ``sgi.influence`` with a query
of ONE test example estimates, for every training example, how that test example's loss
would change if the training example were left out. ``run.retrain(exclude=[j])`` returns a
model (a ``torch.nn.Module``) retrained on the identical schedule without j, so we can
check the estimate for the top one literally (``sgi.leave_out`` does the same for many
sets at once).

Run: python examples/attribution.py   (a few seconds on one core)
"""

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

import sgdinfluence as sgi

X, y = load_digits(return_X_y=True)
X = torch.tensor(X / 16.0, dtype=torch.float32)
y = torch.tensor(y)
X_train, X_test, y_train, y_test = train_test_split(X, y, test_size=0.3, random_state=0)

torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
run = sgi.fit(model, (X_train, y_train), loss="cross_entropy", epochs=10, batch_size=32,
              lr=0.1, seed=0)
print(f"sgi.fit returned a {type(run).__name__}; run.model is a "
      f"{type(run.model).__name__} with {len(X_train)} training examples")

with torch.no_grad():
    wrong = torch.nonzero(run.model(X_test).argmax(1) != y_test).flatten()
i = int(wrong[0])  # the first test example the model gets wrong
one = (X_test[i:i + 1], y_test[i:i + 1])  # a query of one example: its loss


def loss(net):
    with torch.no_grad():
        return torch.nn.functional.cross_entropy(net(one[0]), one[1]).item()


with torch.no_grad():
    guess = int(run.model(one[0]).argmax())
print(f"test example {i}: a {int(y_test[i])}, predicted {guess} (loss {loss(run.model):.4f})")

scores = sgi.influence(run, one)  # (N,): the estimated change of its loss, j left out
order = np.argsort(scores)        # negative first: leaving them out lowers the loss
top = order[:5]
truth = sgi.leave_out(run, one, [[j] for j in top])  # each left out, retrained, in one batch
print("most harmful training examples for it: index, label, change of its loss if left out")
print("                                        (estimated / retrained)")
for j, t in zip(top, truth, strict=True):
    print(f"  {j:5d}  {int(y_train[j])}  {scores[j]:+.4f} / {t:+.4f}")

j = int(order[0])
retrained = run.retrain(exclude=[j])  # a torch.nn.Module, not a Run
actual = loss(retrained) - loss(run.model)
print(f"run.retrain(exclude=[{j}]) returned a {type(retrained).__name__}; "
      f"leaving {j} out changes the loss by {actual:+.4f} (estimated {scores[j]:+.4f})")
