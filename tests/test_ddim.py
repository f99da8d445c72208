import pytest
import torch

from tiny import smooth_latents
from vp2p import load_pipeline
from vp2p.ddim import DDIMSchedule, ddim_inverse_step, ddim_step, guide, split_prediction
from vp2p.inflation import inflate_unet
from vp2p.inversion import ddim_invert
from vp2p.sampling import sample


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_split_prediction_inverts_the_forward_process(prediction_type):
    torch.manual_seed(0)
    x0, eps, alpha = torch.randn(3, 4), torch.randn(3, 4), 0.37
    xt = alpha**0.5 * x0 + (1 - alpha) ** 0.5 * eps
    output = eps if prediction_type == "epsilon" else alpha**0.5 * eps - (1 - alpha) ** 0.5 * x0
    got_x0, got_eps = split_prediction(output, xt, alpha, prediction_type)
    assert torch.allclose(got_x0, x0, atol=1e-5) and torch.allclose(got_eps, eps, atol=1e-5)


def test_step_and_inverse_step_undo_each_other_for_a_fixed_prediction():
    from diffusers import DDIMScheduler

    schedule = DDIMSchedule.from_scheduler(DDIMScheduler(clip_sample=False, set_alpha_to_one=False), 50)
    x, out = torch.randn(2, 4, 8, 8), torch.randn(2, 4, 8, 8)
    t = schedule.timesteps[10]
    back = ddim_step(out, t, ddim_inverse_step(out, t, x, schedule), schedule)
    assert torch.allclose(back, x, atol=1e-4)
    assert torch.equal(guide(torch.zeros(1), torch.ones(1), 7.5), torch.tensor([7.5]))


@pytest.mark.parametrize("fixture", ["tiny_model_dir", "tiny_v_model_dir"])
def test_ddim_inversion_then_sampling_at_guidance_1_returns_to_the_latents(fixture, request):
    pipe = load_pipeline(request.getfixturevalue(fixture), device="cpu", dtype=torch.float32)
    inflate_unet(pipe.unet)
    z0 = smooth_latents(4, generator=torch.Generator().manual_seed(0))
    cond = pipe.encode_text("a red circle")
    schedule = DDIMSchedule.from_scheduler(pipe.scheduler, 50)
    trajectory = ddim_invert(pipe.unet, z0, cond, schedule, num_frames=4, progress=False)
    back = sample(pipe.unet, trajectory[-1], schedule, cond, lambda i: cond, torch.tensor([1.0]), 4, progress=False)
    relative = ((back - z0).norm() / z0.norm()).item()
    assert relative < 0.1, relative
    assert trajectory[-1].std() > 0.8  # it really went to noise and back
    elsewhere = sample(pipe.unet, torch.randn_like(z0), schedule, cond, lambda i: cond, torch.tensor([1.0]), 4,
                       progress=False)
    assert ((elsewhere - z0).norm() / z0.norm()).item() > 10 * relative  # other noise lands far away


def test_schedule_rejects_zero_steps(tiny_pipe):
    with pytest.raises(ValueError, match="at least one step"):
        DDIMSchedule.from_scheduler(tiny_pipe.scheduler, 0)


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_ddim_step_equals_diffusers_ddim_scheduler_at_every_timestep(prediction_type):
    from diffusers import DDIMScheduler

    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1, prediction_type=prediction_type)
    schedule = DDIMSchedule.from_scheduler(scheduler, 50)
    assert schedule.timesteps == [int(t) for t in scheduler.timesteps]
    g = torch.Generator().manual_seed(0)
    for t in schedule.timesteps:
        sample_, output = torch.randn(2, 4, 8, 8, generator=g), torch.randn(2, 4, 8, 8, generator=g)
        theirs = scheduler.step(output, t, sample_, eta=0.0).prev_sample
        assert torch.allclose(ddim_step(output, t, sample_, schedule), theirs, atol=1e-5, rtol=1e-5), t
