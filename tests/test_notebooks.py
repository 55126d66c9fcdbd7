"""Every notebook in notebooks/ runs top to bottom, at smoke size, without an error.

Each notebook reads ``SRSAN_SMOKE=1`` and shrinks its data, epochs and timings, so the
whole set runs in a few minutes on 2 cores. The kernel is started in a temporary directory
(a notebook must not write into the repository), headless (``MPLBACKEND=Agg``) and without
progress bars. The kernel must be the interpreter running the tests, whatever kernelspecs
the machine has (a user-level "python3" could point at another environment): the test
writes a temporary "python3" kernelspec for ``sys.executable`` and puts it first on
``JUPYTER_PATH``; a first, injected cell checks the kernel's ``sys.prefix`` is ours.
Each notebook is executed once; one test checks that it ran, another that it kept a figure.
"""

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds; a smoke notebook takes well under a minute in total


def kernel_env():
    env = dict(os.environ)
    env.update(SRSAN_SMOKE="1", MPLBACKEND="Agg", TQDM_DISABLE="1")
    return env


@pytest.fixture(scope="module")
def run_notebook(tmp_path_factory):
    """``run_notebook(path) -> (executed notebook or None, error or None)``, once per notebook.

    The kernel is a "python3" kernelspec that starts ``sys.executable``, found before any
    other; each notebook runs in a fresh working directory.
    """
    root = tmp_path_factory.mktemp("notebooks")
    spec_dir = root / "jupyter" / "kernels" / "python3"
    spec_dir.mkdir(parents=True)
    spec = {
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (under test)",
        "language": "python",
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec))
    done = {}

    def run(path):
        if path not in done:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("JUPYTER_PATH", str(root / "jupyter"))
                done[path] = _execute(path, root / path.stem)
        return done[path]

    return run


def _execute(path, work):
    nb = nbformat.read(path, as_version=4)
    work.mkdir()
    same_python = nbformat.v4.new_code_cell(
        "import sys\n"
        f"assert sys.prefix == {sys.prefix!r}, "
        "f'the kernel runs {sys.executable}, not the interpreter under test'"
    )
    nb.cells.insert(0, same_python)
    client = nbclient.NotebookClient(
        nb,
        kernel_name="python3",
        timeout=CELL_TIMEOUT,
        allow_errors=False,
        resources={"metadata": {"path": str(work)}},  # the kernel's working directory
    )
    before = set(path.parent.iterdir())
    try:
        client.execute(env=kernel_env())
    except nbclient.exceptions.CellExecutionError as error:
        return None, f"{path.name} failed:\n{error}"
    written = sorted(p.name for p in set(path.parent.iterdir()) - before)
    return nb, f"{path.name} wrote {written} into notebooks/" if written else None


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, run_notebook):
    _, error = run_notebook(path)
    if error:
        pytest.fail(error, pytrace=False)


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_keeps_a_figure(path, run_notebook):
    """Executed headless (MPLBACKEND=Agg, as CI and nbconvert --execute do), the notebook
    still has an image output: a figure shown with plt.show() alone is lost there."""
    nb, error = run_notebook(path)
    if nb is None:
        pytest.fail(f"did not run: {error}", pytrace=False)
    images = [o for cell in nb.cells if cell.cell_type == "code"
              for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert images, f"{path.name}: no image output when executed headless"


def test_notebooks_exist():
    assert NOTEBOOKS, "no notebooks found in notebooks/"
