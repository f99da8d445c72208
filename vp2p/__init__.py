"""vp2p: Video-P2P — inflate, tune, invert and edit videos with cross-attention control, explained.

The stages, in the order a notebook meets them::

    pipe = vp2p.load_pipeline("toy")                  # or a local SD folder / hub id
    vp2p.inflate_unet(pipe.unet)                      # frame attention + zero temporal attention
    vp2p.tune(pipe, frames, source_prompt)            # model initialisation on the video
    inv = vp2p.invert(pipe, frames, source_prompt)    # DDIM inversion + shared null-text optimisation
    result = vp2p.edit(pipe, inv, [source_prompt, target_prompt], blend_words=["circle", "square"])
"""

import importlib

# The names below are imported on first use (PEP 562), not with the package: torch and diffusers take seconds to
# import, and ``vp2p --help`` (or a CLI error about a bad flag) should not wait for them.
_EXPORTS = {
    "EditResult": "editing", "edit": "editing", "make_controller": "editing",
    "inflate_unet": "inflation", "trainable_parameters": "inflation",
    "Inversion": "inversion", "invert": "inversion",
    "Pipeline": "io.loading", "load_pipeline": "io.loading",
    "TuneResult": "tuning", "load_tuned": "tuning", "save_tuned": "tuning", "tune": "tuning",
    "read_video": "io.video", "write_video": "io.video", "write_videos": "io.video",
}
# Modules that moved into the subpackages, still reachable under their old names (``from vp2p import viz``).
_MOVED = {"loading": "io", "video": "io", "storage": "io", "sd15": "io", "recorder": "inspect", "probes": "inspect",
          "viz": "inspect", "widgets": "course", "studio": "course", "build": "course", "exercises": "course",
          "metrics": "paper"}
__all__ = sorted(_EXPORTS)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"vp2p.{_EXPORTS[name]}"), name)
    else:  # a submodule used as an attribute (vp2p.workflow after `import vp2p`)
        try:
            value = importlib.import_module(f"vp2p.{_MOVED[name]}.{name}" if name in _MOVED else f"vp2p.{name}")
        except ModuleNotFoundError as error:
            if error.name != f"vp2p.{name}":
                raise
            raise AttributeError(f"module 'vp2p' has no attribute {name!r}") from None
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
