"""The Ray engine: a local Ray, the same answers as the local engine, an ensemble in parallel
tasks. Skipped where the [scale] extra is not installed."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from digits import on_paper, png

ray = pytest.importorskip("ray")
pq = pytest.importorskip("pyarrow.parquet")

from digitlab.batch import Output, run_local  # noqa: E402
from digitlab.config import TrainConfig  # noqa: E402
from digitlab.data import load_dataset  # noqa: E402
from digitlab.ensemble import ENSEMBLE_FILE, train_ensemble  # noqa: E402
from digitlab.scale import FolderOutput, run_ray  # noqa: E402

BIN = Path(sys.executable).parent / "digitlab"


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    root = tmp_path_factory.mktemp("images")
    for i in range(300):
        (root / f"{i:03d}.png").write_bytes(png(on_paper([i % 10], k=i % 6, height=50)))
    (root / "broken.png").write_bytes(b"junk")
    return sorted(str(p) for p in root.iterdir()) + [str(root / "missing.png")]


def test_ray_answers_equal_the_local_engine(local_ray, images, tmp_path):
    settings = (None, "numpy", 0.7)
    local = Output(tmp_path / "local.jsonl")
    run_local(images, settings, local, workers=2)
    local.close()
    mine = {r["file"]: r for r in map(json.loads, (tmp_path / "local.jsonl").open())}
    counts = run_ray(images, settings, FolderOutput(tmp_path / "ray.parquet"))
    spread = counts.pop("spread")
    assert counts == {"answered": 300, "rejected": 2, "skipped": 0}
    assert spread.startswith("Tasks per node:") and spread.endswith("1 nodes used"), spread
    theirs = {r["file"]: r for r in pq.read_table(tmp_path / "ray.parquet").to_pylist()}
    assert set(theirs) == set(mine) == set(images)
    for f, row in theirs.items():
        assert row["digit"] == mine[f]["digit"] and row["error"] == mine[f]["error"]
        if row["digit"] is not None:
            assert max(abs(row[f"p{d}"] - mine[f][f"p{d}"]) for d in range(10)) < 1e-5
    assert theirs[images[-1]]["error"] == "no such file"
    resumed = run_ray(images, settings, FolderOutput(tmp_path / "ray.parquet", resume=True))
    assert resumed["skipped"] == len(images)


def test_ensemble_members_as_ray_tasks(local_ray, tmp_path):
    config = TrainConfig.from_preset("seed-20x20", epochs=3, seed=5)
    record = train_ensemble(config, load_dataset("digits20"), tmp_path / "ens", 2,
                            engine="ray")
    assert [m["seed"] for m in record["members"]] == [5, 6]
    assert all(Path(m["run"], "model.pt").is_file() for m in record["members"])
    assert json.loads((tmp_path / "ens" / ENSEMBLE_FILE).read_text())["engine"] == "ray"
    assert record["test_accuracy"] > 0.7


def test_cli_ray_engine(images, tmp_path):
    done = subprocess.run([str(BIN), "predict", *images[:40], "--out",
                           str(tmp_path / "out.csv"), "--engine", "ray"],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "40 answered" in done.stdout
    assert "Ray: reading tasks per node:" in done.stderr
    assert list((tmp_path / "out.csv").glob("*.csv")), "Ray wrote a folder of CSV parts"
