"""Hungarian solves of a stack of cost matrices, on host threads.

Adaptive matching solves one (Ns, Nt) problem per decoder layer and image, e.g. 6 x 2 of
300 x 300 per step for Conditional DETR, about 20 ms each with scipy on one core. They are
independent, and scipy releases the GIL, so they run concurrently on a thread pool.

How many threads: ``torch.get_num_threads()`` is the wrong measure. Distributed launchers
(``torchrun``, mmengine's ``set_multi_processing``) set ``OMP_NUM_THREADS=1`` per process, which
would make every solve serial while the process's share of the host's cores sits idle (on a GPU,
the step waits on these solves). The default is therefore that share: the CPUs this process may
run on, divided by the processes on this node (``LOCAL_WORLD_SIZE``, set by ``torchrun``).
In :func:`solve_assignments` the calling thread only waits while the pool works, so the process
never runs more threads than that. :func:`solve_assignment_stream` (what ``MixMatcher`` calls)
is pipelined: the matcher computes its cost matrices layer by layer, and each layer's solves
start while the calling thread computes the next layer's costs, so the cost computation hides
behind the solves (on a GPU the calling thread mostly waits for the device meanwhile).

Which solver: ``solver='scipy'`` (default), ``'lapx'`` or ``'torch_linear_assignment'``, see
``assignment_backends``.
"""

import itertools
import os
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Optional, Tuple, Union

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from .assignment_backends import (
    check_solver,
    lapx_one,
    lapx_pairs,
    resolve_solver,
    torch_linear_assignment_pairs,
    uses_device_costs,
)

# Smaller matrices are solved serially: starting a pool (0.6-0.9 ms for 2 threads here) costs
# more than it saves (uniform random 30 x 30: 16 solves take 0.2 ms serially, 1.3 ms on 2
# threads; break-even near 75 x 75; real 300 x 300 match costs take about 20 ms each).
MIN_THREADED_ENTRIES = 100 * 100


def default_solver_threads() -> int:
    """This process's share of the node's CPUs: usable CPUs // processes on the node."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        local_procs = max(1, int(os.environ.get('LOCAL_WORLD_SIZE', '1')))
    except ValueError:
        local_procs = 1
    return max(1, cpus // local_procs)


def check_solver_threads(threads: Optional[int], where: str) -> Optional[int]:
    """``threads`` if it is None or a positive int; a ValueError naming ``where`` otherwise."""
    if threads is None or (
        isinstance(threads, int) and not isinstance(threads, bool) and threads > 0
    ):
        return threads
    raise ValueError(
        f"{where}: solver_threads must be a positive int, or None for this process's share of "
        f'the CPUs ({default_solver_threads()} here); got {threads!r}'
    )


def solve_assignments(
    costs: Union[np.ndarray, Tensor], threads: Optional[int] = None, solver: str = 'scipy'
) -> Tuple[np.ndarray, np.ndarray]:
    """The Hungarian assignment of each (Ns, Nt) matrix of ``costs`` (N, Ns, Nt).

    Args:
        costs (np.ndarray | Tensor): N independent cost matrices, finite. A
            Tensor is copied to the host, except a CUDA one solved by
            ``'torch_linear_assignment'``.
        threads (int, optional): At most this many solves at once; None: this
            process's share of the CPUs (:func:`default_solver_threads`).
            Matrices of fewer than ``MIN_THREADED_ENTRIES`` entries are solved
            serially. Each result is that of a lone call, whatever the threads.
        solver (str): ``'scipy'``, ``'lapx'``, ``'torch_linear_assignment'`` or
            ``'auto'`` (per device, see ``assignment_backends``). Defaults to
            ``'scipy'``.

    Returns:
        tuple[np.ndarray, np.ndarray]: Row and column indices, (N, K) each with
        K = min(Ns, Nt), every matrix's pairs sorted by column; Tensors on the
        costs' device where the costs stayed there.
    """
    check_solver(solver, 'solve_assignments')
    if isinstance(costs, Tensor):
        if uses_device_costs(solver, costs):
            return torch_linear_assignment_pairs(costs)
        costs = costs.detach().cpu().numpy()
    solver = resolve_solver(solver, cuda_costs=False)
    k = min(costs.shape[1:])
    if not len(costs) or not k:
        empty = np.zeros((len(costs), k), dtype=np.int64)
        return empty, empty.copy()
    workers = min(len(costs), threads or default_solver_threads())
    if costs[0].size < MIN_THREADED_ENTRIES:
        workers = 1
    if solver == 'lapx':
        return lapx_pairs(costs, workers)
    if workers <= 1:
        pairs = [_solve_one(c) for c in costs]
    else:
        with ThreadPoolExecutor(workers, thread_name_prefix='assignment_solver') as pool:
            pairs = list(pool.map(_solve_one, costs))
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def solve_assignment_stream(
    stacks: Iterable[Tensor], threads: Optional[int] = None, solver: str = 'scipy'
) -> Tuple[np.ndarray, np.ndarray]:
    """:func:`solve_assignments` of ``torch.cat(list(stacks))``, solving each stack's matrices
    while the next stack is computed.

    ``stacks`` is typically a generator computing one decoder layer's (bs, Ns, Nt) costs per
    step. Solved on the host (scipy, lapx; matrices of at least ``MIN_THREADED_ENTRIES``
    entries), each matrix is copied to the host and handed to the pool as soon as its stack
    exists, and the calling thread goes on computing the next stack; each result is that of a
    lone call, as with :func:`solve_assignments` (lapx: ``lapjvr_batch`` per matrix, as its
    batch call solves each). Otherwise (CUDA costs solved on their device, small matrices) the
    stacks are concatenated and solved in one call.

    Args:
        stacks (Iterable[Tensor]): Cost stacks (n_i, Ns, Nt), finite, same Ns and Nt.
        threads (int, optional): At most this many solves at once, as in
            :func:`solve_assignments`; the calling thread computes ``stacks`` meanwhile.
        solver (str): As in :func:`solve_assignments`. Defaults to ``'scipy'``.

    Returns:
        tuple[np.ndarray, np.ndarray]: Row and column indices, (sum n_i, K) each, in the order
        of the stacks' matrices; Tensors on the costs' device where they stayed there.
    """
    check_solver(solver, 'solve_assignment_stream')
    stacks = iter(stacks)
    first = next(stacks, None)
    if first is None:
        return solve_assignments(np.zeros((0, 0, 0), dtype=np.float32), threads, solver)
    pooled = (
        not uses_device_costs(solver, first)
        and min(first.shape[1:]) > 0
        and first[0].numel() >= MIN_THREADED_ENTRIES
    )
    if not pooled:
        return solve_assignments(torch.cat([first, *stacks]), threads, solver)
    solve_one = lapx_one if resolve_solver(solver, cuda_costs=False) == 'lapx' else _solve_one
    workers = threads or default_solver_threads()
    with ThreadPoolExecutor(workers, thread_name_prefix='assignment_solver') as pool:
        futures = [  # the generator computes stack i + 1 while the pool solves stack i
            pool.submit(solve_one, cost)
            for stack in itertools.chain([first], stacks)
            for cost in stack.detach().cpu().numpy()
        ]
        pairs = [f.result() for f in futures]
    return np.stack([p[0] for p in pairs]), np.stack([p[1] for p in pairs])


def _solve_one(cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """One matrix's assignment, sorted by column (teacher) index."""
    rows, cols = linear_sum_assignment(cost)
    order = cols.argsort() if len(cols) else cols
    return rows[order], cols[order]
