"""The paper's two tables, reproduced on the toy world, where the ground truth is known.

Video-P2P (CVPR 2024) makes its claims in two tables:

* **Table 1** (45 DAVIS clips): CLIP score, masked PSNR, LPIPS, Object Semantic Variance (OSV) and Temp for two
  baselines (TAV+DDIM: a tuned video model, DDIM inversion, the target prompt alone; Image-P2P: prompt-to-prompt
  with the image model, frame by frame), three ablations (w/o MI: no tuning; w/o DG: no decoupled guidance; w/o
  SU: one null embedding per frame instead of one shared) and Video-P2P itself.
* **Table 2**: reconstruction PSNR of DDIM, per-frame and shared null-text inversion, with the VAE's own round
  trip as the upper bound, and how many numbers each inversion optimises.

Here every row is data — a ``Row`` says which model (the inflated video model with its options, tuned or not, or
the image model), which inversion and which edit options — and ``run_paper`` runs them (Table 1's six by default,
``ROWS`` for all eleven) on held-out toy videos (color swaps, shape swaps and refinements, as ``vp2p toy-bench``).
The evaluator reads every edit back from pixels, so each paper metric has a toy counterpart that needs no weights
(``vp2p.paper.metrics``); the CLIP-based ones and LPIPS are computed too when their weights are given, and said to be
skipped otherwise.

What is shared: rows with the same ``Model`` share the tuned weights of a video (one folder per model and video,
``vp2p.workflow.tune_stage``), rows with the same model and inversion method share the inversion (one file in
that folder, ``vp2p.workflow.invert_stage``), and every row's scores are kept beside them, so an interrupted run
resumes where it stopped. ``check_bars`` turns a finished ``tables.json`` into verdicts on the paper's claims.

``tables.json`` holds: ``table1`` (row name → the mean of each metric over the row's edits, None where not
measured; ``edits``, ``by_kind``, the paper's numbers as ``paper``, the row's ``spec``), ``table2`` (inversion →
``psnr``, ``parameters``, ``paper``), ``bars`` (the verdicts), ``clips`` (each clip's caption, edits, Table 2
scores and every row's scores, edit by edit), ``metrics`` (whether the CLIP and LPIPS metrics were computed, and
why not), the run's ``settings``, ``videos``, ``frames``, ``size``, ``machine``, ``work`` (what was computed, not
loaded, and how long it took) and ``seconds``. ``tables.md`` is the same as markdown (``markdown(tables)``).
"""

from vp2p.paper.rows import *  # noqa: F401,F403  (``vp2p.paper.X`` for every name of the three parts)
from vp2p.paper.run import *  # noqa: F401,F403
from vp2p.paper.report import *  # noqa: F401,F403
