"""The package as users get it: a built wheel in a fresh environment, lazy imports, docs."""

import doctest
import os
import re
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

import digitlab

ROOT = Path(__file__).resolve().parents[1]


def test_docstring_examples_run():
    assert doctest.testmod(digitlab, raise_on_error=False).failed == 0


def test_import_is_light():
    code = "import sys, digitlab, digitlab.data; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", "data and help do not need torch loaded"


def test_public_names_resolve():
    for name in digitlab.__all__:
        assert getattr(digitlab, name) is not None


def test_wheel_installs_into_a_fresh_environment(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                    "--no-build-isolation", "--wheel-dir", str(dist), str(ROOT)],
                   check=True, capture_output=True)
    [wheel] = dist.glob("digitlab-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "digitlab/_data/digits20.npz" in names
    assert {"digitlab/_models/digitnet.pt", "digitlab/_models/digitnet.npz",
            "digitlab/_models/digitnet.json", "digitlab/_web/index.html"} <= set(names)
    assert any(n.endswith("licenses/LICENSE") for n in names)
    assert any(n.endswith("licenses/NOTICE") for n in names)

    env = tmp_path / "fresh"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(env)], check=True)
    subprocess.run([sys.executable, "-m", "pip", "--python", str(env / "bin" / "python"),
                    "install", "--quiet", "--no-deps", str(wheel)], check=True,
                   capture_output=True)
    # The dependencies (torch, numpy, tqdm) come from this environment, appended after the
    # fresh one's own site-packages; .pth files in an appended folder are not processed, so
    # this checkout's editable install stays invisible there.
    fresh_site = next((env / "lib").glob("python*/site-packages"))
    (fresh_site / "_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    code = ("import digitlab, digitlab.data as d; X, y = d.load_digits20(); "
            "print(digitlab.__file__); print(X.shape, int(y[1015]))")
    done = subprocess.run([str(env / "bin" / "python"), "-c", code], capture_output=True,
                          text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    where, shape = done.stdout.splitlines()
    assert where.startswith(str(fresh_site)), "loaded from the installed wheel"
    assert shape == "(5000, 400) 2"
    listed = subprocess.run([str(env / "bin" / "digitlab"), "data", "list"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert listed.returncode == 0 and str(fresh_site) in listed.stdout


@pytest.mark.skipif(not sys.platform.startswith("linux") or len(os.sched_getaffinity(0)) < 2,
                    reason="libgomp's settings, on Linux with at least 2 cores")
@pytest.mark.parametrize("training", [False, True])
def test_a_training_process_imports_pytorch_with_its_openmp_settings(training):
    """For training, libgomp reads digitlab's GOMP_SPINCOUNT and OMP_PROC_BIND as PyTorch loads
    it (what it prints with OMP_DISPLAY_ENV) and binds the main thread to one core; the
    variables leave the environment again, and a value the user set is kept. Other commands
    leave libgomp's defaults."""
    code = ("import os; from digitlab._cli_commands import _import_torch; "
            f"_import_torch(training={training}); import torch; torch.ones(64, 64).sum(); "
            "print(os.environ.get('GOMP_SPINCOUNT'), os.environ.get('OMP_PROC_BIND'), "
            "len(os.sched_getaffinity(0)))")
    env = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_PROC_BIND")}
    env["OMP_DISPLAY_ENV"] = "verbose"
    for given in ({}, {"GOMP_SPINCOUNT": "123", "OMP_PROC_BIND": "false"}):
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              env={**env, **given}, check=True)
        if "OPENMP DISPLAY ENVIRONMENT" not in done.stderr:
            pytest.skip("this PyTorch does not use GNU libgomp")
        read = dict(re.findall(r"^\s*(GOMP_SPINCOUNT|OMP_PROC_BIND) = '(\w+)'", done.stderr,
                               re.MULTILINE))
        spin, bind, cores = done.stdout.split()
        if given:
            assert read == {"GOMP_SPINCOUNT": "123", "OMP_PROC_BIND": "FALSE"}
            assert (spin, bind) == ("123", "false")
            assert int(cores) >= 2
        elif training:
            assert read == {"GOMP_SPINCOUNT": "10000", "OMP_PROC_BIND": "TRUE"}
            assert (spin, bind) == ("None", "None")  # not handed on to child processes
            assert cores == "1"
        else:
            assert read["OMP_PROC_BIND"] == "FALSE" and read["GOMP_SPINCOUNT"] != "10000"
            assert int(cores) >= 2
