"""The outputs of a cleansing run, written atomically into one directory:

- ``scores.csv``: one row per training instance (its row in the input file or position in the
  dataset, file, label, score, rank, and every method's score);
- ``results.json``: the configuration, sizes, timings and every curve;
- ``curve.png`` and ``report.html``: the cleansing curve, a one-sentence summary, and the
  most harmful and most helpful training instances, to look at;
- the input without the removed instances, in its own format (``cleaned.csv``,
  ``cleaned.npz``, or ``cleaned.txt`` listing an image folder's kept files; none for a
  built-in dataset), where the input's :class:`~sgdinfluence.app.data.Schema` is given.
"""

from __future__ import annotations

import base64
import html
import io
import json
import math
from pathlib import Path

import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # drawn without pyplot: the user's backend is left alone
from PIL import Image

from .cleanse import Result, best_k, primary
from .data.files import Schema, cleaned_name, write_cleaned
from .methods import INFLUENCE, METHODS
from .output import output_dir

GALLERY = (24, 12)  # how many of the most harmful, and of the most helpful, to show
COLUMNS = 12  # how many of a table's columns the galleries show: those that explain most


def fresh_summary(result: Result) -> str | None:
    """What training afresh says, if it was asked for: does the gain carry over?"""
    if not result.fresh:
        return None
    f = result.fresh
    full, cleaned = (np.mean(f["test_error"][c]) for c in ("all", "cleaned"))
    what = (f"without the {f['k']:,} removed" if f["k"] else "(nothing was removed)")
    return (f"Trained afresh with {f['seeds']} new seed(s) (new initialisation and shuffles): "
            f"mean test error {full:.2%} on all the training data, {cleaned:.2%} {what}; "
            "SGD-influence estimates the effect on the recorded run, so a gain that does not "
            "carry over belongs to that run, not to the data.")


def training_warning(result: Result) -> str | None:
    """A warning when training diverged or did not learn, else None."""
    return result.training()["warning"]


def summary(result: Result) -> str:
    """The report's sentence; with a caution where the scores do not mean leave-one-out."""
    said, checked = _summary(result), result.reliability
    if checked is None or checked["verdict"] == "holds":
        return said
    return f"{said} Caution: {checked['advice']}."


def _summary(result: Result) -> str:
    what = "training images" if result.splits.train.image else "training rows"
    method = primary(result)
    if getattr(result, "repair", None) is not None:
        return _rounds_summary(result, what, method)
    k, n = best_k(result, method), len(result.splits.train.y)
    curve = result.curves[method]
    before, after = curve[0][1], curve[k][1]
    if k == 0:
        chosen = ("the mean of the validation error and the target error"
                  if result.target_curves else "the validation error")
        return (f"Removing up to {max(curve):,} of the most harmful of {n:,} {what} "
                f"({METHODS[method].label}) did not lower {chosen}; the model as "
                f"trained is the one to keep (test error {before:.2%}).")
    change = _change("test error", before, after)
    target, chosen = result.target_curves.get(method), "the validation set"
    if target is not None:
        change = f"{_change('the target error', target[0], target[k])} and {change}"
        chosen = "the validation set and the target's held-out half"
    return (f"Removing the {k:,} most harmful of {n:,} {what} ({METHODS[method].label}; k chosen "
            f"on {chosen}) and retraining {change}.")


def _rounds_summary(result: Result, what: str, method: str) -> str:
    """The summary of a repair in rounds: what all rounds removed, and what it did."""
    rep, n = result.repair, len(result.splits.train.y)
    assert rep is not None
    rounds = sum(not r.undone for r in rep.rounds)
    removed = len(rep.removed)
    label = METHODS[method].label
    if not removed:
        return (f"No removal of the most harmful of {n:,} {what} ({label}) lowered the mistakes "
                f"on the validation set and the target's held-out half significantly; the "
                f"model as trained is the one to keep (target error {rep.before.target_error:.2%}"
                f", test error {rep.before.test:.2%}).")
    retrained = ("retraining all epochs on the identical schedule" if rep.config.retrain ==
                 "all" else "training afresh")
    change = (f"{_change('the target error', rep.before.target_error, rep.after.target_error)}"
              f" and {_change('test error', rep.before.test, rep.after.test)}")
    return (f"In {rounds} round{'s' * (rounds > 1)}, removing {removed:,} of {n:,} {what} "
            f"({label}; each round's k chosen on the validation set and the target's held-out "
            f"half, refined by bisection) and {retrained} {change}. Stopped: {rep.why}.")


