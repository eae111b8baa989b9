"""The asv suite stays importable and well-formed (``asv check``), without running it."""

import importlib
import os
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
BENCH_DIR = ROOT / "asv_benchmarks"
MODULES = sorted(p.stem for p in BENCH_DIR.glob("*.py") if p.stem != "__init__")


@pytest.fixture
def bench_path(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT))


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports(bench_path, name):
    importlib.import_module(f"asv_benchmarks.{name}")


def test_case_table_is_consistent(bench_path):
    common = importlib.import_module("asv_benchmarks.common")
    for names in (common.CONV2D_CASES, common.TRANSPOSE_CASES, common.BACKPROP_FILTER_CASES,
                  common.BACKPROP_INPUT_CASES):
        assert set(names) <= set(common.CASES)
    # Every case is compared with at least the NumPy peer, which must agree with numbadeconv.
    import numpy as np

    for op in common.OPS:
        case = common.miniature(common.CASES["vae_dec_f64_nchw"])
        data = common.arrays(op, case)
        ours = common.build(op, case, "numbadeconv", data=data)()
        theirs = common.build(op, case, "numpy_reference", data=data)()
        np.testing.assert_allclose(theirs, ours, rtol=1e-10, atol=1e-10)


def _check_grouped_cases(common, impl):
    """Every op on the miniature of every grouped case: ``impl`` agrees with numbadeconv."""
    import numpy as np

    grouped = [name for name, case in common.CASES.items() if case.groups > 1]
    assert grouped
    for name in grouped:
        case = common.miniature(common.CASES[name])
        assert case.groups > 1
        for op in common.OPS:
            data = common.arrays(op, case)
            ours = common.build(op, case, "numbadeconv", data=data)()
            theirs = common.as_numpy(op, case, impl, common.build(op, case, impl, data=data)())
            np.testing.assert_allclose(theirs, ours, rtol=1e-4, atol=1e-4 * np.abs(ours).max(),
                                       err_msg=f"{name} {op} {impl}")


def test_grouped_cases_agree_with_numpy(bench_path):
    _check_grouped_cases(importlib.import_module("asv_benchmarks.common"), "numpy_reference")


def test_functional_agrees_with_numbadeconv(bench_path):
    # the PyTorch-flavoured API on the miniature of every case
    import numpy as np

    common = importlib.import_module("asv_benchmarks.common")
    for name, full in common.CASES.items():
        case = common.miniature(full)
        for op in ("conv2d", "conv2d_transpose", "backprop_input"):
            data = common.arrays(op, case)
            theirs = common.build(op, case, "functional", data=data)()
            ours = common.build(op, case, "numbadeconv", data=data)()
            np.testing.assert_allclose(common.as_numpy(op, case, "functional", theirs), ours,
                                       rtol=1e-5, atol=1e-5 * np.abs(ours).max(),
                                       err_msg=f"{name} {op}")


@pytest.mark.oracle
@pytest.mark.filterwarnings("ignore::DeprecationWarning:torch.*")
def test_grouped_cases_agree_with_torch(bench_path):
    torch = pytest.importorskip("torch")
    common = importlib.import_module("asv_benchmarks.common")
    with torch.no_grad():  # the torch peer turns autograd off; no_grad restores it on exit
        _check_grouped_cases(common, "torch")


def test_asv_check():
    pytest.importorskip("asv")
    # asv drops PYTHONPATH but honours ASV_PYTHONPATH: this checks the working tree even when
    # numbadeconv is not installed in this interpreter.
    env = dict(os.environ, ASV_PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("ASV_PYTHONPATH")])]))
    proc = subprocess.run(
        [sys.executable, "-m", "asv", "check", "--python=same"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
