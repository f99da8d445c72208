"""Sampling from noise with several prompts at once (vp2p.inspect.probes.generate_branches): prompt-to-prompt on
generated images, as notebook 00 shows it, on the tiny test model."""

import numpy as np
import pytest

from vp2p import make_controller
from vp2p.inspect import probes
from vp2p.inspect.recorder import AttentionRecorder

SOURCE = "a red circle bouncing on the grass"
TARGET = "a blue circle bouncing on the grass"
STEPS = 3


def test_branches_start_from_the_same_noise_and_do_not_see_each_other_without_a_controller(tiny_pipe):
    pair = probes.generate_branches(tiny_pipe, [SOURCE, TARGET], num_frames=2, num_steps=STEPS, seed=3)
    alone = probes.generate(tiny_pipe, SOURCE, num_frames=2, num_steps=STEPS, seed=3)
    assert pair.shape == (2, 2, 32, 32, 3) and pair.dtype == np.uint8
    assert np.abs(pair[0].astype(int) - alone.astype(int)).max() <= 1  # batching changes rounding only
    same = probes.generate_branches(tiny_pipe, [SOURCE, SOURCE], num_frames=1, num_steps=STEPS, seed=3)
    assert np.abs(same[0].astype(int) - same[1].astype(int)).max() <= 1
    assert np.abs(pair[0].astype(int) - pair[1].astype(int)).mean() > 0.5  # another prompt, another image


@pytest.mark.parametrize("fraction", [1.0, 0.0])
def test_a_controller_hands_the_source_maps_to_the_target_for_the_steps_it_is_told(tiny_pipe, fraction):
    recorder = AttentionRecorder(make_controller(tiny_pipe, [SOURCE, TARGET], STEPS, cross_replace_steps=fraction),
                                 kinds=("cross",))
    probes.generate_branches(tiny_pipe, [SOURCE, TARGET], num_steps=STEPS, controller=recorder)
    assert recorder.recorded_steps() == list(range(STEPS))  # started by generate_branches, stepped every step
    gap = (recorder.cross_maps(step=0, branch=1) - recorder.cross_maps(step=0, branch=0)).abs().max()
    assert (gap < 1e-3) if fraction == 1.0 else (gap > 1e-3)


def test_generate_branches_wants_a_list_of_prompts(tiny_pipe):
    with pytest.raises(ValueError, match="give a list of prompts, one per branch"):
        probes.generate_branches(tiny_pipe, SOURCE)
    with pytest.raises(ValueError, match="give a list of prompts"):
        probes.generate_branches(tiny_pipe, [])