def _change(what: str, before: float, after: float) -> str:
    verb = "lowers" if after < before else "raises" if after > before else "leaves"
    return (f"{verb} {what} from {before:.2%} to {after:.2%}" if verb != "leaves"
            else f"leaves {what} at {before:.2%}")


def scores_frame(result: Result) -> pd.DataFrame:
    train, method = result.splits.train, primary(result)
    s = result.scores[method]
    rank = np.empty(len(s), dtype=np.int64)
    rank[result.order(method)] = np.arange(1, len(s) + 1)
    frame = pd.DataFrame({"index": train.index})
    if train.names is not None:
        frame["file"] = train.names
    frame["label"] = np.asarray(train.classes)[train.y]
    frame["score"], frame["rank"] = s, rank
    removed = np.zeros(len(s), dtype=bool)  # at the k chosen on validation; or every round's
    repaired = getattr(result, "repair", None) is not None
    removed[result.removed() if repaired else result.order(method)[:best_k(result, method)]] = 1
    frame["removed"] = removed
    if repaired:
        rounds = np.zeros(len(s), dtype=np.int64)
        for r in result.repair.rounds:
            if not r.undone:
                rounds[r.removed] = r.round
        frame["round"] = rounds  # the round that removed it; 0: kept
    if train.notes is not None:
        frame["note"] = train.notes
    for m, v in result.scores.items():
        if m != method:
            frame[f"score_{m}"] = v
    return frame


