"""The house: no import circle among the top-level modules (imports inside functions count too), the
trainer imported only by the study, and no top-level file over its size limit."""
import ast
import os

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(name[:-3] for name in os.listdir(REPO) if name.endswith(".py"))
MAX_LINES, MAX_TRAIN_LINES = 700, 560  # standing limits: a file that outgrows them splits along a concern


def imports_of(module: str) -> set:
    """The top-level modules `module` imports anywhere in its file, functions included."""
    with open(os.path.join(REPO, module + ".py")) as f:
        tree = ast.parse(f.read())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return (found & set(MODULES)) - {module}


def find_circle(graph: dict) -> list:
    """A list of modules that import each other in a circle, or [] (depth-first search for a back edge)."""
    state, path = {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for dependency in sorted(graph[module]):
            if state.get(dependency) == "open":
                return path[path.index(dependency):] + [dependency]
            if dependency not in state:
                circle = visit(dependency)
                if circle:
                    return circle
        state[module] = "done"
        path.pop()
        return []

    for module in sorted(graph):
        if module not in state:
            circle = visit(module)
            if circle:
                return circle
    return []


def test_the_circle_finder_finds_a_circle():
    assert find_circle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_circle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []


def test_no_import_circle_and_only_the_study_imports_the_trainer():
    graph = {module: imports_of(module) for module in MODULES}
    circle = find_circle(graph)
    assert not circle, "import circle: " + " -> ".join(circle)
    assert {module for module, dependencies in graph.items() if "train" in dependencies} <= {"experiments"}
    assert "config" in graph["train"] and "config" in graph["eval"] and "config" in graph["experiments"]


def test_no_top_level_file_outgrows_its_limit():
    for module in MODULES:
        with open(os.path.join(REPO, module + ".py")) as f:
            lines = sum(1 for _ in f)
        limit = MAX_TRAIN_LINES if module == "train" else MAX_LINES
        assert lines <= limit, f"{module}.py has {lines} lines (limit {limit}): split it along a concern"
