"""The course's exercises: checks that compare a student's function with vp2p's own, and the student export.

Every numbered notebook ends with an *Exercises* section written in nbgrader's conventions:

* a read-only setup cell (imports only: the section needs nothing the notebook computed above it);
* per exercise, a **solution cell** (cell metadata ``nbgrader.solution``, ``grade_id`` = the exercise's name) where
  the function's body sits between ``### BEGIN SOLUTION`` and ``### END SOLUTION`` — the repository keeps the
  teacher version, with a solution written out;
* a **check cell** (``nbgrader.grade``, ``grade_id`` = ``check_<name>``): ``exercises.check("<name>", function)``
  runs the function and vp2p's counterpart on small synthetic inputs (random tensors of several shapes, the toy
  tokenizer, a tiny stand-in UNet), and when they disagree raises ``ExerciseFailed`` with a hint that names what is
  wrong — the shape, a scale, which frame, a step off by one, a transposed mapper…

``export_student(folder)`` (the command ``vp2p course --student DIR``) writes the student versions of the notebooks:
every solution region becomes ``raise NotImplementedError("<one-line hint>")`` (signature and docstring stay), and
the outputs are cleared.

How a hint is found: most checks try the known mistakes of an exercise — computed, where possible, by vp2p's own
function on altered inputs (the inverse mapper, alphas flipped, a schedule one step off) — and name the one the
student's answer matches; otherwise a generic comparison says what differs (shape, sign, a constant factor, how
many values).

One file per notebook holds that notebook's checks (``inflation``, ``tuning``, ``inversion``, ``word_swap``,
``refinement``, ``reweighting``, ``paper``), beside ``common`` (what the checks share), ``registry`` (``EXERCISES``,
``check``) and ``student`` (the export).

After a check passes, the student's function runs in the real pipeline: ``use(blend_mask=blend_mask)`` swaps it in
for vp2p's step (``vp2p.seams``), ``run_both(blend_mask=blend_mask)`` edits the course clip with vp2p's and with
theirs, side by side (``plug``). ``breaking`` holds the break-its: the same short edit with one piece of the method
broken (keys from frame i, keys and values tuned, a null embedding per frame, coupled guidance), measured.
"""

from vp2p.course.exercises import breaking
from vp2p.course.exercises.common import BEGIN_SOLUTION, END_SOLUTION, Case, ExerciseFailed, TinyDenoiser
from vp2p.course.exercises.plug import Comparison, lab, run_both, use
from vp2p.course.exercises.registry import EXERCISES, Exercise, check
from vp2p.course.exercises.student import (STUDENT_FOLDER, cell_source, export_student, py_twin, replace_solutions,
                                           student_markdown, student_notebook, teacher_notebooks_dir)

__all__ = ["BEGIN_SOLUTION", "END_SOLUTION", "EXERCISES", "STUDENT_FOLDER", "Case", "Comparison", "Exercise",
           "ExerciseFailed", "TinyDenoiser", "breaking", "cell_source", "check", "export_student", "lab", "py_twin",
           "replace_solutions", "run_both", "student_markdown", "student_notebook", "teacher_notebooks_dir", "use"]
