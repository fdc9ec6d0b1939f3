"""labels/types.py: the shared types sit below the slide table, the grid registry and the builders,
so no import inside histoseg.labels goes round in a circle (type-only imports included)."""

from __future__ import annotations

import grimp


def test_no_import_circle_inside_labels():
    graph = grimp.build_graph("histoseg", exclude_type_checking_imports=False)
    modules = sorted(m for m in graph.find_descendants("histoseg.labels"))
    circles = [
        (a, b)
        for i, a in enumerate(modules)
        for b in modules[i + 1 :]
        if graph.find_shortest_chain(a, b) and graph.find_shortest_chain(b, a)
    ]
    assert "histoseg.labels.types" in modules and circles == []
