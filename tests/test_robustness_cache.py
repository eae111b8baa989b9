"""Read-only installs and on-disk caches.

Each scenario copies the package into a temporary "site" directory and runs a child interpreter
that imports it from there, calls every op and compares with the naive reference.

The tests run as root in CI, and ``chmod`` does not stop root from writing. So "not writable" is
made so that it holds for root too: every cache location Numba might use is a path that *cannot be
a directory*:

- ``NUMBA_CACHE_DIR`` points below a regular file (``makedirs`` fails with ENOTDIR);
- each package directory's ``__pycache__`` is a regular file (Numba's in-tree locator fails);
- ``HOME`` and ``XDG_CACHE_HOME`` point below a regular file (the user-wide locator fails).

The package files are also made read-only (``chmod a-w``), which is what stops a non-root user.
What the read-only test proves: with no usable cache location, ``import numbadeconv`` succeeds,
every kernel falls back to an uncached compile (their ``_cache`` is Numba's ``NullCache``), the
results are right, and nothing is written into the package.
"""

import os
import shutil
import stat
import subprocess
import sys

import pytest
from _robustness import REPO, check_child, child_env, run_child

# Small problems (one channel: the row-wise and the serial filter-gradient kernels, threads=1) keep
# the uncached compiles short; SLOW_PROBLEMS add channel-rich and parallel cases.
SCRIPT = """
import os, sys
import numpy as np
import numbadeconv as nd
from numbadeconv import _kernels, testing
from numbadeconv._kernels import correlate, filter_grad

assert os.path.dirname(nd.__file__).startswith({site!r}), nd.__file__
rng = np.random.default_rng(0)
problems = {problems}
for dtype in {dtypes}:
    for (n, h, w, c, fh, fw, o, threads) in problems:
        x = rng.standard_normal((n, h, w, c)).astype(dtype)
        f = rng.standard_normal((fh, fw, c, o)).astype(dtype)
        kw = dict(strides=2, padding="SAME", threads=threads)
        y = nd.conv2d(x, f, **kw)
        tol = dict(rtol=1e-4, atol=1e-4)
        kw.pop("threads")
        assert np.allclose(y, testing.reference_conv2d(x, f, **kw), **tol)
        dx = nd.conv2d_transpose(y, f, x.shape, threads=threads, **kw)
        assert np.allclose(dx, testing.reference_conv2d_transpose(y, f, x.shape, **kw), **tol)
        dx2 = nd.conv2d_backprop_input(x.shape, f, y, threads=threads, **kw)
        assert np.array_equal(dx, dx2)
        dw = nd.conv2d_backprop_filter(x, f.shape, y, threads=threads, **kw)
        ref = testing.reference_conv2d_backprop_filter(x, f.shape, y, **kw)
        assert np.allclose(dw, ref, **tol)
caches = {{type(d._cache).__name__ for m in (correlate, filter_grad) for d in vars(m).values()
          if hasattr(d, "_cache")}}
hits = sum(sum(d.stats.cache_hits.values()) for m in (correlate, filter_grad)
           for d in vars(m).values() if hasattr(d, "stats"))
print("caches", sorted(caches), "hits", hits)
"""

SMALL = [(1, 6, 5, 1, 3, 2, 1, 1)]
SLOW_PROBLEMS = SMALL + [(2, 24, 24, 16, 3, 3, 16, None), (2, 16, 16, 6, 3, 3, 6, None)]


def _script(site, problems=SMALL, dtypes=("np.float32",)):
    return SCRIPT.format(site=str(site), problems=problems, dtypes="(" + ", ".join(dtypes) + ",)")


def _install(tmp_path, *, block_pycache: bool):
    """Copy the package to ``tmp_path/site``; returns the site directory."""
    site = tmp_path / "site"
    shutil.copytree(REPO / "numbadeconv", site / "numbadeconv",
                    ignore=shutil.ignore_patterns("__pycache__"))
    if block_pycache:
        for d in [site / "numbadeconv", *(p for p in (site / "numbadeconv").rglob("*")
                                          if p.is_dir())]:
            (d / "__pycache__").write_text("not a directory\n")
    return site


def _make_read_only(root):
    for path in [root, *root.rglob("*")]:
        mode = path.stat().st_mode
        path.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _make_writable(root):
    for path in [root, *root.rglob("*")]:
        path.chmod(path.stat().st_mode | stat.S_IWUSR)


def _env(site, **overrides):
    env = child_env(**overrides)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO / "tests")])
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


