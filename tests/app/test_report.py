"""The report's charts: a chance band on every panel, sized to be read in the page; and the
page itself as a browser shows it (headless Chromium, where installed: screenshots kept)."""

import io
import os
import shutil
import subprocess
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from sgdinfluence.app import report

WIDTHS = (1300, 800)  # a laptop's browser window; half a screen


def test_the_chance_interval_is_wilsons():
    lo, hi = report.interval(27 / 359, 359)  # the demo's test error as trained
    assert (round(lo, 4), round(hi, 4)) == (0.0522, 0.1072)
    assert report.interval(0.0, 100)[0] == 0.0 and 0.03 < report.interval(0.0, 100)[1] < 0.04
    assert report.interval(1.0, 100)[1] == pytest.approx(1.0)
    wide, narrow = report.interval(0.16, 4000), report.interval(0.16, 400)
    assert wide[1] - wide[0] < narrow[1] - narrow[0]


def fake_result(target: bool):
    """What plot_curves reads of a Result: curves per method, split sizes, scores."""
    ks = (0, 1, 3, 10, 30, 100)
    rng = np.random.default_rng(0)
    curves = {m: {k: (0.05 + 0.002 * rng.normal() * (k > 0), 0.052 + 0.002 * rng.normal() *
                      (k > 0)) for k in ks} for m in ("sgd", "sgd-last", "random")}
    sizes = SimpleNamespace(**{s: SimpleNamespace(y=np.zeros(n)) for s, n in
                               (("train", 2000), ("val", 500), ("test", 1000),
                                ("target_check", 100))})
    return SimpleNamespace(curves=curves, splits=sizes, scores=dict.fromkeys(curves),
                           target_curves={m: {k: 0.4 * (k < 30) for k in ks} for m in curves}
                           if target else {})


@pytest.mark.parametrize("target", [False, True])
def test_charts_are_drawn_at_the_width_the_page_shows_unscaled(target):
    wide = Image.open(io.BytesIO(report.plot_curves(fake_result(target))))
    stacked = Image.open(io.BytesIO(report.plot_curves(fake_result(target), columns=1)))
    assert wide.width == report.CHART_WIDTH * report.CHART_DPI == 1100  # < the page's 1,180
    assert stacked.width == report.NARROW_WIDTH * report.CHART_DPI
    panels = 3 if target else 2
    assert stacked.height > (panels - 0.5) * report.PANEL_HEIGHT * report.CHART_DPI
    assert wide.height <= (2 if target else 1.5) * report.PANEL_HEIGHT * report.CHART_DPI


def test_the_axis_spans_the_band_so_noise_looks_like_noise():
    """Errors moving 4.8-5.4% on 1,000 test instances stay inside the band (3.7-6.6%)."""
    from matplotlib.figure import Figure

    ax = Figure().subplots()
    curves = {"sgd": {0: 0.052, 10: 0.048, 30: 0.054}, "random": {0: 0.052, 10: 0.053}}
    report._panel(ax, "test error", 1000, curves, "sgd")
    lo, hi = report.interval(0.052, 1000)
    bottom, top = ax.get_ylim()
    assert bottom < lo < 0.048 and 0.054 < hi < top
    assert "n = 1,000" in ax.get_title()


def chromium() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome")
                 if shutil.which(b)), None)


@pytest.mark.skipif(chromium() is None, reason="no headless Chromium (apt-get install chromium)")
def test_the_report_as_a_browser_shows_it(tmp_path):
    """A --target run's report (the three-panel chart) screenshotted at each width, kept under
    $SGDINFLUENCE_SCREENSHOTS (default out/screenshots, ignored by git) to look at."""
    from sgdinfluence.app.cleanse import CleanseConfig, cleanse, split
    from sgdinfluence.app.data import load_data, read_like

    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 4))
    y = (X[:, 2] + X[:, 3] > 0).astype(int)
    poisoned = rng.choice(np.flatnonzero(y == 0), 12, replace=False)
    X[poisoned, :2], y[poisoned] = 5.0, 1
    T = rng.normal(size=(60, 4))
    T[:, 2:], T[:, :2] = -np.abs(T[:, 2:]) - 0.3, 5.0
    cols = ["x0", "x1", "x2", "x3"]
    pd.DataFrame(X, columns=cols).assign(label=y).to_csv(tmp_path / "train.csv", index=False)
    pd.DataFrame(T, columns=cols).assign(label=0).to_csv(tmp_path / "target.csv", index=False)
    tables = load_data(str(tmp_path / "train.csv"), "label")
    cfg = CleanseConfig(model="mlp", epochs=3, batch_size=32, lr=0.2, ks=(6, 12, 24),
                        methods=("sgd-epochs", "random"), retrain="all", reliability=0)
    target = read_like(tmp_path / "target.csv", tables["all"], role="target file")
    result = cleanse(split(tables, cfg, target=target), cfg, progress=False)
    page = report.write(result, tmp_path / "report", title="a backdoored table") / "report.html"
    kept = Path(os.environ.get("SGDINFLUENCE_SCREENSHOTS",
                               Path(__file__).parents[2] / "out" / "screenshots"))
    kept.mkdir(parents=True, exist_ok=True)
    for width in WIDTHS:
        shot = kept / f"report-target-{width}.png"
        shot.unlink(missing_ok=True)
        subprocess.run([chromium(), "--headless", "--no-sandbox", "--disable-gpu",
                        "--hide-scrollbars", f"--window-size={width},1400",
                        f"--screenshot={shot}", page.as_uri()],
                       capture_output=True, timeout=120, check=True)
        image = Image.open(shot)
        assert image.size == (width, 1400)
        assert len(image.convert("L").getcolors(2**16)) > 50  # drawn, not a blank page
