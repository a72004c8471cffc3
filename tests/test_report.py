"""report.html: assembled from the run's files, self-contained, rendered in real Chromium."""

import os
import re
from pathlib import Path

import pytest

from digitlab.config import TrainConfig
from digitlab.data import load_dataset
from digitlab.report import write_plots, write_report
from digitlab.runs import read_history, train_and_evaluate


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    data = load_dataset("digits20")
    config = TrainConfig.from_preset("seed-20x20", epochs=3, seed=2, threads=1)
    run = tmp_path_factory.mktemp("runs") / "tiny"
    result = train_and_evaluate(config, data, run)
    write_plots(run, read_history(run), result.metrics, data.x_test, data.y_test,
                result.test_proba, config.validation)
    return write_report(run), result


def test_report_is_one_self_contained_file(report):
    path, result = report
    page = path.read_text()
    assert not re.search(r"""(src|href)=["']?(https?:|//)""", page), "nothing from the network"
    assert "<script" not in page and "<link" not in page
    images = re.findall(r'<img src="data:image/png;base64,', page)
    assert len(images) == 5
    assert f"{result.metrics.accuracy:.2%}" in page
    assert page.count("<tr><td>") >= 3 + 10  # epochs in the timing table, classes in metrics
    assert "seed-20x20 on digits20" in page


def test_report_needs_the_plots(report, tmp_path):
    path, _ = report
    run = tmp_path / "copy"
    run.mkdir()
    for name in ("config.json", "metrics.json", "history.csv"):
        (run / name).write_bytes((path.parent / name).read_bytes())
    with pytest.raises(FileNotFoundError, match="plots/curves.png"):
        write_report(run)


@pytest.mark.parametrize("width, height", [(1280, 800), (390, 844)])
def test_report_renders_offline_in_chromium(report, browser, tmp_path, width, height):
    path, _ = report
    page = browser.new_page(viewport={"width": width, "height": height})
    requests = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(path.as_uri())
    loaded = page.eval_on_selector_all("img", "els => els.map(e => e.complete && e.naturalWidth)")
    assert len(loaded) == 5 and all(w > 300 for w in loaded)
    assert all(u.startswith(("file:", "data:")) for u in requests)
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, "no sideways scrolling, phone included"
    out = Path(os.environ.get("DIGITLAB_SCREENSHOTS", tmp_path)) / f"report-{width}.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(out), full_page=True)
    assert out.stat().st_size > 50_000
    page.close()
