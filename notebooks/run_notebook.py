"""Run a notebook top to bottom and save it with its outputs: how the committed outputs are made (a
dev tool).

    pip install nbclient ipykernel                   # Jupyter machinery: only this script needs it
    python notebooks/run_notebook.py                 # notebooks/passk_walkthrough.ipynb, in place
    python notebooks/run_notebook.py other.ipynb

The kernel starts in a fresh temporary directory with PASSK_ROOT naming this repository (as
tests/test_notebook.py does), so the run writes nothing into the repository but the notebook itself.
The notebook prints its own CPU time in its last cell. Runs are deterministic on one machine;
another CPU gives slightly different numbers (docs/design.md, Conventions)."""

import os
import sys
import tempfile
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

REPO = Path(__file__).resolve().parent.parent


def run(path: Path, timeout_s: int = 1800):
    notebook = nbformat.read(path, as_version=4)
    os.environ["PASSK_ROOT"] = str(REPO)
    os.environ.pop("PASSK_FAST", None)  # the full run
    with tempfile.TemporaryDirectory() as workdir:
        client = NotebookClient(
            notebook,
            timeout=timeout_s,
            kernel_name="python3",
            record_timing=False,
            resources={"metadata": {"path": workdir}},
        )
        started = time.time()
        client.execute()
    nbformat.write(notebook, path)
    print(f"ran {path} in {time.time() - started:.0f} s wall and saved its outputs")


if __name__ == "__main__":
    run(Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "notebooks" / "passk_walkthrough.ipynb")