def _files(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


@pytest.fixture
def blocker(tmp_path):
    """A regular file: any path below it can never be created, not even by root."""
    path = tmp_path / "blocker"
    path.write_text("")
    return path


def test_read_only_install_without_any_cache_location(tmp_path, blocker):
    site = _install(tmp_path, block_pycache=True)
    before = _files(site)
    _make_read_only(site)
    try:
        env = _env(site, NUMBA_CACHE_DIR=str(blocker / "numba"), HOME=str(blocker / "home"),
                   XDG_CACHE_HOME=str(blocker / "cache"), NUMBADECONV_DISABLE_CACHE=None)
        out = check_child(run_child(_script(site), env=env, timeout=300, cwd=tmp_path))
    finally:
        _make_writable(site)
    assert "caches ['NullCache']" in out, out
    assert _files(site) == before


def test_read_only_install_uses_the_user_cache(tmp_path):
    """No in-tree cache, but a writable home: kernels are cached there and loaded next time."""
    site = _install(tmp_path, block_pycache=True)
    home = tmp_path / "home"
    home.mkdir()
    env = _env(site, NUMBA_CACHE_DIR=None, HOME=str(home), XDG_CACHE_HOME=None,
               NUMBADECONV_DISABLE_CACHE=None)
    first = check_child(run_child(_script(site), env=env, timeout=300, cwd=tmp_path))
    assert "hits 0" in first, first
    assert any(f.endswith(".nbi") for f in _files(home)), _files(home)
    second = check_child(run_child(_script(site), env=env, timeout=300, cwd=tmp_path))
    assert "hits 0" not in second, second


def test_disable_cache_switch(tmp_path):
    site = _install(tmp_path, block_pycache=False)
    cache = tmp_path / "numba_cache"
    cache.mkdir()
    env = _env(site, NUMBA_CACHE_DIR=str(cache), NUMBADECONV_DISABLE_CACHE="1")
    out = check_child(run_child(_script(site), env=env, timeout=300, cwd=tmp_path))
    assert "caches ['NullCache']" in out, out
    assert _files(cache) == []
    assert not [f for f in _files(site) if f.endswith((".nbi", ".nbc"))]


def _concurrent(tmp_path, n_procs, problems, dtypes):
    site = _install(tmp_path, block_pycache=True)
    cache = tmp_path / "shared_cache"
    env = _env(site, NUMBA_CACHE_DIR=str(cache), NUMBADECONV_DISABLE_CACHE=None,
               NUMBA_NUM_THREADS="2")
    script = tmp_path / "child.py"
    script.write_text(_script(site, problems, dtypes))
    procs = [subprocess.Popen([sys.executable, str(script)], env=env, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(n_procs)]
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, f"child exited with {p.returncode}\n{out}\n{err}"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert any(f.endswith(".nbi") for f in _files(cache))
    # and a later process loads what the concurrent writers left
    again = check_child(run_child(script.read_text(), env=env, timeout=300, cwd=tmp_path))
    assert "hits 0" not in again, again


def test_shared_cache_dir_written_by_several_processes_at_once(tmp_path):
    _concurrent(tmp_path, 3, SMALL, ("np.float32",))


@pytest.mark.slow
def test_shared_cache_dir_many_processes_all_kernels(tmp_path):
    _concurrent(tmp_path, 6, SLOW_PROBLEMS, ("np.float32", "np.float64"))


WARMUP_SCRIPT = """
import numpy as np
import numbadeconv as nd
from numbadeconv import _warmup

assert nd.warmup(("float32",), processes=2).keys() == {"float32"}
units = _warmup._units(np.dtype("float32"))
misses = [d.py_func.__name__ for d, _ in units if d.stats.cache_misses]
print("misses", misses, "hits", sum(len(d.stats.cache_hits) for d, _ in units),
      "signatures", sum(len(signatures) for _, signatures in units))
"""


def test_warmup_compiles_in_worker_processes(tmp_path):
    """Workers compile every kernel into the cache; this process only loads them.

    The working directory holds a package of the same name that cannot be imported: the workers
    import the parent's package all the same.
    """
    decoy = tmp_path / "numbadeconv"
    decoy.mkdir()
    (decoy / "__init__.py").write_text("raise ImportError('the decoy package was imported')\n")
    env = child_env(NUMBA_CACHE_DIR=str(tmp_path / "cache"), NUMBADECONV_DISABLE_CACHE=None)
    out = check_child(run_child(WARMUP_SCRIPT, env=env, timeout=300, cwd=tmp_path))
    n_signatures = int(out.split("signatures")[1])
    assert f"misses [] hits {n_signatures}" in out, out
