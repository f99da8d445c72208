import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never touch the network
# Under pytest-xdist (the README's command runs 2 workers) each worker gets one core.
torch.set_num_threads(int(os.environ.get("VP2P_TEST_THREADS", "1" if "PYTEST_XDIST_WORKER" in os.environ else "2")))
if "PYTEST_XDIST_WORKER" in os.environ:  # the kernels nbmake starts for the notebooks inherit this: one core each too
    os.environ.setdefault("OMP_NUM_THREADS", "1")

# The notebooks (run by nbmake, in kernels that inherit this environment) and vp2p.course write their figures and
# caches below VP2P_COURSE_OUTPUT: one temporary folder for the whole run, never the repository's figures/ or runs/.
# The xdist workers inherit the folder the controller made (and share its caches); the controller removes it.
COURSE_OUTPUT = None
if "PYTEST_XDIST_WORKER" not in os.environ:
    COURSE_OUTPUT = os.environ["VP2P_COURSE_OUTPUT"] = tempfile.mkdtemp(prefix="vp2p-test-course-")
    os.environ.pop("VP2P_COURSE_FIGURES", None)

from tiny import write_tiny_model  # noqa: E402


def pytest_unconfigure(config):
    if COURSE_OUTPUT is not None:
        shutil.rmtree(COURSE_OUTPUT, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny_sd"))


@pytest.fixture(scope="session")
def tiny_v_model_dir(tmp_path_factory):
    return write_tiny_model(tmp_path_factory.mktemp("tiny_sd_v"), prediction_type="v_prediction")


@pytest.fixture
def tiny_pipe(tiny_model_dir):
    """A fresh (2-D, not inflated) tiny pipeline on the CPU in fp32."""
    from vp2p import load_pipeline

    return load_pipeline(tiny_model_dir, device="cpu", dtype=torch.float32)


@pytest.fixture(scope="session")
def sd15_tiny_dir(tmp_path_factory):
    """Stable Diffusion 1.5's architecture scaled down (``vp2p.io.sd15.configs(tiny=True)``), random weights, saved
    with save_pretrained: what the notebooks' Stable Diffusion branch loads in the tests (``$VP2P_MODEL``)."""
    from vp2p.io.sd15 import write_random
    from vp2p.toy.tokenizer import clip_bpe_path

    if clip_bpe_path() is None:
        pytest.skip("CLIP's BPE table is missing: `pip install --no-deps open_clip_torch` (the README's test command)")
    return write_random(tmp_path_factory.mktemp("sd15_tiny"), tiny=True)
