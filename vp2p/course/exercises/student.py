"""The student versions of the notebooks (``vp2p course --student DIR``): solution regions become
``raise NotImplementedError(hint)``, outputs are cleared."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

from vp2p.course.build import COURSE_GLOB
from vp2p.course.exercises.common import BEGIN_SOLUTION, END_SOLUTION
from vp2p.course.exercises.registry import EXERCISES

# -- the student versions ------------------------------------------------------------------------------------------


def replace_solutions(source: str, replacement: str) -> str:
    """``source`` with every region from ``### BEGIN SOLUTION`` to ``### END SOLUTION`` (markers included)
    replaced by ``replacement``, indented like the BEGIN marker."""
    lines, inside, start = [], False, 0
    for number, line in enumerate(source.splitlines(), 1):
        marker = line.strip()
        if marker == BEGIN_SOLUTION:
            if inside:
                raise ValueError(f"line {number}: {BEGIN_SOLUTION} inside the region opened on line {start}")
            inside, start = True, number
            indent = line[: len(line) - len(line.lstrip())]
            lines += [indent + text for text in replacement.splitlines()]
        elif marker == END_SOLUTION:
            if not inside:
                raise ValueError(f"line {number}: {END_SOLUTION} without a {BEGIN_SOLUTION}")
            inside = False
        elif not inside:
            lines.append(line)
    if inside:
        raise ValueError(f"the {BEGIN_SOLUTION} of line {start} is never closed by {END_SOLUTION}")
    return "\n".join(lines)


def cell_source(cell: dict) -> str:
    return "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]


STUDENT_FOLDER = "student"  # notebooks/student/: the student versions in the repository, kept in sync by a test
# The teacher notebooks' note on their solutions, and what the student versions say instead.
TEACHER_NOTE = re.compile(r"\(The notebook in the repository holds (?:a solution|solutions) between "
                          r"`### BEGIN SOLUTION` and `### END SOLUTION`;.*?`raise NotImplementedError`\.\)", re.S)
STUDENT_NOTE = ("(Each exercise cell below stops at `raise NotImplementedError(...)` with a hint: replace that line\n"
                "with your code, then run the cell after it, which checks your function against vp2p's own and "
                "says\nwhat is wrong.)")
BADGE = re.compile(r"(colab\.research\.google\.com/github/[^)\s]+/notebooks/)(\d\d[a-z]?_[\w-]+\.ipynb)")


def student_markdown(source: str) -> str:
    """A markdown cell for students: the note on solutions rewritten, the Colab badge opening the student version."""
    return BADGE.sub(rf"\g<1>{STUDENT_FOLDER}/\g<2>", TEACHER_NOTE.sub(STUDENT_NOTE, source))


def student_notebook(notebook: dict) -> dict:
    """The student version of a notebook (ipynb JSON): solutions replaced by hints, outputs and the saved widget
    state cleared (a run's progress bars and panels, hundreds of KB a notebook), the note on solutions and the
    Colab badge rewritten for the student version."""
    notebook = copy.deepcopy(notebook)
    notebook.get("metadata", {}).pop("widgets", None)
    for cell in notebook["cells"]:
        source = cell_source(cell)
        if cell["cell_type"] == "markdown":
            source = student_markdown(source)
        grading = cell.get("metadata", {}).get("nbgrader", {})
        if grading.get("solution") and cell["cell_type"] == "code":
            exercise = EXERCISES.get(grading.get("grade_id"))
            if exercise is None:
                raise ValueError(f"solution cell {grading.get('grade_id')!r} is not an exercise of vp2p.course.exercises; "
                                 f"add it to EXERCISES (known: {sorted(EXERCISES)})")
            source = replace_solutions(source, f"raise NotImplementedError({exercise.hint!r})")
        elif cell["cell_type"] == "code" and BEGIN_SOLUTION in source:
            raise ValueError(f"a {BEGIN_SOLUTION} region outside a solution cell: mark the cell with nbgrader "
                             f"metadata (solution: true, grade_id) — it begins {source[:60]!r}")
        cell["source"] = source.splitlines(keepends=True)
        if cell["cell_type"] == "code":
            cell["outputs"], cell["execution_count"] = [], None
        cell.get("metadata", {}).pop("execution", None)  # run timings left by nbclient
    return notebook


def teacher_notebooks_dir() -> Path:
    """The repository's notebooks/ (the teacher versions), next to the vp2p package in a clone."""
    return Path(__file__).resolve().parents[3] / "notebooks"


def export_student(folder, notebooks=None, overwrite: bool = False) -> list[Path]:
    """Write the student versions of the numbered notebooks into ``folder``: .ipynb, and the jupytext .py twin
    when jupytext is installed. Refuses a non-empty ``folder`` unless ``overwrite``, and never writes into the
    teacher notebooks' folder."""
    source = Path(notebooks) if notebooks is not None else teacher_notebooks_dir()
    paths = sorted(source.glob(COURSE_GLOB))
    if not paths:
        raise FileNotFoundError(f"no course notebooks (NN_name.ipynb) in {source}; run from a clone of the vp2p "
                                "repository or pass the notebooks folder")
    folder = Path(folder)
    inside = folder.resolve() == source.resolve() or source.resolve() in folder.resolve().parents
    if inside and folder.resolve() != (source / STUDENT_FOLDER).resolve():
        raise ValueError(f"{folder} is in the teacher notebooks' folder {source}: the student versions would replace "
                         f"or sit among them (and run in CI). Choose a folder outside it, or its {STUDENT_FOLDER}/ "
                         "(the repository's student versions, which CI does not run).")
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder} is a file; choose a folder for the student notebooks")
    if folder.exists() and any(folder.iterdir()) and not overwrite:
        raise FileExistsError(f"{folder} is not empty; choose an empty folder or pass --overwrite "
                              "to replace the student notebooks in it")
    texts = {}  # every file's text first: a notebook that does not convert leaves nothing half-written
    for path in paths:
        text = json.dumps(student_notebook(json.loads(path.read_text(encoding="utf-8"))), indent=1,
                          ensure_ascii=False) + "\n"
        texts[path.name] = text
        twin = py_twin(text)
        if twin is not None:
            texts[path.with_suffix(".py").name] = twin
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in texts.items():
        (folder / name).write_text(text, encoding="utf-8")
    return [folder / name for name in texts]


def py_twin(ipynb_text: str) -> str | None:
    """The jupytext percent-format twin of a notebook (None when jupytext is not installed)."""
    try:
        import jupytext
    except ImportError:
        return None
    return jupytext.writes(jupytext.reads(ipynb_text, fmt="ipynb"), fmt="py:percent")
