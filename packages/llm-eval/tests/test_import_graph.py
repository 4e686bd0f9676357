"""llm-eval's modules import each other without a circle (lazy imports inside functions too):
``adapters`` and ``hf`` imported each other until LoadedModel moved to ``protocols``."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "llm_eval"


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("llm_eval."):
            names.add(node.module.removeprefix("llm_eval.").split(".")[0])
        elif isinstance(node, ast.ImportFrom) and node.module == "llm_eval":
            names.update(a.name for a in node.names if (SRC / f"{a.name}.py").is_file())
    return names


def test_no_import_cycle():
    graph = {p.stem: _imports(p) for p in SRC.glob("*.py") if p.stem != "__init__"}
    done, path = set(), []

    def visit(module: str) -> None:
        assert module not in path, f"import cycle: {' -> '.join([*path, module])}"
        if module in done or module not in graph:
            return
        path.append(module)
        for dep in sorted(graph[module]):
            visit(dep)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)
