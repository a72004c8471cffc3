"""The CLI's commands: each checks its input, builds a config, calls one library function and
prints the result. Environment variables are read here and nowhere else (DIGITLAB_DATA,
XDG_CACHE_HOME, HOME), and passed on as plain arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import signal
import socket
import sys
import threading
from dataclasses import replace
from pathlib import Path

from ._cli_output import (
    DownloadBar,
    EpochBar,
    format_dataset_list,
    format_metrics,
    format_prediction,
    format_runs,
)
from ._threads import one_thread_children
from .config import MODEL_FILE, TrainConfig
from .data import DATASETS, to_float


class CLIError(Exception):
    """A rejected input or failed step: printed as one line, exit status 1."""


class UsageError(CLIError):
    """Arguments that do not make a valid command: exit status 2, as argparse's own."""


# GNU libgomp's settings for a training process's OpenMP threads (PyTorch's, on Linux), unless
# the environment sets them; libgomp reads them once, as PyTorch loads it.
# - GOMP_SPINCOUNT: how long a thread spins waiting for the next parallel region before it
#   sleeps. libgomp's 300,000 keeps both threads of a 2-core machine busy between the many
#   small products of a training step, and when another process wants the cores, the spinning
#   thread takes the time slice the working one needs: seed-wide's steps, one other busy
#   process on this 2-core machine, 3.7-4.5 s an epoch -> 1.1 s (alone 1.13 -> 1.06 s).
# - OMP_PROC_BIND: each thread stays on its own core. Unbound, two trainings at once on the
#   2 cores (or a training and any other 2-thread OpenMP process) fell into a state where a
#   process's two threads share a core and every parallel region waits for a time slice:
#   fastnet steps of 2 s instead of 25-40 ms, in 8 of 8 tries with the spin count above and 2
#   of 6 with libgomp's own; bound, 0 of 7. The main thread stays bound to the first core
#   (threads it starts later inherit it): freed after the import, seed-wide's steps beside a
#   busy process took 2.2-2.7 s an epoch against 1.0-1.2.
_OPENMP_TRAINING = {"GOMP_SPINCOUNT": "10000", "OMP_PROC_BIND": "true"}


def _import_torch(training: bool = False) -> None:
    """Import PyTorch with the cyclic garbage collector paused, then freeze what exists: the
    ~100k objects the import makes all live on, so collecting during the import finds nothing
    to free, and a frozen object is never walked by a later collection (reference counting
    still frees it). Commands call this before their first import of a module that needs
    PyTorch. A process that trains on several threads (``training``) imports it with
    :data:`_OPENMP_TRAINING`; they are taken out of the environment again afterwards, so child
    processes (a Ray worker, npm) start with the environment the user gave."""
    if "torch" in sys.modules or not gc.isenabled():
        return
    added = {k: v for k, v in _OPENMP_TRAINING.items() if k not in os.environ} if (
        training and sys.platform.startswith("linux")) else {}
    os.environ.update(added)
    gc.disable()
    try:
        import torch  # noqa: F401
    finally:
        gc.freeze()
        gc.enable()
        for key in added:
            del os.environ[key]


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
    _import_torch()
    from .checkpoint import bundled_path, load_model
    from .runlist import model_file
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
        raise UsageError(f"unknown dataset {args.target!r}; choose from {', '.join(DATASETS)}")
    from .data import load_mnist
    _, got = load_mnist(_cache_dir(), **_fetch_options(args))
    for attempt in got.skipped:
        print(f"  skipped {attempt.source}: {attempt.reason}", file=sys.stderr)
    print(f"mnist ready: verified, from {got.source}"
          + (f"; cached at {got.cached_at}" if got.cached_at else ""))
    return 0


