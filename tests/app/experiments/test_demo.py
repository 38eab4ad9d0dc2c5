"""The demo tells one story: the k and the test error of its sentence are those its table
marks, and its report carries the same words."""

import html
import re

from sgdinfluence.app.experiments.demo import DemoConfig, run
from sgdinfluence.app.methods import METHODS


def test_the_demo_says_one_k_and_one_error(tmp_path):
    summary = run(DemoConfig(epochs=1), tmp_path / "demo", progress=False)
    text = summary["text"]
    said = re.search(r"Removing the ([\d,]+) most harmful .* from ([\d.]+%) to ([\d.]+%)",
                     " ".join(text.split()))
    lines = text.splitlines()
    at = next(i for i, line in enumerate(lines) if line.strip().startswith("k "))
    ks = [int(k) for k in lines[at].split()[1:]]
    row = next(line for line in lines[at:] if line.strip().startswith(METHODS["sgd"].label))
    cells = re.findall(r"[\d.]+%\*?", row[len(METHODS["sgd"].label) + 2:])
    starred = [(k, c) for k, c in zip(ks, cells, strict=True) if c.endswith("*")]
    assert len(starred) == 1
    if said:  # something was removed: the sentence's k and error are the marked ones
        assert (int(said[1].replace(",", "")), said[3]) == (starred[0][0], starred[0][1][:-1])
        assert said[2] == cells[0].rstrip("*")
    else:
        assert starred[0][0] == 0
    # every method's count of flipped labels found is printed, the sgd one returned
    assert f"{METHODS['sgd'].label}  " in text and re.search(
        rf"{re.escape(METHODS['sgd'].label)}\s+{summary['found']}\s+\(", text)
    page = (tmp_path / "demo" / "report.html").read_text()
    assert re.search(r"(The training loss|SGD-influence) finds (more|as many)", text)
    for paragraph in text.split("\n\n")[-3:]:  # the meaning, also in the report
        assert html.escape(" ".join(paragraph.split())) in page
