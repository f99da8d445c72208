"""vp2p: Video-P2P — inflate, tune, invert and edit videos with cross-attention control, explained.

The stages, in the order a notebook meets them::

    pipe = vp2p.load_pipeline("toy")                  # or a local SD folder / hub id
    vp2p.inflate_unet(pipe.unet)                      # frame attention + zero temporal attention
    vp2p.tune(pipe, frames, source_prompt)            # model initialisation on the video
    inv = vp2p.invert(pipe, frames, source_prompt)    # DDIM inversion + shared null-text optimisation
    result = vp2p.edit(pipe, inv, [source_prompt, target_prompt], blend_words=["circle", "square"])
"""

from vp2p.editing import EditResult, edit, make_controller
from vp2p.inflation import inflate_unet, trainable_parameters
from vp2p.inversion import Inversion, invert
from vp2p.loading import Pipeline, load_pipeline
from vp2p.tuning import TuneResult, load_tuned, save_tuned, tune
from vp2p.video import read_video, write_video, write_videos

__all__ = [
    "EditResult", "Inversion", "Pipeline", "TuneResult", "edit", "inflate_unet", "invert", "load_pipeline", "load_tuned",
    "make_controller", "read_video", "save_tuned", "trainable_parameters", "tune", "write_video", "write_videos",
]
__version__ = "0.1.0"