def interval(error: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """The 95% (Wilson) interval of an error rate measured on ``n`` instances: where chance in
    drawing those ``n`` could put the same model's error. Curves that stay inside the band of
    the error before removal show no effect that this many instances can tell."""
    centre = (error + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(error * (1 - error) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


CHART_WIDTH = 11.0  # inches at CHART_DPI: 1,100 px, shown unscaled in the report's 1,180 px
NARROW_WIDTH = 6.0  # the stacked chart, for screens below NARROW_SCREEN px
NARROW_SCREEN = 1000
CHART_DPI = 100
PANEL_HEIGHT = 3.6


def plot_curves(result: Result, columns: int = 2) -> bytes:
    """The error after removing each method's k first, one panel per measured set (with a
    target its held-out half first, then test and validation), ``columns`` panels a row
    (1: stacked, for narrow screens), sized to be read unscaled in the report. Each panel
    shades the 95% interval of the error as trained at that set's size (:func:`interval`):
    where another draw of that many instances could put it, whatever the axis's zoom
    suggests."""
    methods = list(result.curves)
    splits = result.splits
    panels = [("test error", len(splits.test.y),
               {m: {k: v[1] for k, v in c.items()} for m, c in result.curves.items()}),
              ("validation error", len(splits.val.y),
               {m: {k: v[0] for k, v in c.items()} for m, c in result.curves.items()})]
    if result.target_curves:
        panels.insert(0, ("target error, held-out half", len(splits.target_check.y),
                          result.target_curves))
    cols = min(columns, len(panels))
    rows = -(-len(panels) // cols)
    spare = rows * cols > len(panels)  # an empty cell holds the legend
    legend_rows = 0 if spare else -(-(len(methods) + 1) // cols)
    width = CHART_WIDTH if cols > 1 else NARROW_WIDTH
    with matplotlib.rc_context({"font.size": 12, "axes.titlesize": 13, "legend.fontsize": 12}):
        fig = Figure(figsize=(width, PANEL_HEIGHT * rows + 0.3 * legend_rows),
                     layout="constrained")
        fig.get_layout_engine().set(h_pad=0.1)
        axes = fig.subplots(rows, cols, squeeze=False).ravel()
        for ax, (title, n, curves) in zip(axes, panels, strict=False):
            _panel(ax, title, n, curves, primary(result))
        handles, labels = axes[0].get_legend_handles_labels()
        handles, labels = handles[1:] + handles[:1], labels[1:] + labels[:1]  # the band last
        if spare:
            axes[-1].axis("off")
            axes[-1].legend(handles, labels, loc="center", frameon=False)
        else:
            fig.legend(handles, labels, loc="outside upper center", ncol=cols, frameon=False)
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=CHART_DPI)
    return buf.getvalue()


def _panel(ax, title: str, n: int, curves: dict[str, dict[int, float]], lead: str) -> None:
    """One panel: each method's error against k, over the band chance leaves at size n."""
    base = next(iter(curves.values()))[0]  # k = 0: the model as trained, the same for all
    lo, hi = interval(base, n)
    ax.axhspan(lo, hi, color="#8c8c8c", alpha=0.18, lw=0, zorder=0,
               label="chance at this n: 95% interval of the error as trained")
    for method, curve in curves.items():
        ks = sorted(curve)
        ax.plot(ks, [curve[k] for k in ks], marker="o", ms=3.5, label=METHODS[method].label,
                lw=2.4 if method == lead else 1.4, ls=":" if method == "random" else "-")
    ax.set_xscale("symlog", linthresh=1)
    ax.set_xticks(ks, [f"{k:,}" for k in ks], rotation=45 if len(ks) > 8 else 0)
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel("k first removed, then retrained")
    ax.set_title(f"{title} (n = {n:,})")
    ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
    ax.grid(alpha=0.3)
    values = [v for c in curves.values() for v in c.values()]
    low, high = min(min(values), lo), max(max(values), hi)
    cut = max(1.5 * base, hi)
    if base > 0 and high > cut:  # keep the differences near the start readable
        high = cut
        ax.text(0.01, 0.98, "cut at 1.5x the starting error; see the table", fontsize=9,
                color="#555", transform=ax.transAxes, va="top")
    pad = 0.05 * (high - low or 0.01)
    ax.set_ylim(max(0.0, low - pad), high + pad)


def _png(image: np.ndarray, size: int = 84) -> str:
    """A (C, H, W) image in [0, 1] as a data URI, enlarged with square pixels."""
    a = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    a = a[0] if a.shape[0] == 1 else a.transpose(1, 2, 0)
    im = Image.fromarray(a)
    scale = max(1, size // max(im.size))
    im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def explaining_columns(result: Result) -> list[dict]:
    """The input's feature columns, those where the removed rows differ most from the kept
    ones first (without removals: the most harmful rows shown from the rest): the distance
    between the two groups' values, Kolmogorov-Smirnov for a numeric column (the largest gap
    between their distribution functions) and total variation for a categorical one (the
    share of rows that would have to change category), both in [0, 1]. Empty for images."""
    train = result.splits.train
    if train.image:
        return []
    X = np.asarray(train.X, dtype=np.float64)
    gone = np.zeros(len(X), dtype=bool)
    repaired = getattr(result, "repair", None) is not None
    method = primary(result)
    gone[result.removed() if repaired else result.order(method)[:best_k(result, method)]] = True
    if not gone.any():
        gone[result.order(method)[:GALLERY[0]]] = True
    if gone.all():
        return []
    schema = train.schema
    groups: list[tuple[str, slice, bool]] = []
    if schema is not None and schema.kind == "csv" and schema.features:
        at = 0
        for col in schema.features:
            width = len(schema.categories[col]) if col in schema.categories else 1
            groups.append((col, slice(at, at + width), col in schema.categories))
            at += width
    else:
        names = (list(map(str, train.rows.columns)) if train.rows is not None
                 and train.rows.shape[1] == X.shape[1] else
                 [f"x{j}" for j in range(X.shape[1])])
        groups = [(name, slice(j, j + 1), False) for j, name in enumerate(names)]
    found = []
    for name, cols, categorical in groups:
        a, b = X[gone, cols], X[~gone, cols]
        if categorical:
            distance = 0.5 * float(np.abs(a.mean(0) - b.mean(0)).sum())
        else:
            distance = _ks(a[:, 0], b[:, 0])
        found.append({"column": name, "distance": round(distance, 4),
                      "kind": "categories" if categorical else "numbers"})
    return sorted(found, key=lambda c: -c["distance"])


def _ks(a: np.ndarray, b: np.ndarray) -> float:
    """The two-sample Kolmogorov-Smirnov statistic: max |F_a - F_b| over the values."""
    values = np.union1d(a, b)
    fa = np.searchsorted(np.sort(a), values, side="right") / len(a)
    fb = np.searchsorted(np.sort(b), values, side="right") / len(b)
    return float(np.abs(fa - fb).max())


def _columns_note(columns: list[dict]) -> str:
    """Which columns the galleries show, and that the others were cut for width."""
    if not columns:
        return ""
    shown = ", ".join(f"{c['column']} ({c['distance']:.2f})" for c in columns[:COLUMNS])
    cut = len(columns) - COLUMNS
    return (f"Columns shown (after any identifier columns dropped from the features): the "
            f"{min(COLUMNS, len(columns))} of {len(columns)} feature columns where the "
            "removed rows differ most from the kept ones (distance: Kolmogorov-Smirnov for "
            f"numbers, total variation for categories): {shown}."
            + (f" {cut} column{'s' * (cut > 1)} cut for width (results.json lists every "
               "column's distance)." if cut > 0 else " No column cut."))


def _gallery(result: Result, frame: pd.DataFrame, positions: np.ndarray,
             columns: list[dict] | None = None) -> str:
    train = result.splits.train
    if train.image:
        cards = []
        for j in positions:
            row = frame.iloc[j]
            where = row["file"] if "file" in frame else f"#{row['index']}"
            note = (f'<div class="note">{html.escape(str(row["note"]))}</div>'
                    if "note" in frame and row["note"] else "")
            cards.append(
                f'<figure><img src="{_png(train.X[j])}" alt="training image {where}">'
                f'<figcaption><b>{html.escape(str(row["label"]))}</b> · rank {row["rank"]}'
                f'<br>score {row["score"]:.2e}<br><span class="where">{html.escape(str(where))}'
                f"</span>{note}</figcaption></figure>")
        return '<div class="gallery">' + "".join(cards) + "</div>"
    shown = frame.iloc[positions][["rank", "index", "label", "score"] +
                                  (["note"] if "note" in frame else [])].copy()
    shown["score"] = shown["score"].map("{:.2e}".format)
    if train.rows is not None:  # the original columns of those rows, those that explain first
        original = train.rows.iloc[positions].reset_index(drop=True)
        names = [c["column"] for c in columns or [] if c["column"] in original.columns]
        ids = [c for c in (train.schema.drop_columns if train.schema else ())
               if c in original.columns]  # identifiers: not used, but they find the row
        picked = original[ids + names[:COLUMNS]] if names else original.iloc[:, :COLUMNS]
        shown = pd.concat([shown.reset_index(drop=True), picked], axis=1)
    return '<div class="wide">' + shown.to_html(index=False, classes="rows", border=0) + "</div>"


def _curve_table(result: Result) -> str:
    ks = sorted({k for c in result.curves.values() for k in c})  # refined k: the primary's
    frame = pd.DataFrame({**{f"{METHODS[m].label}: test error": [f"{c[k][1]:.2%}" if k in c
                                                                  else "" for k in ks]
                             for m, c in result.curves.items()},
                          **{f"{METHODS[m].label}: target error": [f"{c[k]:.2%}" if k in c
                                                                    else "" for k in ks]
                             for m, c in result.target_curves.items()}}, index=ks)
    frame.index.name = "k"
    return '<div class="wide">' + frame.T.to_html(classes="curve", border=0) + "</div>"


def diagnosis_text(result: Result) -> str | None:
    """What methods=auto saw and chose, if it was asked for."""
    d = getattr(result, "diagnosis", None)
    if d is None:
        return None
    from .diagnose import KINDS

    return (f"Which method: this looks like {KINDS[d.kind]}, so auto ran "
            f"{METHODS[d.method].label} ({d.method}). {d.reason}")


def rounds_frame(result: Result) -> pd.DataFrame | None:
    """One row for the model as trained and one per round: rows removed (this round, in
    all), the target's held-out error, validation and test error, trainings and seconds."""
    rep = getattr(result, "repair", None)
    if rep is None:
        return None
    rows = [{"round": 0, "k": 0, "removed in all": 0, "ranked run's target error": np.nan,
             "target error": rep.before.target_error, "validation error": rep.before.val_error,
             "test error": rep.before.test, "trainings": 0, "seconds": 0.0}]
    total = 0
    for r in rep.rounds:
        total += 0 if r.undone else r.k
        rows.append({"round": r.round, "k": f"{r.k} (undone)" if r.undone else r.k,
                     "removed in all": total,
                     "ranked run's target error": r.start.target_error,
                     "target error": r.after.target_error, "validation error": r.after.val_error,
                     "test error": r.after.test, "trainings": r.trainings,
                     "seconds": r.seconds})
    return pd.DataFrame(rows)


def _rounds_table(result: Result) -> str:
    frame = rounds_frame(result)
    if frame is None:
        return ""
    rep = result.repair
    shown = frame.copy()
    for col in ("ranked run's target error", "target error", "validation error", "test error"):
        shown[col] = shown[col].map(lambda v: "" if pd.isna(v) else f"{v:.2%}")
    shown["seconds"] = shown["seconds"].map("{:.0f}".format)
    after = ("the removal retrained on the ranked run's schedule, all epochs" if
             rep.config.retrain == "all" else "a new training of the kept rows, new seed")
    return (f"<h2>Rounds</h2>\n<p class=\"meta\">Each round ranks a training of the rows kept "
            "so far (round 1: the recorded run), chooses its k on the validation set and the "
            "target's held-out half (the grid, then bisection), and removes them; a later "
            "round that does not lower the target error below the last result is undone (its "
            "rows stay, its model is not kept). Errors after "
            f"each round: {html.escape(after)}. Round 0: the model as trained. Stopped: "
            f"{html.escape(rep.why)}.</p>\n"
            + '<div class="wide">' + shown.to_html(index=False, classes="rounds", border=0)
            + "</div>")


CSS = """
body { font: 15px/1.45 system-ui, sans-serif; max-width: 1180px; margin: 2em auto; padding: 0 1em;
       color: #1d1d1f; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { font-size: 1.2em; margin-top: 1.8em; }
.summary { font-size: 1.15em; background: #f2f6fc; border-left: 4px solid #3a6fc4;
           padding: .7em 1em; }
.meta { color: #555; font-size: .9em; }
.warning { background: #fdecea; border-left: 4px solid #b3261e; padding: .7em 1em; }
table { border-collapse: collapse; font-size: .85em; }
td, th { padding: .25em .6em; border-bottom: 1px solid #e3e3e3; text-align: right;
         white-space: nowrap; }
.wide { overflow-x: auto; }
.curve th, .rounds th { white-space: normal; }  /* long headers wrap; a table still too wide
                                                   scrolls in its .wide box */
.curve tbody th { min-width: 14em; text-align: left; } .rounds th { max-width: 8em; }
.gallery { display: flex; flex-wrap: wrap; gap: 10px; }
figure { margin: 0; width: 112px; text-align: center; font-size: .75em; }
figure img { image-rendering: pixelated; width: 84px; height: 84px; border: 1px solid #ccc; }
.where { color: #777; word-break: break-all; } .note { color: #b3261e; font-weight: 600; }
img.curve { max-width: 100%; }
"""


def render(result: Result, title: str, frame: pd.DataFrame, curve_png: bytes,
           notes: list[str]) -> str:
    cfg, train, run = result.config, result.splits.train, result.run
    what = "training images" if train.image else "training rows"
    method = primary(result)
    order = result.order(method)
    sizes = {s: len(getattr(result.splits, s).y) for s in ("train", "val", "test")}
    target = result.splits.target
    queried = "validation loss" if target is None else "the target's loss"
    seconds = ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
    meta = (f"{result.model}, {cfg.epochs} epochs of SGD (batch {cfg.batch_size}, lr {cfg.lr}, "
            f"weight decay {cfg.weight_decay}, seed {cfg.seed}"
            f"{', ' + run.config.augment if run.config.augment else ''}); "
            f"{sizes['train']:,} training / {sizes['val']:,} validation / {sizes['test']:,} test"
            + ("" if target is None else f" / {len(target.y):,} + "
               f"{len(result.splits.target_check.y):,} target (queried + held out)") + ";"
            f" retraining {'the last epoch' if cfg.retrain == 'last' else 'all epochs'} on the "
            f"identical schedule"
            f"{'; rounds measured on new trainings' if cfg.retrain == 'fresh' else ''}"
            f". Time: {seconds}.")
    said = diagnosis_text(result)
    extra = "".join(f"<p>{html.escape(n)}</p>" for n in
                    ([said] if said else []) +
                    ([fresh_summary(result)] if result.fresh else []) + list(notes))
    columns = explaining_columns(result)
    scored = ("Score = estimated change of " + queried + " if the instance is left out." if
              METHODS[method].kind == INFLUENCE else "Score: the method's (lowest first).")
    training = result.training()
    if training["warning"]:
        extra = f'<p class="warning">Warning: {html.escape(training["warning"])}.</p>' + extra
    losses = ", ".join(f"{v:.3g}" for v in training["epoch_loss"])
    meta += (f" Mean training loss per epoch: {losses} (predicting the class frequencies: "
             f"{training['constant_predictor_loss']:.3g}).")
    uri = "data:image/png;base64,{}".format
    curve_uri = uri(base64.b64encode(curve_png).decode())
    stacked_uri = uri(base64.b64encode(plot_curves(result, columns=1)).decode())
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>{CSS}</style></head><body>
<h1>{html.escape(title)}</h1>
<p class="summary">{html.escape(summary(result))}</p>{extra}
<p class="meta">{html.escape(meta)}</p>
<h2>Cleansing curve</h2>
<picture><source media="(max-width: {NARROW_SCREEN}px)" srcset="{stacked_uri}">
<img class="curve" src="{curve_uri}" alt="test and validation error against k per method">
</picture>
<p class="meta">Grey band: where another draw of as many instances could put the error of
the model as trained (95%, binomial); a curve inside it moved less than that chance. The
random order's curve shows what removing k instances at random does. k is chosen by a paired
test (McNemar) on the validation set{"" if target is None else " and the target's held-out half"},
which tells smaller changes than the band.</p>
{_curve_table(result)}
{_rounds_table(result)}
<h2>The {GALLERY[0]} most harmful {what}</h2>
<p class="meta">{html.escape(METHODS[method].label)}: removing these lowers {queried} most.
{html.escape(scored)}</p>
<p class="meta">{html.escape(_columns_note(columns))}</p>
{_gallery(result, frame, order[:GALLERY[0]], columns)}
<h2>The {GALLERY[1]} most helpful {what}</h2>
<p class="meta">Removing these would raise {queried} most.</p>
{_gallery(result, frame, order[::-1][:GALLERY[1]], columns)}
</body></html>
"""


def write(result: Result, out: str | Path, title: str = "sgdinfluence cleansing report",
          notes: list[str] = (), overwrite: bool | str = False, extra: dict | None = None,
          inputs=(), source: Schema | None = None, command: str = "cleanse") -> Path:
    """Write scores.csv, results.json, curve.png and report.html into ``out`` atomically
    (``overwrite`` and ``inputs`` as for :func:`sgdinfluence.app.output.check_output`), and
    with ``source``, the schema of the data read, the input without the rows scores.csv
    marks ``removed`` (:func:`~sgdinfluence.app.data.write_cleaned`). The output's marker
    records ``command`` as the writer."""
    frame = scores_frame(result)
    curve_png = plot_curves(result)
    with output_dir(out, overwrite, inputs, command) as tmp:
        frame.sort_values("rank").to_csv(tmp / "scores.csv", index=False)
        write_cleaned(source, frame.loc[frame["removed"], "index"].to_numpy(), tmp)
        info = {**result.to_json(), "summary": summary(result), "notes": list(notes),
                "which_method": diagnosis_text(result), "columns": explaining_columns(result),
                "cleaned": cleaned_name(source), **(extra or {})}
        (tmp / "results.json").write_text(json.dumps(info, indent=2, default=float))
        (tmp / "curve.png").write_bytes(curve_png)
        (tmp / "report.html").write_text(render(result, title, frame, curve_png, list(notes)))
    return Path(out)