def _count(n: int, noun: str) -> str:
    """"1 epoch", "3 epochs"."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def cmd_train(args) -> int:
    if args.resume:
        return _resume(args)
    if args.model is None and args.recipe is None:
        raise UsageError("train needs --model PRESET, --recipe NAME or --resume RUN")
    try:
        config = TrainConfig.from_preset(
            args.model, args.dataset, args.recipe, epochs=args.epochs, batch_size=args.batch_size,
            lr=args.lr, seed=args.seed, threads=args.threads, holdout=args.holdout)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    # Refusals first, so nothing is fetched for a command that cannot run: the device check
    # needs PyTorch, and only an explicit GPU can be missing.
    if args.out and (Path(args.out) / MODEL_FILE).exists():
        raise CLIError(f"{args.out} already holds a run; choose another --out")
    if args.engine != "local" and args.ensemble <= 1:
        raise UsageError("--engine goes with --ensemble K (members trained in parallel)")
    # OpenMP's training settings for a process that trains here on more than one thread
    training = args.engine == "local" and args.threads != 1
    gpu = None
    if args.device in ("cuda", "mps"):
        _import_torch(training)
        gpu = _device(args.device)
    # Reading and checking the data (file reads and checksums, which release the GIL) goes on
    # while PyTorch imports (about 1 s): MNIST's 0.2-0.25 s is hidden.
    loaded = _in_background(_load, config.dataset, args)
    _import_torch(training)
    config = replace(config, device=gpu or _device(args.device))
    from .runs import new_run_dir, train_and_evaluate
    data = loaded()
    if args.ensemble > 1:
        return _train_ensemble(args, config, data)
    run_dir = Path(args.out) if args.out else new_run_dir("runs", config)
    n_val = config.held_out(len(data.y_train))
    digits = f"{len(data.y_train) - n_val} training digits" + (
        f", {n_val} held out to validate on" if n_val else "")
    epochs = _count(config.epochs, "epoch")
    print(f"training {config.preset} on {data.name} ({digits}, {epochs}, "
          f"batch {config.batch_size}, seed {config.seed}, {config.device}) -> {run_dir}")
    with _stops_cleanly(EpochBar(config.epochs)) as bar:
        result = train_and_evaluate(config, data, run_dir, bar, command=sys.argv[1:])
    return _trained(result, data, run_dir, config, args)


def _resume(args) -> int:
    given = _given(args, model=None, recipe=None, dataset=None, epochs=None, batch_size=None,
                   lr=None, seed=None, holdout=None, out=None, device="auto", threads=None,
                   ensemble=1, engine="local", address=None)
    if given:
        raise UsageError("--resume continues a run with its own settings: drop "
                         + ", ".join(given))
    from .runlist import resume_config
    config, _ = resume_config(args.resume)
    _import_torch(training=config.threads != 1)
    from .runs import resume_run
    data = _load(config.dataset, args)
    print(f"resuming {args.resume}: {config.preset} on {data.name}, "
          f"{_count(config.epochs, 'epoch')}")
    with _stops_cleanly(EpochBar(config.epochs)) as bar:
        result = resume_run(args.resume, data, bar)
    return _trained(result, data, Path(args.resume), config, args)


def _device(name: str) -> str:
    _import_torch()
    from .train import resolve_device
    try:
        return resolve_device(name)
    except ValueError as exc:
        raise CLIError(str(exc)) from None


def _in_background(fn, *args):
    """Start ``fn(*args)`` in a daemon thread; return a function that waits for it and gives
    its value, or raises what it raised. A thread left running when the command fails ends
    with the process."""
    outcome: dict = {}

    def run() -> None:
        try:
            outcome["value"] = fn(*args)
        except BaseException as exc:  # noqa: BLE001 - handed to the waiting thread
            outcome["error"] = exc

    thread = threading.Thread(target=run, daemon=True, name="digitlab-load")
    thread.start()

    def wait():
        thread.join()
        if "error" in outcome:
            raise outcome.pop("error")
        return outcome["value"]
    return wait


def _train_ensemble(args, config, data) -> int:
    from .ensemble import train_ensemble
    from .runs import new_run_dir
    if args.engine == "ray":
        _need_ray()
    run_dir = Path(args.out) if args.out else new_run_dir("runs", config)
    print(f"training an ensemble of {args.ensemble} {config.preset} on {data.name} "
          f"(seeds {config.seed}-{config.seed + args.ensemble - 1}, {args.engine} engine) "
          f"-> {run_dir}")
    with _stops_cleanly(EpochBar(config.epochs)) as bar:
        record = train_ensemble(config, data, run_dir, args.ensemble, args.engine,
                                args.address, bar)
    for m in record["members"]:
        print(f"member {m['member']} (seed {m['seed']}): test accuracy "
              f"{m['test_accuracy']:.2%} in {m['train_seconds']:.0f} s")
    print(f"ensemble of {args.ensemble}: test accuracy {record['test_accuracy']:.2%} on "
          f"{len(data.y_test)} {data.name} test digits; recorded in {run_dir}/ensemble.json")
    return 0


@contextlib.contextmanager
def _stops_cleanly(bar):
    """SIGTERM (a `kill`, a scheduler's stop) ends training like Ctrl-C: the finished epochs
    are saved; the bar is closed however training ends."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield bar
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()


def _trained(result, data, run_dir: Path, config, args) -> int:
    if result.metrics is None:
        print(f"stopped before the first epoch finished; {run_dir} holds only its config")
        return 130
    print(f"test accuracy {result.metrics.accuracy:.2%} on {len(data.y_test)} {data.name} "
          f"test digits; trained {_count(len(result.history), 'epoch')} in "
          f"{result.train_seconds:.1f} s")
    if not args.no_plots:
        from .report import write_plots
        write_plots(run_dir, result.history, result.metrics, data.x_test, data.y_test,
                    result.test_proba, config.validation)
    if result.stopped:
        print(f"digitlab: {result.stopped}", file=sys.stderr)
        return 1
    if result.interrupted:
        print(f"stopped after {_count(len(result.history), 'finished epoch')}; kept in {run_dir} "
              f"(continue with: digitlab train --resume {run_dir})")
        return 130
    print(f"run saved in {run_dir}  (next: digitlab report {run_dir})")
    return 0


def cmd_read(args) -> int:
    from ._cli_images import expand_sources, read_files
    return read_files(_recognizer(args, quick_start=True), expand_sources(args.inputs),
                      as_json=args.json)


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from .serve import ServiceConfig, create_app
    except ImportError:
        raise CLIError(_needs_extra("the service", "serve")) from None
    if args.onnx:
        _need(("onnxruntime",), "--onnx", "export")
    from ._processes import check_free
    try:  # before the model loads, and before "serving on" is said
        check_free(args.host, args.port)
    except OSError as exc:
        raise CLIError(f"cannot listen on {args.host}:{args.port}: {exc.strerror or exc}"
                       ) from None
    service = ServiceConfig(max_upload_bytes=args.max_upload_mb * 2**20,
                            cors_origins=tuple(args.cors or ()), api_key=args.api_key,
                            body_timeout=args.body_timeout)
    if args.workers > 1:
        settings = {
            "model": args.model, "min_confidence": args.min_confidence, "onnx": args.onnx,
            "max_upload_bytes": service.max_upload_bytes, "cors": list(service.cors_origins),
            "api_key": service.api_key, "body_timeout": service.body_timeout}
        def started() -> None:
            print(f"serving on http://{args.host}:{args.port}/ with {args.workers} processes "
                  "(API docs at /docs)", file=sys.stderr)
        with one_thread_children():  # N processes: one math thread in each
            if hasattr(socket, "SO_REUSEPORT"):
                from ._processes import run_processes
                try:
                    run_processes(_app_from_settings, settings, args.host, args.port,
                                  args.workers, started)
                except RuntimeError as exc:
                    raise CLIError(str(exc)) from None
            else:  # no SO_REUSEPORT (Windows): uvicorn's workers, sharing one socket
                started()
                os.environ["DIGITLAB_SERVE"] = json.dumps(settings)
                uvicorn.run("digitlab._cli_commands:_app_from_environment", factory=True,
                            host=args.host, port=args.port, workers=args.workers,
                            log_level="warning")
        return 0
    import torch
    # A process works on one image at a time (serve.ServiceConfig.compute_threads), on one
    # core; --workers adds processes (the parent then only watches them, without PyTorch)
    torch.set_num_threads(1)
    app = create_app(_recognizer(args, onnx=args.onnx), service)
    print(f"serving on http://{args.host}:{args.port}/ (API docs at /docs)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def _app_from_settings(settings: dict):
    """The app for one server process of several, from the settings the parent passed."""
    from .serve import ServiceConfig, create_app
    args = argparse.Namespace(model=settings["model"], min_confidence=settings["min_confidence"])
    service = ServiceConfig(settings["max_upload_bytes"], tuple(settings["cors"]),
                            settings["api_key"], settings["body_timeout"])
    return create_app(_recognizer(args, onnx=settings["onnx"]), service)


def _app_from_environment():
    """uvicorn's factory for its worker processes: the settings the parent left in
    DIGITLAB_SERVE, read here, at the edge, never inside the library."""
    return _app_from_settings(json.loads(os.environ["DIGITLAB_SERVE"]))


def cmd_export(args) -> int:
    _need(("onnx", "onnxruntime"), "export", "export")
    _import_torch()
    from .export import export_onnx
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
    _import_torch()
    from .ensemble import ENSEMBLE_FILE, member_runs
    run = Path(args.run)
    if not (run / ENSEMBLE_FILE).is_file():
        _report_run(run, args)
        return 0
    try:
        members = member_runs(run)
    except ValueError as exc:
        raise CLIError(str(exc)) from None
    for member in members:  # each member's own report; the record gives the ensemble's figure
        _report_run(Path(member), args)
    from .runs import read_json
    accuracy = read_json(run / ENSEMBLE_FILE).get("test_accuracy")
    if isinstance(accuracy, float):
        print(f"the ensemble of {_count(len(members), 'member')}: {accuracy:.2%} test accuracy "
              f"(digitlab evaluate {run} gives its figures)")
    return 0


def _report_run(run: Path, args) -> None:
    from .evaluate import evaluate
    from .report import write_plots, write_report
    from .runs import read_history, read_json
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


def cmd_runs(args) -> int:
    from .runlist import list_runs
    root = Path(args.dir)
    if not root.is_dir():
        raise CLIError(f"no such folder: {root}")
    key = {"date": lambda r: r.started,
           "accuracy": lambda r: -1 if r.test_accuracy is None else r.test_accuracy,
           "time": lambda r: float("inf") if r.train_seconds is None else r.train_seconds}
    def skipped(run: Path, reason: str) -> None:
        print(f"digitlab: skipped {run}: {reason}", file=sys.stderr)
    rows = sorted(list_runs(root, skipped), key=key[args.sort],
                  reverse=args.sort == "accuracy")
    print(json.dumps([vars(r) for r in rows], indent=2) if args.json else format_runs(rows, root))
    return 0


def cmd_evaluate(args) -> int:
    _import_torch()
    from .ensemble import ENSEMBLE_FILE, average, member_runs
    from .evaluate import TTA_VIEWS, evaluate
    runs = []
    for run in args.runs:  # an ensemble's directory stands for its members
        runs += member_runs(run) if (Path(run) / ENSEMBLE_FILE).is_file() else [run]
    models = [_load_model(run) for run in runs]
    shapes = {tuple(m.config.input_shape) for m in models}
    if len(shapes) > 1:
        raise CLIError("an ensemble's models must read one image size; these read "
                       + " and ".join(f"{h}x{w}" for h, w in sorted(shapes)))
    dataset = args.dataset or models[0].meta.get("dataset", "mnist")
    for loaded in models:
        _check_shape(loaded, dataset)
    data = _load(dataset, args)
    results = [evaluate(m.model, data.x_test, data.y_test, tta=args.tta) for m in models]
    metrics = results[0][0] if len(models) == 1 else average(
        [proba for _, proba in results], data.y_test)[0]
    names = [str(m.path) for m in models]
    if args.json:
        print(json.dumps({"model": names[0] if len(names) == 1 else names,
                          "dataset": data.name, "split": "test", "tta": args.tta,
                          "members_accuracy": [m.accuracy for m, _ in results],
                          **metrics.to_dict()}, indent=2))
    else:
        for name, (m, _) in zip(names, results, strict=True):
            print(f"model {name}: test accuracy {m.accuracy:.2%}")
        if len(models) > 1:
            print(f"ensemble of {len(models)} (softmax averaged):")
        print(format_metrics(metrics, f"{data.name} test set"
                             + (f", {len(TTA_VIEWS)} views averaged" if args.tta else "")))
    return 0


def _recognizer(args, onnx: bool = False, quick_start: bool = False):
    """The recognizer for --model (or the bundled model). ``quick_start``: for one-off
    commands, run the model in NumPy where it has a NumPy copy, and never import PyTorch (a
    second saved)."""
    from ._bundled import bundled_path
    from .recognize import Recognizer
    if quick_start and not onnx and (args.model is not None or bundled_path(".npz").is_file()):
        try:  # the bundled model's .npz, or the NumPy copy a run keeps of its model
            return Recognizer.load(args.model, engine="numpy", min_confidence=args.min_confidence)
        except ValueError:
            pass  # none: PyTorch, which also explains what is wrong with the file if anything
    loaded = _load_model(args.model)
    backend = None
    if onnx:
        from .export import OnnxBackend
        backend = OnnxBackend.for_model(loaded)
    return Recognizer(loaded, min_confidence=args.min_confidence, backend=backend)


def _need(modules: tuple[str, ...], what: str, extra: str) -> None:
    """Refuse, before any work or output, when an optional extra is not installed."""
    import importlib.util
    if any(importlib.util.find_spec(m) is None for m in modules):
        raise CLIError(_needs_extra(what, extra))


def _needs_extra(what: str, extra: str) -> str:
    return (f"{what} needs its extra: pip install 'digitlab[{extra}]' (in a clone of the "
            f"repository: pip install -e '.[{extra}]')")


def _need_ray() -> None:
    _need(("ray",), "the ray engine", "scale")


def _predict_batch(args) -> int:
    """predict SOURCE... --out FILE: every file read, answers streamed to FILE."""
    from ._bundled import bundled_path
    from ._cli_images import expand_sources
    from ._cli_output import batch_bar
    from .batch import Output, output_kind
    if args.model is None and not bundled_path().is_file():
        raise CLIError("this install has no bundled model; pass --model RUN")
    files = expand_sources(args.inputs)
    if output_kind(Path(args.out)) == "parquet":
        _need(("pyarrow",), "Parquet output", "parquet")
    if args.engine == "ray":
        _need_ray()
        from .scale import FolderOutput
        output = FolderOutput(args.out, resume=args.resume)
    else:
        output = Output(args.out, resume=args.resume)
    engine = "numpy" if args.model is None and bundled_path(".npz").is_file() else "torch"
    settings = (args.model, engine, args.min_confidence)
    todo = sum(f not in output.done for f in files)
    print(f"reading {_count(todo, 'file')} ({len(files) - todo} already in {args.out}) on the "
          f"{args.engine} engine", file=sys.stderr)
    try:
        with batch_bar(todo) as bar:
            if args.engine == "ray":
                from .scale import run_ray
                counts = run_ray(files, settings, output, args.address, args.workers,
                                 progress=bar.update)
            else:
                from .batch import run_local
                counts = run_local(files, settings, output, args.workers,
                                   progress=bar.update)
    finally:
        output.close()
    if counts.get("spread"):
        print(f"Ray: reading tasks per node: {counts['spread'].removeprefix('Tasks per node: ')}",
              file=sys.stderr)
    print(f"{counts['answered']} answered, {counts['rejected']} rejected (reasons in the "
          f"error column), {counts['skipped']} skipped as done -> {args.out}")
    return 1 if counts["rejected"] else 0


def _given(args, **defaults) -> list[str]:
    """The options of ``defaults`` (name: the value it has when not given) that were given."""
    return ["--" + name.replace("_", "-") for name, default in defaults.items()
            if getattr(args, name) != default]


def cmd_predict(args) -> int:
    if args.sample is None and not args.inputs:
        raise UsageError("predict needs images (files, folders, globs) or --sample N")
    batch_only = _given(args, resume=False, engine="local", address=None, workers=None)
    if batch_only and not args.out:
        raise UsageError(f"{', '.join(batch_only)} {'goes' if len(batch_only) == 1 else 'go'} "
                         "with --out FILE (batch mode)")
    shown_only = _given(args, json=False, save_input=None, plot=None)
    if shown_only and args.out:
        raise UsageError(f"{', '.join(shown_only)}: with --out the answers go to the file, "
                         "not here")
    if args.sample is not None and args.inputs:
        raise UsageError("give images or --sample N, not both")
    sample_only = _given(args, split=None, dataset=None)
    if sample_only and args.sample is None:
        raise UsageError(f"{', '.join(sample_only)} {'goes' if len(sample_only) == 1 else 'go'}"
                         " with --sample N (images are read as they are)")
    if args.top is not None and (args.json or args.out):
        raise UsageError(f"--top is for the answers printed here, not with "
                         f"{'--json' if args.json else '--out'} (all 10 probabilities)")
    top, split = args.top or 3, args.split or "train"
    if args.sample is not None and args.out:
        raise UsageError("--out writes the answers for images (batch mode), not for --sample")
    if args.save_input and Path(args.save_input).exists() and not Path(args.save_input).is_dir():
        raise CLIError(f"--save-input {args.save_input} is a file; it needs a folder")
    if args.plot and not Path(args.plot).parent.is_dir():
        raise CLIError(f"--plot {args.plot}: no folder {Path(args.plot).parent} to write it in")
    if args.plot and not Path(args.plot).suffix:
        args.plot += ".png"  # as matplotlib would write it: say so
    if args.plot:
        from matplotlib.backend_bases import FigureCanvasBase  # --plot draws with it anyway
        kinds = set(FigureCanvasBase.get_supported_filetypes()) - {"pgf"}  # pgf: LaTeX
        if Path(args.plot).suffix.lower().lstrip(".") not in kinds:
            raise UsageError(f"--plot {args.plot}: a picture file is needed "
                             f"({', '.join('.' + k for k in sorted(kinds))})")
    if args.inputs and args.out:
        return _predict_batch(args)
    if args.inputs:
        from ._cli_images import expand_sources, predict_files
        return predict_files(_recognizer(args, quick_start=True), expand_sources(args.inputs),
                             as_json=args.json, top=top, save_input=args.save_input,
                             plot=args.plot)
    from .models import predict_proba
    loaded = _load_model(args.model)
    dataset = args.dataset or loaded.meta.get("dataset", "digits20")
    _check_shape(loaded, dataset)
    data = _load(dataset, args)
    images, labels = ((data.train_pixels, data.y_train) if split == "train"
                      else (data.test_pixels, data.y_test))
    if not 0 <= args.sample < len(images):
        raise CLIError(f"--sample must be in 0..{len(images) - 1} for the {data.name} "
                       f"{split} part")
    proba = predict_proba(loaded.model, to_float(images[args.sample:args.sample + 1]))[0]
    answer = {"file": f"{data.name}:{split}[{args.sample}]",
              "label": int(labels[args.sample]), "digit": int(proba.argmax()),
              "confidence": float(proba.max()), "probabilities": [float(p) for p in proba],
              "low_confidence": bool(proba.max() < args.min_confidence), "error": None}
    print(json.dumps([answer], indent=2) if args.json else format_prediction(answer, top))
    if args.plot:
        from .plots import plot_prediction
        image = images[args.sample]
        plot_prediction(image, image, proba, title=answer["file"]).savefig(args.plot)
        print(f"wrote {args.plot}", file=sys.stderr)
    return 0


COMMANDS = {"data": cmd_data, "train": cmd_train, "evaluate": cmd_evaluate,
            "predict": cmd_predict, "read": cmd_read, "report": cmd_report, "runs": cmd_runs,
            "serve": cmd_serve, "export": cmd_export}
