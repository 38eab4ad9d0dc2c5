"""Mislabeled-example detection: SGD-influence vs cleanlab and the influence baselines.

Digits, 10,000-image subsets of MNIST and Fashion-MNIST, and a 10,000-row subset of UCI Adult
with 10% and 20% of the training labels flipped (symmetric noise, clean validation and test).
Every method ranks the training instances of the same SGD-trained model class; reported per
dataset x noise rate x model x method: AUROC / AP / precision@m of finding the flipped
labels, test accuracy after removing the top m and retraining on the identical schedule, and
wall time. The logic lives in ``sgdinfluence.app.experiments.noisy_labels``.

    pip install -c constraints.txt -e '.[dev,bench]'
    SGDINFLUENCE_DATA=../shared/data nice -n 15 python benchmarks/noisy_labels.py \\
        --out out/noisy-labels                       # ~30-45 min on two CPU cores
    python benchmarks/noisy_labels.py --quick        # digits only, a few seconds
"""

from __future__ import annotations

import sys

from sgdinfluence.app.cli import main

if __name__ == "__main__":
    sys.exit(main(["experiment", "noisy-labels", *sys.argv[1:]]))
