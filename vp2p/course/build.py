"""``vp2p course --build``: run the course notebooks in place, so that the repository shows their outputs.

The notebooks are committed without outputs while they change, and the test run executes them in a temporary
folder (nbmake), so nothing visible lands in the repository by accident. This one explicit command executes each
notebook top to bottom with nbclient — a fresh kernel per notebook, started in the notebook's folder as Jupyter
does, on the toy model (the notebooks' choice without a GPU) — and saves the outputs into the ``.ipynb``. The
figures the notebooks save go to the repository's ``figures/`` (the kernel gets ``VP2P_COURSE_FIGURES``); tuned
weights and inversions stay in the user cache (``vp2p.course.runs_dir()``), so a second build reuses them.

Inline figures are drawn at ``DPI`` dots per inch (matplotlib's default is 100) at the sizes the notebooks choose,
which keeps the executed notebooks small. A notebook whose run fails is left as it was.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from vp2p.course import FIGURES_VARIABLE
from vp2p.io.storage import write_text

DPI = 60  # inline figures: a 10-inch-wide attention grid is 600 pixels wide
CELL_TIMEOUT = 1200  # seconds per cell, as the test run's nbmake
# The course's notebooks: a number, perhaps a letter (04b follows 04), then a name; the studio is not one of them.
COURSE_GLOB = "[0-9][0-9]*_*.ipynb"


def repository_root() -> Path:
    """The source checkout vp2p is installed from (editable); its notebooks/ and figures/ are built in place."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "notebooks").is_dir():
        raise FileNotFoundError(f"no notebooks/ beside the vp2p package at {root}: building the course needs a "
                                "source checkout installed with `pip install -e .`; or pass the notebooks to build")
    return root


def course_notebooks(root: Path) -> list[Path]:
    return sorted((root / "notebooks").glob(COURSE_GLOB))


def build(notebooks=None, figures=None, dpi: int = DPI, timeout: int = CELL_TIMEOUT) -> list[Path]:
    """Execute ``notebooks`` (default: the repository's numbered notebooks) in place, in order, with their figures
    saved into ``figures`` (default: the repository's figures/). Returns the notebooks built."""
    if isinstance(dpi, bool) or not isinstance(dpi, int) or dpi < 10:
        raise ValueError(f"dpi={dpi!r} must be a whole number of at least 10, e.g. {DPI}")
    paths = [Path(p).expanduser() for p in notebooks] if notebooks else course_notebooks(repository_root())
    for path in paths:
        if path.suffix != ".ipynb" or not path.is_file():
            raise FileNotFoundError(f"{path} is not a notebook file (.ipynb); pass the .ipynb, not its .py twin")
    figures = Path(figures).expanduser() if figures else repository_root() / "figures"
    for path in paths:
        start = time.perf_counter()
        execute_in_place(path, figures, dpi, timeout)
        print(f"built {path} in {time.perf_counter() - start:.0f} s")
    return paths


def execute_in_place(path: Path, figures: Path, dpi: int = DPI, timeout: int = CELL_TIMEOUT) -> None:
    """Run one notebook in a fresh kernel started in its folder; write it back with its outputs only if every cell
    ran."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=timeout, kernel_name=notebook.metadata.get("kernelspec", {}).get(
        "name", "python3"), record_timing=False, resources={"metadata": {"path": str(path.parent)}})
    with tempfile.TemporaryDirectory() as settings:  # a matplotlibrc for the kernel alone: the inline figures' dpi
        Path(settings, "matplotlibrc").write_text(f"figure.dpi: {dpi}\n")
        env = {**os.environ, FIGURES_VARIABLE: str(figures.resolve()), "MATPLOTLIBRC": settings}
        try:
            client.execute(env=env)
        except CellExecutionError as error:
            raise RuntimeError(f"{path} stopped at a cell that raised {error.ename}: {error.evalue}; the notebook "
                               "was left as it was") from error
    write_text(path, nbformat.writes(notebook) + "\n")
