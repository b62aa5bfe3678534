"""The package's layers: the core imports nothing of the training or experiment stack."""
import ast
import subprocess
import sys
from pathlib import Path


def test_import_vadd_loads_no_training_or_plotting_stack():
    code = ("import vadd, sys; print(sorted(m for m in sys.modules if m.split('.')[0] in "
            "{'omegaconf', 'hydra', 'lightning', 'matplotlib', 'sklearn', 'transformers'}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


SRC = Path(__file__).resolve().parents[1] / "src" / "vadd"
CORE = {"schedules", "process", "objectives", "latent", "algorithms", "samplers", "sampling", "bounds", "errors", "rng", "budget"}


def _import_graph() -> dict:
    """``module -> modules of vadd it imports``, from every import statement (nested ones included); importing
    a module of a subpackage also runs the subpackage's ``__init__`` (an edge to it). The top package's
    ``__init__`` (which re-exports the API) is left out: every module passes through it."""
    mods = {}
    for p in SRC.rglob("*.py"):
        parts = p.relative_to(SRC.parent).with_suffix("").parts
        mods[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    graph = {}
    for name, path in mods.items():
        pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                    base = up + ("." + node.module if node.module else "")
                deps |= {f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base for a in node.names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names}
        deps = {d for d in deps if d in mods and d != name}
        for d in list(deps):  # the subpackages a module's import runs through
            bits = d.split(".")
            deps |= {".".join(bits[:i]) for i in range(2, len(bits)) if not name.startswith(".".join(bits[:i]) + ".")}
        graph[name] = deps - {"vadd", name}
    return graph


def test_no_import_cycle_among_the_modules():
    graph, state, path = _import_graph(), {}, []

    def visit(m):  # depth-first; a module met again while on the path closes a cycle
        state[m] = "open"
        path.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(d):] + [d]))
            if d not in state:
                visit(d)
        path.pop()
        state[m] = "done"
    for m in sorted(graph):
        if m not in state:
            visit(m)
    assert len(graph) > 40  # the walk saw the package


def test_the_core_imports_nothing_above_it():
    graph = _import_graph()
    for m in sorted(CORE):
        above = sorted(d for d in graph[f"vadd.{m}"] if d.removeprefix("vadd.") not in CORE)
        assert not above, f"vadd.{m} imports {above}"
