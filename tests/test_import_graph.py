"""The rooms of the house import downwards only: no import cycle anywhere in augexport/, and no
module imports a room above its own (a stage never reaches up into the engine, the CLI is on top)."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "augexport"

# room -> level; a module may import modules of its own level or below. Sub-packages are one room.
LEVELS = {
    "augexport": 0, "allocator": 0, "fused_warp": 0, "errors": 0, "rng": 0, "spec": 0, "naming": 0, "quiet": 0, "jpeg_stream": 0,
    "outdir": 1, "fs": 1, "objstore": 1, "targets": 1, "records": 1, "codec": 1, "resize": 1, "registry": 1,
    "imgaug_compat": 1, "imgaug_compiled": 1, "specfile": 1,
    "pixel_share": 1,
    "sources": 2, "stages": 2, "manifest": 2, "sinks": 2, "mixing": 2, "classes": 2,
    "pipeline": 3,
    "plan": 4, "featurewise": 4, "reader": 4, "options": 4, "resume": 4, "offload": 4, "device_ops": 4,
    "worker": 5,
    "engine": 6, "device": 6,
    "beam": 7, "run": 7, "inspection": 7, "preview": 7, "array_reader": 7,
    "tta": 8, "tta_merge": 8, "ops": 8, "compare": 8,
    "api": 9,
    "cli": 10, "__main__": 11,
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def import_graph() -> dict[str, set[str]]:
    """module -> the augexport modules it imports (anywhere in the file, functions included)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                # `from pkg import mod` imports the submodule; `from mod import name` the module
                subs = [f"{base}.{a.name}" for a in node.names]
                targets = subs if all(t in modules for t in subs) else [base, *subs]
            for target in targets:
                if target in modules and target != name:
                    graph[name].add(target)
    return graph


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def test_every_module_has_a_room() -> None:
    assert {_room(m) for m in import_graph()} <= set(LEVELS)


def test_no_import_cycle() -> None:
    graph = import_graph()
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_rooms_import_downwards_only() -> None:
    upward = sorted(f"{m} -> {t}" for m, targets in import_graph().items() for t in targets
                    if LEVELS[_room(t)] > LEVELS[_room(m)])
    assert upward == []
