"""The course notebook (notebooks/passk_walkthrough.ipynb) runs top to bottom, and its committed outputs are whole.

No Jupyter needed: the .ipynb is JSON, so the test reads its code cells and executes them in order in one
namespace, in a fresh interpreter whose working directory is a new temporary folder, with PASSK_FAST=1 (a
shorter warm start and live run) and the Colab cell (tagged "colab") skipped. Any error fails the test, and
so does a file the run adds or changes inside the repository.
"""
import json
import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "notebooks", "passk_walkthrough.ipynb")

RUN_CELLS = """
import json, sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
plt.show = lambda *args, **kwargs: plt.close("all")
cells = json.load(open(sys.argv[1]))["cells"]
namespace = {"__name__": "__main__"}
for number, cell in enumerate(cells):
    if cell["cell_type"] != "code" or "colab" in cell["metadata"].get("tags", []):
        continue
    print(f"--- cell {number}", flush=True)
    exec(compile("".join(cell["source"]), f"notebook cell {number}", "exec"), namespace)
print("--- all cells ran")
"""


def code_cells():
    with open(NOTEBOOK) as f:
        return [cell for cell in json.load(f)["cells"] if cell["cell_type"] == "code"]


def repository_files():
    """{path: modification time} of every file in the repository outside .git and caches."""
    files = {}
    for folder, subfolders, names in os.walk(REPO):
        subfolders[:] = [s for s in subfolders if s not in (".git", "__pycache__", ".pytest_cache")]
        for name in names:
            path = os.path.join(folder, name)
            files[path] = os.stat(path).st_mtime_ns
    return files


def test_the_notebook_runs_top_to_bottom_in_fast_mode(tmp_path):
    before = repository_files()
    # one thread: the fast run's tensors are small, and a busy 2-core CI machine loses time to idle threads
    env = {**os.environ, "PASSK_FAST": "1", "PASSK_ROOT": REPO, "MPLBACKEND": "Agg", "OMP_NUM_THREADS": "1"}
    run = subprocess.run([sys.executable, "-c", RUN_CELLS, NOTEBOOK], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=600)
    assert run.returncode == 0, f"a notebook cell failed:\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    assert "--- all cells ran" in run.stdout
    assert "FAST mode" in run.stdout and "fast mode" in run.stdout  # the switch reached the notebook
    changed = {path for path, mtime in repository_files().items() if before.get(path) != mtime}
    assert not changed, f"running the notebook wrote into the repository: {sorted(changed)}"


def test_the_committed_notebook_was_run_top_to_bottom_without_errors():
    cells = [cell for cell in code_cells() if "colab" not in cell["metadata"].get("tags", [])]
    counts = [cell["execution_count"] for cell in cells]
    assert counts == sorted(counts) and None not in counts and len(set(counts)) == len(counts), \
        f"the committed outputs do not come from one run in order (execution counts {counts}): " \
        f"regenerate them with python notebooks/run_notebook.py"
    errors = [output for cell in cells for output in cell["outputs"] if output["output_type"] == "error"]
    assert not errors, errors
    assert sum(1 for cell in cells for output in cell["outputs"] if "image/png" in output.get("data", {})) >= 3
    assert "of CPU" in "".join(text for output in cells[-1]["outputs"] for text in output.get("text", []))


def test_the_colab_cell_clones_and_installs_on_colab_only(monkeypatch):
    cells = code_cells()
    colab = [cell for cell in cells if "colab" in cell["metadata"].get("tags", [])]
    assert len(colab) == 1 and colab[0] is cells[0], "the first code cell, and only it, is tagged colab"
    cell = compile("".join(colab[0]["source"]), "the Colab cell", "exec")
    commands = []
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: commands.append(command))
    monkeypatch.setenv("PASSK_ROOT", "unchanged")
    exec(cell, {})  # here: not on Colab
    assert commands == [] and os.environ["PASSK_ROOT"] == "unchanged"
    monkeypatch.setitem(sys.modules, "google.colab", type(sys)("google.colab"))
    exec(cell, {})  # on Colab (the clone and the install are recorded, not run)
    assert [command[:2] for command in commands] == [["git", "clone"], [sys.executable, "-m"]]
    assert commands[1][-1].endswith("requirements.txt") and os.environ["PASSK_ROOT"] == "/content/passk"
