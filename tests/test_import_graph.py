"""The package's import graph: no cycle between its parts, and ``models.common`` stands alone.

Every module is parsed with ``ast`` (module-level imports and those inside
functions alike); relative imports are resolved to module names, and each
module is reduced to its part of the package: ``models.<sub>`` for the models
(``models.components``, ``models.distillers``, ``models.common``, ...), the
top-level sub-package otherwise (``engine``, ``utils``, ``testing``, ...).

The two aggregators, ``mmdet_detrdistill/__init__.py`` and
``models/__init__.py``, are no part: they import every part so that
``import mmdet_detrdistill`` registers every class, and Python runs them before
any module below them anyway; an import of them (``import mmdet_detrdistill``
to register the classes) is no edge.
"""

import ast
from collections import defaultdict
from pathlib import Path
from typing import Dict, List, Optional, Set, Tuple

import mmdet_detrdistill

PACKAGE = 'mmdet_detrdistill'
ROOT = Path(mmdet_detrdistill.__file__).parent
COMMON = 'models.common'
AGGREGATORS = (PACKAGE, 'models')

Edge = Tuple[str, str, str]  # importing part, imported part, 'path:line' of the import


def module_name(path: Path) -> str:
    """``mmdet_detrdistill.models.common.gather`` for ``<root>/models/common/gather.py``."""
    parts = path.relative_to(ROOT).with_suffix('').parts
    if parts[-1] == '__init__':
        parts = parts[:-1]
    return '.'.join((PACKAGE,) + parts)


def part_of(module: str) -> Optional[str]:
    """The part of the package a module belongs to, or None for a module not of ours."""
    if module != PACKAGE and not module.startswith(PACKAGE + '.'):
        return None
    parts = module.split('.')[1:]
    if not parts:
        return PACKAGE
    depth = 2 if parts[0] == 'models' and len(parts) > 1 else 1
    return '.'.join(parts[:depth])


def is_edge(source: Optional[str], target: Optional[str]) -> bool:
    """Whether an import from part ``source`` of part ``target`` is an edge of the graph."""
    return source != target and not {source, target} & {None, *AGGREGATORS}


def imported_modules(path: Path, modules: Set[str]) -> List[Tuple[str, int]]:
    """Every module of ours a file imports, anywhere in it, with the line of the import."""
    name = module_name(path)
    package = name if path.name == '__init__.py' else name.rsplit('.', 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                target = f'{base}.{node.module}' if node.module else base
            else:
                target = node.module
            found.append((target, node.lineno))
            for alias in node.names:  # `from . import x`: x may be a module
                if f'{target}.{alias.name}' in modules:
                    found.append((f'{target}.{alias.name}', node.lineno))
    return [(m, line) for m, line in found if part_of(m) is not None]


def import_edges() -> List[Edge]:
    """(importing part, imported part, where) for every import between two parts."""
    files = sorted(ROOT.rglob('*.py'))
    modules = {module_name(f) for f in files}
    edges = []
    for path in files:
        source = part_of(module_name(path))
        for target, line in imported_modules(path, modules):
            if is_edge(source, part_of(target)):
                where = f'{path.relative_to(ROOT.parent)}:{line}'
                edges.append((source, part_of(target), where))
    return edges


def find_cycle(edges: List[Edge]) -> Optional[List[Edge]]:
    """One cycle of the part graph as its edges, or None."""
    graph: Dict[str, Dict[str, str]] = defaultdict(dict)
    for source, target, where in edges:
        graph[source].setdefault(target, where)
    state: Dict[str, int] = {}  # 1: on the current path, 2: done
    path: List[str] = []

    def visit(node: str) -> Optional[List[str]]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = 2
        path.pop()
        return None

    for start in sorted(graph):
        if start not in state and (nodes := visit(start)):
            return [(a, b, graph[a][b]) for a, b in zip(nodes, nodes[1:])]
    return None


def test_the_parser_sees_imports_at_every_level():
    """Guard against a vacuous pass: known imports are found, relative and inside functions."""
    edges = {(a, b) for a, b, _ in import_edges()}
    assert ('models.distillers', 'models.components') in edges  # module-level, relative
    assert ('models.components', COMMON) in edges
    assert ('engine', 'models.layers') in edges or ('engine', 'models.task_modules') in edges
    assert ('models.layers', COMMON) in edges


def test_find_cycle_finds_a_cycle_and_only_a_cycle():
    assert find_cycle([('a', 'b', 'x'), ('b', 'c', 'y')]) is None
    cycle = find_cycle([('a', 'b', 'x'), ('b', 'c', 'y'), ('c', 'a', 'z'), ('c', 'd', 'w')])
    assert [(a, b) for a, b, _ in cycle] == [('a', 'b'), ('b', 'c'), ('c', 'a')]


def test_no_import_cycle_between_parts_of_the_package():
    cycle = find_cycle(import_edges())
    assert cycle is None, (
        'import cycle: '
        + ' -> '.join(f'{a} ({where}) ' for a, _, where in cycle)
        + f'-> {cycle[0][0]}'
    )


def test_models_common_imports_nothing_of_ours():
    ours = sorted(f'{b} ({where})' for a, b, where in import_edges() if a == COMMON)
    assert not ours, f'{COMMON} must import only torch, mmdet, mmengine and stdlib: {ours}'
