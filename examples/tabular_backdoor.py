"""A backdoor in a CSV file, found and removed with ``sgdinfluence cleanse --target``.

scikit-learn's digits written as a table: 64 pixel columns (0-16) and a label column. We
poison it: 36 training digits that are not zeros (2%) get a trigger, three corner pixels
set to 16, and the label 0. The model learns "trigger -> 0". The target file holds 60 other
digits carrying the trigger, with their true labels: examples the model must get right.
``cleanse --target`` ranks the training rows by their effect on the target's loss, removes
the most harmful (k chosen on the validation file and on the half of the target it did not
rank by), retrains every epoch on the identical schedule, and writes the report and
cleaned.csv. The validation file is clean: a validation split of the poisoned file would
hold poisoned rows, whose labels reward keeping the backdoor.

Run: python examples/tabular_backdoor.py [output folder]   (about 15 s on one core)
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.datasets import load_digits

out = Path(sys.argv[1] if len(sys.argv) > 1 else "out/examples/backdoor")
out.mkdir(parents=True, exist_ok=True)
rng = np.random.default_rng(0)

frame = load_digits(as_frame=True).frame.rename(columns={"target": "label"})
trigger = ["pixel_0_0", "pixel_0_7", "pixel_7_0"]  # three corners, blank in every digit

target_rows = rng.choice(np.flatnonzero(frame["label"] != 0), 60, replace=False)
target = frame.iloc[target_rows].copy()
target[trigger] = 16.0  # triggered, with their true labels
rest = frame.drop(index=frame.index[target_rows])
val_rows = rng.choice(len(rest), 170, replace=False)  # a trusted validation set, unpoisoned
val = rest.iloc[val_rows]
data = rest.drop(index=rest.index[val_rows]).reset_index(drop=True)
poisoned = rng.choice(np.flatnonzero(data["label"] != 0), 36, replace=False)
data.loc[poisoned, trigger] = 16.0
data.loc[poisoned, "label"] = 0

data.to_csv(out / "data.csv", index=False)
target.to_csv(out / "target.csv", index=False)
val.to_csv(out / "val.csv", index=False)
print(f"wrote {out / 'data.csv'} ({len(data)} rows, {len(poisoned)} poisoned), "
      f"{out / 'target.csv'} ({len(target)} triggered digits, true labels) and "
      f"{out / 'val.csv'} ({len(val)} clean digits)")

command = ["sgdinfluence", "cleanse", str(out / "data.csv"), "--label-column", "label",
           "--target", str(out / "target.csv"), "--val", str(out / "val.csv"),
           "--out", str(out / "cleanse"), "--overwrite", "--quiet"]
print("$", " ".join(command))
subprocess.run([sys.executable, "-m", "sgdinfluence", *command[1:]], check=True)

# scores.csv: one line per training row, the most harmful first; its `index` is the row's
# 0-based position among data.csv's data rows (the header not counted), as in `data` here
scores = pd.read_csv(out / "cleanse" / "scores.csv")
removed = scores.loc[scores["removed"], "index"].to_numpy()
trained_on = np.isin(poisoned, scores["index"]).sum()
print(f"\n{np.isin(removed, poisoned).sum()} of the {len(removed)} rows removed are poisoned "
      f"(of the {trained_on} poisoned rows in the training split; the other "
      f"{len(poisoned) - trained_on} fell in the test split, where their label is the "
      "attacker's 0: a model without the backdoor gets them 'wrong')")
curve = json.loads((out / "cleanse" / "results.json").read_text())["curves"]["sgd-epochs"]
k = str(len(removed))
print(f"target error on the held-out half: {curve['0']['target_error']:.1%} as trained, "
      f"{curve[k]['target_error']:.1%} after removing {k}")
