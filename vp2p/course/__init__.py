"""The course around the method: the course clip and where its outputs go (``vp2p.course`` re-exports them), the
notebook widgets, the studio app, the notebook build, the exercises, and the T4 time estimates."""

from vp2p.course import estimates  # noqa: F401
from vp2p.course.clip import *  # noqa: F401,F403
from vp2p.course.clip import FIGURES_VARIABLE  # noqa: F401
