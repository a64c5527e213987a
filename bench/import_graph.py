"""The package's import graph, folder by folder (issue 20): units, layers, edges, cycles.

    python bench/import_graph.py [--depth 2]

A unit is a top-level module or sub-package of emoclip, cut at `--depth` dotted parts
(2: `emoclip.data`, `emoclip.train`). An edge is "some module of unit A imports some module
of unit B" (grimp reads the imports, including those inside functions). Layers: the longest
chain of edges plus one, counted on the graph of strongly connected components, so a cycle
shows as one component of several units (listed).
"""

from __future__ import annotations

import argparse
from functools import cache

import grimp


def unit(module: str, depth: int) -> str:
    return ".".join(module.split(".")[:depth])


def folder_graph(depth: int) -> tuple[set[str], set[tuple[str, str]]]:
    graph = grimp.build_graph("emoclip")
    units, edges = set(), set()
    for module in graph.modules:
        units.add(unit(module, depth))
        for imported in graph.find_modules_directly_imported_by(module):
            a, b = unit(module, depth), unit(imported, depth)
            if a != b:
                edges.add((a, b))
    return units, edges


def components(units: set[str], edges: set[tuple[str, str]]) -> list[set[str]]:
    """Strongly connected components (Tarjan); a component of more than one unit is a cycle."""
    out = {u: [b for a, b in edges if a == u] for u in units}
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(u: str) -> None:
        index[u] = low[u] = len(index)
        stack.append(u)
        on_stack.add(u)
        for v in out[u]:
            if v not in index:
                visit(v)
                low[u] = min(low[u], low[v])
            elif v in on_stack:
                low[u] = min(low[u], index[v])
        if low[u] == index[u]:
            component = set()
            while True:
                v = stack.pop()
                on_stack.discard(v)
                component.add(v)
                if v == u:
                    break
            found.append(component)

    for u in sorted(units):
        if u not in index:
            visit(u)
    return found


def layers(units: set[str], edges: set[tuple[str, str]]) -> int:
    comps = components(units, edges)
    where = {u: i for i, c in enumerate(comps) for u in c}
    out = {i: {where[b] for a, b in edges if where[a] == i and where[b] != i} for i in where.values()}

    @cache
    def depth(i: int) -> int:
        return 1 + max((depth(j) for j in out[i]), default=0)

    return max(depth(i) for i in out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=2)
    args = parser.parse_args()
    units, edges = folder_graph(args.depth)
    cycles = [sorted(c) for c in components(units, edges) if len(c) > 1]
    print(f"units {len(units)}  layers {layers(units, edges)}  edges {len(edges)}")
    for cycle in cycles:
        print("cycle:", " <-> ".join(cycle))


if __name__ == "__main__":
    main()
