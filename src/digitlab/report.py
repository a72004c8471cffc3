"""A run's pictures and its report: the plots in ``<run>/plots/`` and one self-contained
``report.html`` (images embedded as data URLs, styles inline: it opens offline, anywhere).

The report only assembles what the run directory holds (config.json, metrics.json,
history.csv, plots/); :func:`write_plots` draws the plots from numbers computed by
digitlab.evaluate.
"""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from . import __version__
from ._io import write_atomic
from .evaluate import Metrics, most_confident_errors
from .plots import ERRORS_SHOWN, PLOT_FILES, save_run_plots
from .runs import read_history, read_json

__all__ = ["REPORT_FILE", "write_plots", "write_report"]

REPORT_FILE = "report.html"

_CSS = """
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #1d232b;
       background: #f4f6f9; margin: 0; }
main { max-width: 1120px; margin: 0 auto; padding: 24px 28px 48px; }
h1 { font-size: 26px; margin: 8px 0 2px; } h2 { font-size: 19px; margin: 0 0 12px; }
.sub { color: #5a6675; margin-bottom: 20px; }
section { background: #fff; border-radius: 10px; padding: 18px 22px; margin: 18px 0;
          box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px; }
.card { background: #fff; border-radius: 10px; padding: 12px 16px;
        box-shadow: 0 1px 3px rgba(0,0,0,.08); }
.card b { display: block; font-size: 24px; } .card span { color: #5a6675; font-size: 13px; }
img { max-width: 100%; height: auto; display: block; margin: 8px auto; }
table { border-collapse: collapse; font-variant-numeric: tabular-nums; }
th, td { padding: 4px 12px; text-align: right; border-bottom: 1px solid #e3e7ec; }
th:first-child, td:first-child { text-align: left; }
td.low { color: #c62828; font-weight: 600; }
.two { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1.4fr); gap: 20px;
       align-items: start; }
.scroll { overflow-x: auto; max-width: 100%; }
@media (max-width: 800px) { .two { grid-template-columns: 1fr; } main { padding: 12px; }
  section { padding: 14px 12px; } th, td { padding: 3px 6px; font-size: 13px; } }
code { background: #eef1f5; padding: 1px 5px; border-radius: 4px; }
footer { color: #5a6675; font-size: 13px; text-align: center; }
"""


_VAL_LABELS = {"test": "validation (test set)", "holdout": "validation (held out)"}


def write_plots(run_dir: str | Path, history, metrics: Metrics, images: np.ndarray,
                labels: np.ndarray, proba: np.ndarray, validation: str = "holdout"
                ) -> list[Path]:
    """Draw the run's plots into ``run_dir/plots`` from its test images, labels and the
    model's probabilities on them; ``validation`` is the recipe's rule, named in the curves
    (the seed tutorials validate on the test set, and the legend says so)."""
    errors = most_confident_errors(labels, proba, ERRORS_SHOWN)
    return save_run_plots(Path(run_dir) / "plots", history, metrics, images, labels, proba,
                          errors, _VAL_LABELS.get(validation, "validation"))


def _img(path: Path, alt: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img src="data:image/png;base64,{data}" alt="{html.escape(alt)}">'


def _table(header: list[str], rows: list[list[str]], raw: bool = False) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(c if raw else f"<td>{html.escape(c)}</td>" for c in row)
                   + "</tr>" for row in rows)
    return (f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody>'
            "</table></div>")


def _pairs(d: dict) -> list[list[str]]:
    return [[str(k), " ".join(map(str, v)) if isinstance(v, list) else str(v)]
            for k, v in d.items()]


def _class_table(test: dict) -> str:
    worst = int(np.argmin(test["f1"]))
    rows = []
    for c in range(len(test["f1"])):
        cls = ' class="low"' if c == worst else ""
        rows.append([f"<td>{c}</td>"] + [f"<td{cls}>{test[k][c]:.4f}</td>"
                                          for k in ("precision", "recall", "f1")]
                    + [f"<td>{test['support'][c]}</td>"])
    return _table(["digit", "precision", "recall", "F1", "support"], rows, raw=True)


