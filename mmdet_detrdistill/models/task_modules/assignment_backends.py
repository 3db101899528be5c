"""Optional batched Hungarian solvers behind ``solve_assignments(..., solver=...)``.

Issue 22, item 4: at DINO's 900 queries a step solves 12 matrices of 900 x 900. Measured in
docs/reports/2026-11-30_matching_900.md: scipy about 90 ms a solve on match costs (loaded
2-CPU host); lapx's ``lapjvr_batch`` 2.2-3.3x faster with the same pairs; torch-linear-
assignment has a batched CUDA (Triton) kernel, so costs on a GPU need no host copy.

* ``'scipy'``: ``scipy.optimize.linear_sum_assignment`` on host threads (the default, no
  extra package).
* ``'lapx'``: ``lap.lapjvr_batch`` (``pip install lapx``), exact, CPU, on the same threads.
* ``'torch_linear_assignment'``: ``batch_linear_assignment`` (``pip install
  torch-linear-assignment``) on CUDA cost tensors; costs on the CPU go to ``'scipy'``.
* ``'auto'``: chosen per device where the costs are, among the installed packages
  (:func:`resolve_solver`): CUDA costs ``'torch_linear_assignment'`` (no host copy), host costs
  ``'lapx'`` (the fastest exact CPU solver measured), else ``'scipy'``. The CUDA choice is not
  measured yet: the GPU check (``tools/analysis_tools/gpu_check/gpu_check.sh``) times it.

All three return an optimal assignment. Where the optimum is unique (continuous match
costs), the pairs are scipy's; where costs tie, another solver may return a different
assignment of the same total cost.
"""

import functools
import importlib
from types import ModuleType
from typing import Tuple

import numpy as np
import torch
from torch import Tensor

SOLVERS = ('auto', 'scipy', 'lapx', 'torch_linear_assignment')
_MODULES = {'lapx': 'lap', 'torch_linear_assignment': 'torch_linear_assignment'}
_PIP = {'lapx': 'lapx', 'torch_linear_assignment': 'torch-linear-assignment'}


def check_solver(solver: str, where: str) -> str:
    """``solver`` if it is known and its package imports; a ValueError or ImportError naming
    ``where``'s ``solver`` key and what to do otherwise."""
    if solver not in SOLVERS:
        raise ValueError(f'{where}: solver must be one of {SOLVERS}; got {solver!r}')
    if solver in _MODULES:
        backend_module(solver, where)
    return solver


def backend_module(solver: str, where: str = 'solve_assignments') -> ModuleType:
    """The package of an optional ``solver``, or an ImportError saying how to install it."""
    try:
        return importlib.import_module(_MODULES[solver])
    except ImportError as err:
        raise ImportError(
            f'{where}: solver={solver!r} needs the optional package {_PIP[solver]!r}: '
            f"`pip install {_PIP[solver]}`, or set solver='scipy'"
        ) from err


@functools.cache
def installed(solver: str) -> bool:
    """Whether the optional package of ``solver`` imports (checked once per process)."""
    try:
        backend_module(solver)
    except ImportError:
        return False
    return True


def resolve_solver(solver: str, cuda_costs: bool) -> str:
    """The solver that ``solver`` means for costs on CUDA (``cuda_costs``) or on the host.

    ``'auto'``: CUDA costs take ``'torch_linear_assignment'`` when it is installed (batched
    kernel, the costs stay on the GPU); otherwise the costs go to the host, where ``'lapx'``
    (``lapjvr_batch``, 2.2-3.3x scipy on 900 x 900 match costs with the same pairs,
    docs/reports/2026-11-30_matching_900.md) is taken when installed, else ``'scipy'``. Every
    other name means itself.
    """
    if solver != 'auto':
        return solver
    if cuda_costs and installed('torch_linear_assignment'):
        return 'torch_linear_assignment'
    return 'lapx' if installed('lapx') else 'scipy'


def uses_device_costs(solver: str, costs: Tensor) -> bool:
    """Whether ``solver`` solves ``costs`` where they are (no host copy)."""
    return costs.is_cuda and resolve_solver(solver, True) == 'torch_linear_assignment'


def lapx_pairs(costs: np.ndarray, threads: int) -> Tuple[np.ndarray, np.ndarray]:
    """``lap.lapjvr_batch`` on (N, Ns, Nt) costs; (N, K) rows and columns, sorted by column."""
    lap = backend_module('lapx')
    rows, cols = lap.lapjvr_batch(costs, extend_cost=True, return_cost=False, n_threads=threads)
    order = [c.argsort() for c in cols]
    return (
        np.stack([r[o] for r, o in zip(rows, order)]),
        np.stack([c[o] for c, o in zip(cols, order)]),
    )


def lapx_one(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """``lap.lapjvr_batch`` on one (Ns, Nt) matrix, as :func:`lapx_pairs` solves each of its
    matrices; (K,) rows and columns, sorted by column."""
    rows, cols = lapx_pairs(cost[None], 1)
    return rows[0], cols[0]


def torch_linear_assignment_pairs(costs: Tensor) -> Tuple[Tensor, Tensor]:
    """``batch_linear_assignment`` on (N, Ns, Nt) costs, on their device; (N, K) rows and
    columns sorted by column, K = min(Ns, Nt)."""
    tla = backend_module('torch_linear_assignment')
    n, ns, nt = costs.shape
    col_of_row = tla.batch_linear_assignment(costs)  # (N, Ns), -1 where a row is unassigned
    rows = torch.arange(ns, device=costs.device).expand(n, -1)
    key = torch.where(col_of_row >= 0, col_of_row, nt + rows)  # unassigned rows last
    order = key.argsort(dim=1)[:, : min(ns, nt)]  # (N, K)
    return order, col_of_row.gather(1, order)
