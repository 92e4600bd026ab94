"""The house: no import circle among the top-level modules (imports inside functions count too),
docs/design.md's layout in import order, the trainer imported only by the study, the config a leaf
that builds nothing, no top-level file over 700 lines and no function over 60 (CLI `main`s aside),
and the RL step on one screen with a pure loss."""

import ast
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MODULES = sorted(name[:-3] for name in os.listdir(REPO) if name.endswith(".py"))
# standing limits: a file or function that outgrows them splits
MAX_LINES, MAX_FUNCTION_LINES = (
    700,
    60,
)


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
    """A list of modules that import each other in a circle, or [] (depth-first search for a back
    edge)."""
    state, path = {}, []

    def visit(module):
        state[module] = "open"
        path.append(module)
        for dependency in sorted(graph[module]):
            if state.get(dependency) == "open":
                return path[path.index(dependency) :] + [dependency]
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
    assert {module for module, dependencies in graph.items() if "train" in dependencies} <= {
        "experiments"
    }
    assert {module for module, dependencies in graph.items() if "ppo" in dependencies} <= {
        "train",
        "experiments",
    }
    assert (
        "config" in graph["train"]
        and "config" in graph["eval"]
        and "config" in graph["experiments"]
    )


def test_the_config_builds_nothing():
    assert not (imports_of("config") | imports_of("config_checks")) & {
        "model",
        "hf_policy",
        "tasks",
        "reward",
        "build",
        "train",
        "eval",
    }


def functions_of(module: str):
    with open(os.path.join(REPO, module + ".py")) as f:
        tree = ast.parse(f.read())
    return [
        node for node in ast.walk(tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    ]


def test_no_top_level_file_or_function_outgrows_its_limit():
    for module in MODULES:
        with open(os.path.join(REPO, module + ".py")) as f:
            lines = sum(1 for _ in f)
        assert lines <= MAX_LINES, (
            f"{module}.py has {lines} lines (limit {MAX_LINES}): split it along a concern"
        )
        for function in functions_of(module):
            length = function.end_lineno - function.lineno + 1
            assert function.name == "main" or length <= MAX_FUNCTION_LINES, (
                f"{module}.{function.name} has {length} lines (limit {MAX_FUNCTION_LINES})"
            )


def test_the_rl_step_fits_a_screen_and_the_loss_is_pure():
    functions = {f.name: f for f in functions_of("ppo")}
    step = functions["rl_step"]
    assert step.end_lineno - step.lineno + 1 <= 60
    loss_calls = {
        node.func.value.id
        for node in ast.walk(functions["policy_loss"])
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and isinstance(node.func.value, ast.Name)
    }
    assert "distributed" not in loss_calls
    # the checker sees module calls at all
    assert {"distributed", "torch"} & loss_calls == {"torch"}


def test_design_md_lists_every_file_below_the_files_it_imports():
    """docs/design.md's layout table: every top-level module in it, each importing only modules
    in rows above its own (the table is the reading order from the bottom up)."""
    with open(os.path.join(REPO, "docs", "design.md")) as f:
        rows = [
            re.findall(r"`(\w+)\.py`", line.split("|")[1]) for line in f if line.startswith("| `")
        ]
    row_of = {module: i for i, modules in enumerate(rows) for module in modules}
    assert sorted(row_of) == MODULES
    late = [(m, d) for m in MODULES for d in sorted(imports_of(m)) if row_of[d] >= row_of[m]]
    assert not late, f"imports of a file in the same row or below: {late}"
