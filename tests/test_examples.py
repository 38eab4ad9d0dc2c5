"""The scripts in examples/ run as a user would run them, and say what they claim: each
test reads the numbers a script prints and checks the claim its docstring makes."""

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).parents[1] / "examples"


def run(name: str, *args: str, cwd: Path) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    done = subprocess.run([sys.executable, str(EXAMPLES / name), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    print(done.stdout)
    return done.stdout


def numbers(pattern: str, text: str) -> tuple[float, ...]:
    found = re.search(pattern, text)
    assert found, (pattern, text)
    return tuple(float(g) for g in found.groups())


def test_every_example_has_a_test():
    tested = {"label_noise.py", "tabular_backdoor.py", "attribution.py", "recorder_loop.py"}
    assert {p.name for p in EXAMPLES.glob("*.py")} == tested


def test_label_noise(tmp_path):
    out = run("label_noise.py", cwd=tmp_path)
    m, found, sgd, loss = numbers(r"the (\d+) most harmful by SGD-influence: (\d+) "
                                  r"\(precision (\d+)%\); by highest training loss: \d+ "
                                  r"\(precision (\d+)%", out)
    assert found >= 0.6 * m and sgd >= 60 and loss >= 60  # random would find about 10%
    (before,) = numbers(r"test accuracy as trained: ([\d.]+)%", out)
    after, _ = numbers(rf"\n +{int(m)} +([\d.]+)% +([\d.]+)%", out)
    assert after > before


def test_tabular_backdoor(tmp_path):
    out = run("tabular_backdoor.py", str(tmp_path / "backdoor"), cwd=tmp_path)
    poisoned, removed = numbers(r"(\d+) of the (\d+) rows removed are poisoned", out)
    assert removed > 0 and poisoned >= 0.8 * removed
    before, after = numbers(r"target error on the held-out half: ([\d.]+)% as trained, "
                            r"([\d.]+)% after", out)
    assert before > 80 and after < 25
    assert (tmp_path / "backdoor" / "cleanse" / "cleaned.csv").is_file()


def test_attribution(tmp_path):
    out = run("attribution.py", cwd=tmp_path)
    assert "sgi.fit returned a Run" in out and "returned a Sequential" in out
    actual, estimated = numbers(r"changes the loss by ([-+][\d.]+) \(estimated ([-+][\d.]+)\)",
                                out)
    assert actual < 0 and estimated < 0 and abs(actual - estimated) < 0.2 * abs(actual)


def test_recorder_loop(tmp_path):
    out = run("recorder_loop.py", cwd=tmp_path)
    (gap,) = numbers(r"recorded run's: ([\d.e+-]+)", out)
    assert gap < 1e-6
    estimated, retrained = numbers(r"estimated change of the validation loss ([-+][\d.]+), "
                                   r"retrained ([-+][\d.]+)", out)
    assert estimated < 0 and retrained < 0
