"""The ``depends_on`` graph of a set of contracts: edges, missing targets, cycles, renderings."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass
class DependencyGraph:
    """Contract stems and, for each, the stems it depends on (in file order, without repeats)."""

    edges: dict[str, list[str]] = field(default_factory=dict)

    @property
    def nodes(self) -> list[str]:
        """The contract stems of the graph, sorted."""
        return sorted(self.edges)

    def missing(self) -> dict[str, list[str]]:
        """stem -> the dependencies that are not contracts of the set."""
        found = {stem: [d for d in deps if d not in self.edges] for stem, deps in self.edges.items()}
        return {stem: deps for stem, deps in sorted(found.items()) if deps}

    def cycles(self) -> list[list[str]]:
        """One cycle per strongly connected component that has one, as ``[a, b, ..., a]``."""
        found = []
        for component in _components(self.edges):
            members = set(component)
            start = min(component)
            if len(component) == 1 and start not in self.edges.get(start, []):
                continue
            found.append(_cycle_through(start, members, self.edges))
        return sorted(found)


def build_graph(docs: Sequence[Any]) -> DependencyGraph:
    """The graph of the contracts among ``docs`` (binding registries and others are left out)."""
    from pv.contracts.rules.sections import depends_on, is_contract

    graph = DependencyGraph()
    for doc in docs:
        if is_contract(doc.data) and doc.stem not in graph.edges:
            graph.edges[doc.stem] = list(dict.fromkeys(stem for _, stem in depends_on(doc.data)))
    return graph


def _components(edges: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components (Tarjan's algorithm, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(edges[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next((c for c in children if c in edges), None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(edges[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
    return components


def _cycle_through(start: str, members: set[str], edges: dict[str, list[str]]) -> list[str]:
    """A shortest path from ``start`` back to itself inside one component (breadth first)."""
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in edges[node]:
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [start, *reversed(path[:-1]), start] if node != start else [start, start]
                if child in members and child not in parents:
                    parents[child] = node
                    following.append(child)
        frontier = following
    raise AssertionError("a strongly connected component without a cycle")


def render(graph: DependencyGraph, fmt: str) -> str:
    """The graph as ``text``, ``dot``, ``mermaid`` or ``json``; missing dependencies are marked."""
    missing = graph.missing()
    if fmt == "json":
        return json.dumps({
            "nodes": graph.nodes,
            "edges": [[stem, dep] for stem in graph.nodes for dep in graph.edges[stem]],
            "missing": missing,
            "cycles": graph.cycles(),
        }, indent=2)
    lines = []
    if fmt == "text":
        for stem in graph.nodes:
            deps = [d + (" (missing)" if d not in graph.edges else "") for d in graph.edges[stem]]
            lines.append(f"{stem}" + (f" -> {', '.join(deps)}" if deps else ""))
        lines += [f"cycle: {' -> '.join(cycle)}" for cycle in graph.cycles()]
    elif fmt == "dot":
        lines.append("digraph contracts {")
        lines += [f'  "{stem}";' for stem in graph.nodes]
        lines += [f'  "{d}" [style=dashed, label="{d} (missing)"];' for d in sorted({d for ds in missing.values() for d in ds})]
        lines += [f'  "{stem}" -> "{dep}";' for stem in graph.nodes for dep in graph.edges[stem]]
        lines.append("}")
    elif fmt == "mermaid":
        ids = {name: f"n{i}" for i, name in enumerate(sorted(set(graph.nodes) | {d for ds in missing.values() for d in ds}))}
        lines.append("graph LR")
        lines += [f'  {ids[name]}["{name}{" (missing)" if name not in graph.edges else ""}"]' for name in ids]
        lines += [f"  {ids[stem]} --> {ids[dep]}" for stem in graph.nodes for dep in graph.edges[stem]]
    else:
        raise ValueError(f"unknown graph format {fmt!r}")
    return "\n".join(lines)
