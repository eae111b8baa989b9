"""Loops only: Numba kernels over pre-validated, pre-allocated, C-contiguous NHWC arrays.

Nothing here checks its arguments; :mod:`numbadeconv._engine` builds every argument so that all
indexing is in bounds by construction.
"""