def write_report(run_dir: str | Path) -> Path:
    """Assemble ``run_dir/report.html`` from the run's files; the plots must exist."""
    run = Path(run_dir)
    config, metrics = read_json(run / "config.json"), read_json(run / "metrics.json")
    history = read_history(run)
    plots = run / "plots"
    missing = [name for name in PLOT_FILES if not (plots / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{run} lacks plots/{', plots/'.join(missing)}")
    test, train = metrics["test"], config["train"]
    cards = [
        (f"{metrics['test_accuracy']:.2%}",
         f"test accuracy ({test['n']:,} {metrics['dataset']} digits)"),
        (f"{test['loss']:.4f}" if test.get("loss") is not None else "-", "test loss"),
        (f"{metrics['epochs_completed']}", "epochs" + (" (stopped early)"
                                                       if metrics["interrupted"] else "")),
        (f"{metrics['train_seconds']:.1f} s", "training time"),
        (f"{metrics['seconds_per_epoch']:.2f} s", "per epoch"),
        (f"{config['parameters']:,}", "parameters"),
    ]
    epochs = _table(["epoch", "loss", "accuracy", "val loss", "val accuracy", "seconds"], [
        [str(h.epoch), f"{h.loss:.4f}", f"{h.accuracy:.4f}",
         "-" if h.val_loss is None else f"{h.val_loss:.4f}",
         "-" if h.val_accuracy is None else f"{h.val_accuracy:.4f}", f"{h.seconds:.2f}"]
        for h in history])
    title = f"{train['preset']} on {metrics['dataset']}"
    command = " ".join(config.get("command") or [])
    body = f"""
<main>
<h1>{html.escape(title)}</h1>
<div class="sub">run <code>{html.escape(run.name)}</code> · started
{html.escape(config.get('started', '?'))} · seed {train['seed']} ·
{html.escape(train['device'])}</div>
<div class="cards">{''.join(f'<div class="card"><b>{v}</b><span>{html.escape(k)}</span></div>'
                            for v, k in cards)}</div>
<section><h2>Learning curves</h2>{_img(plots / 'curves.png', 'accuracy and loss per epoch')}
</section>
<section><h2>Test-set metrics</h2><div class="two"><div>{_class_table(test)}
<p>The weakest digit by F1 is in red.</p></div>
<div>{_img(plots / 'confusion.png', 'confusion matrix')}</div></div>
{_img(plots / 'per_class.png', 'per-class precision and recall')}</section>
<section><h2>Mistakes</h2>{_img(plots / 'errors.png', 'most confident mistakes')}
{_img(plots / 'predictions.png', 'predictions on the first test digits')}</section>
<section><h2>Timing</h2><p>{metrics['train_seconds']:.1f} s of training for
{metrics['epochs_completed']} epochs.</p>{epochs}</section>
<section><h2>Configuration</h2><div class="two">
<div><h3>training</h3>{_table(['setting', 'value'], _pairs(train))}</div>
<div><h3>network</h3>{_table(['setting', 'value'], _pairs(config['model']))}
<h3>data</h3>{_table(['setting', 'value'], _pairs(config['data']))}
<h3>versions</h3>{_table(['library', 'version'], _pairs(config['versions']))}</div></div>
{f'<p>command: <code>digitlab {html.escape(command)}</code></p>' if command else ''}
</section>
<footer>made by digitlab {__version__} on
{datetime.now(timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}</footer>
</main>"""
    page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)} · digitlab report</title><style>{_CSS}</style>"
            f"</head><body>{body}</body></html>\n")
    path = run / REPORT_FILE
    write_atomic(path, page.encode("utf-8"))
    return path
