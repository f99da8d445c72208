import json
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import CLIPTokenizer

from vp2p.toy import evaluator, world
from vp2p.toy.tokenizer import apply_merges, build_merges, word_symbols, write_tokenizer


def test_render_is_deterministic_for_a_seed_and_differs_across_seeds():
    a, b = world.render(world.random_scene(3)), world.render(world.random_scene(3))
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks) and a.caption == b.caption
    c = world.render(world.random_scene(4))
    assert np.abs(a.frames.astype(int) - c.frames.astype(int)).mean() > 5


def test_frames_masks_and_caption_shapes():
    video = world.render(world.Scene("red", "square", "sand", "sliding", attribute="striped", seed=1),
                         num_frames=5, size=64)
    assert video.frames.shape == (5, 64, 64, 3) and video.frames.dtype == np.uint8
    assert video.masks.shape == (5, 64, 64) and video.masks.dtype == bool
    assert video.caption == "a red striped square sliding on the sand"
    assert world.Scene("orange", "star", "sky", seed=1).caption.startswith("an orange star")


def test_masks_cover_exactly_the_object_pixels():
    scene = world.Scene("blue", "circle", "sand", "bouncing", seed=2)
    video = world.render(scene)
    color = np.round(np.array(world.COLORS["blue"]) * video.appearance.shade)
    for frame, mask in zip(video.frames, video.masks):
        interior = mask[1:-1, 1:-1] & mask[:-2, 1:-1] & mask[2:, 1:-1] & mask[1:-1, :-2] & mask[1:-1, 2:]
        inside = np.abs(frame[1:-1, 1:-1][interior].astype(int) - color).max(axis=1)
        assert inside.max() <= 1  # away from the anti-aliased edge: exactly the object's color
        outside = np.abs(frame[~mask].astype(int) - color).max(axis=1)
        assert np.mean(outside <= 40) < 0.01  # outside: (almost) never the object's color
        radius = np.sqrt(mask.sum() / np.pi)
        assert 11.5 < radius < 15.5  # the sampled radius range


def test_objects_move_and_stay_inside_the_frame():
    for motion in world.MOTIONS:
        video = world.render(world.Scene("pink", "triangle", "water", motion, seed=5))
        centers = [np.argwhere(m).mean(0) for m in video.masks]
        assert max(np.linalg.norm(c - centers[0]) for c in centers) > 3, motion
        assert not video.masks[:, 0, :].any() and not video.masks[:, -1, :].any()
        assert not video.masks[:, :, 0].any() and not video.masks[:, :, -1].any()


def test_canonical_look_renders_the_first_world_and_sampled_looks_vary_across_scenes_not_frames():
    scene = world.Scene("green", "star", "sky", "sliding", attribute="striped", seed=11)
    canonical = world.render(scene.replace(appearance=world.CANONICAL), num_frames=3)
    assert canonical.appearance == world.CANONICAL
    # The first world's stripes: diagonal bands (u + v) of period 8 px, in the object's own frame.
    center = world.object_path(scene, 3, 64)[0][1]
    y, x = np.mgrid[0:64, 0:64] + 0.5
    diagonal = np.sin(2 * np.pi * ((x - center[0]) + (y - center[1])) / (8 * np.sqrt(2))) > 0
    assert np.array_equal(world.pattern_mask("striped", 64, tuple(center), world.CANONICAL) > 0, diagonal)

    looks = [world.random_scene(seed).look for seed in range(200)]
    angles = np.array([a.stripe_angle for a in looks])
    shades = np.array([a.shade for a in looks])
    assert angles.min() < 20 and angles.max() > 160 and np.histogram(angles, 4, (0, 180))[0].min() > 30
    assert shades.min() < world.SHADE_RANGE[0] + 0.02 and shades.max() > world.SHADE_RANGE[1] - 0.02
    stars = [a.rotation for s, a in zip(map(world.random_scene, range(200)), looks) if s.shape == "star"]
    assert max(stars) - min(stars) > 50  # of the ±36° sampled
    assert all(a.rotation == 0 for s, a in zip(map(world.random_scene, range(200)), looks)
               if s.shape in ("circle", "square"))

    # One look per video: the object's own color and, relative to its centre, its stripes are frame-independent.
    video = world.render(scene, num_frames=8)
    assert video.appearance == scene.look == world.sample_appearance(11, "star")
    centers, _ = world.object_path(scene, 8, 64)
    inner = [world.shape_coverage("star", 64, tuple(c), 14.0 * 0.6, rotation=video.appearance.rotation) > 0.99
             for c in centers]
    plain_colors = {tuple(f[m & (world.pattern_mask("striped", 64, tuple(c), video.appearance) == 0)].max(0))
                    for f, m, c in zip(video.frames, inner, centers)}
    assert len(plain_colors) == 1  # the same shade of green in every frame
    assert not np.array_equal(video.frames, world.render(scene.replace(appearance=world.CANONICAL)).frames)
    # A word swap keeps the look (the same seed samples the same values whatever the words).
    swapped = scene.replace(color="red", attribute="dotted").look
    assert (swapped.stripe_angle, swapped.dot_offset, swapped.shade) == (
        scene.look.stripe_angle, scene.look.dot_offset, scene.look.shade)


def test_appearance_rejects_values_outside_its_ranges():
    with pytest.raises(ValueError, match="shade=2"):
        world.Appearance(shade=2)
    with pytest.raises(ValueError, match="appearance="):
        world.Scene("red", "circle", "grass", appearance={"shade": 1.0})


def test_scene_rejects_words_outside_the_world():
    with pytest.raises(ValueError, match="color='teal'"):
        world.Scene("teal", "circle", "grass")


def test_night_darkens_every_pixel():
    day = world.render(world.Scene("white", "star", "grass", seed=9))
    night = world.render(world.Scene("white", "star", "grass", style="night", seed=9))
    assert night.frames.mean() < 0.6 * day.frames.mean()
    assert night.caption.endswith("at night")


@pytest.fixture(scope="module")
def toy_tokenizer(tmp_path_factory):
    return CLIPTokenizer.from_pretrained(write_tokenizer(list(world.VOCABULARY), tmp_path_factory.mktemp("tok")))


def test_every_toy_word_is_one_token_and_captions_tokenize_word_by_word(toy_tokenizer):
    for word in world.VOCABULARY:
        assert len(toy_tokenizer(word).input_ids) == 3, word
    caption = "a red striped circle bouncing on the grass at night"
    ids = toy_tokenizer(caption).input_ids
    assert len(ids) == len(caption.split()) + 2
    assert toy_tokenizer.convert_ids_to_tokens(ids[1:-1]) == [w + "</w>" for w in caption.split()]


def test_out_of_vocabulary_words_fall_back_to_characters(toy_tokenizer):
    ids = toy_tokenizer("origami rabbit").input_ids[1:-1]
    pieces = toy_tokenizer.convert_ids_to_tokens(ids)
    assert "".join(pieces).replace("</w>", "") == "origamirabbit"
    assert len(pieces) > 2 and toy_tokenizer.unk_token_id not in ids
    assert toy_tokenizer("Spider-Man").input_ids[1:-1]  # punctuation and capitals tokenize too


def test_merge_repair_makes_conflicting_words_single_tokens():
    words = ["tr", "str", "strip", "triangle", "striped"]  # prefix merges that fight each other
    ranks = {pair: i for i, pair in enumerate(build_merges(words))}
    for word in words:
        assert apply_merges(word_symbols(word), ranks) == ["".join(word_symbols(word))]


def test_word_mix_splices_at_the_attribute_and_leaves_other_captions_alone(toy_tokenizer):
    from vp2p.toy import train

    captions = ["a red striped circle bouncing on the grass", "a blue square sliding on the sand",
                "a pink dotted star circling in the sky"]
    ids = toy_tokenizer(captions, padding="max_length", max_length=77, return_tensors="pt").input_ids
    positions = train.attribute_positions(ids, toy_tokenizer)
    assert positions.tolist() == [3, -1, 3]

    # A stand-in encoder whose states say which token and which encoded row they came from.
    def encoder(x):
        return (torch.stack([x.float(), torch.arange(len(x))[:, None].float().expand_as(x)], -1),)

    out = train.mixed_conditioning(encoder, ids, positions, torch.tensor([1, 0, 2]))
    tokens = [toy_tokenizer.convert_ids_to_tokens(row[:9, 0].long().tolist()) for row in out]
    rows = out[..., 1].long()
    # keep: "striped" and everything before it from its caption (row 0), the rest from the plain twin (row 3)
    assert " ".join(t.removesuffix("</w>") for t in tokens[0][1:9]) == "a red striped circle bouncing on the grass"
    assert rows[0, :4].tolist() == [0] * 4 and (rows[0, 4:] == 3).all()
    # drop: the plain twin (row 4) up to where "dotted" was, then the dotted caption's later states (row 2)
    assert " ".join(t.removesuffix("</w>") for t in tokens[2][1:8]) == "a pink star circling in the sky"
    assert rows[2, :3].tolist() == [4] * 3 and (rows[2, 3:] == 2).all()
    assert torch.equal(out[1], encoder(ids)[0][1])


def test_word_mix_rate_zero_draws_nothing_and_plain_twins_differ_only_inside_the_object():
    from vp2p.toy import train

    gen = torch.Generator().manual_seed(0)
    state = gen.get_state()
    plan = train.plan_word_mix(torch.tensor([3, -1, 3]), torch.tensor([True, True, True]), 0.0, gen)
    assert plan.tolist() == [0, 0, 0] and torch.equal(gen.get_state(), state)  # the first stage's stream is kept
    plan = train.plan_word_mix(torch.full((400,), 3), torch.ones(400, dtype=torch.bool), 0.5, gen)
    assert 0.4 < (plan > 0).float().mean() < 0.6 and 0.4 < (plan[plan > 0] == 1).float().mean() < 0.6

    scene = next(s for s in map(train.training_scene, range(train.DATA_SEED, train.DATA_SEED + 50)) if s.attribute)
    patterned, plain = train.render_frame(scene), train.render_frame(scene.replace(attribute=None))
    changed = np.abs(patterned.frames.astype(int) - plain.frames).sum(-1) > 0
    assert np.array_equal(patterned.masks, plain.masks)
    near_object = evaluator.dilate(patterned.masks, 1)  # edge pixels the object only partly covers count too
    assert changed.any() and not changed[~near_object].any()


def test_a_tiny_training_run_lowers_the_diffusion_loss_and_exports_a_loadable_model(tmp_path):
    from diffusers import AutoencoderKL

    from vp2p.toy import train

    torch.manual_seed(0)
    vae = AutoencoderKL(**train.vae_config()).eval().requires_grad_(False)
    train.train_unet(tmp_path, vae, steps=40, data_count=64, batch=8, lr=2e-3, eval_every=10**9, log_every=10)
    log = [json.loads(line) for line in open(tmp_path / "unet_log.jsonl")]
    assert [row["step"] for row in log] == [10, 20, 30, 40]
    assert log[-1]["diffusion"] < 0.8 * log[0]["diffusion"]
    assert torch.load(tmp_path / "unet.pt", weights_only=False)["step"] == 40  # a checkpoint to resume from

    # The fine-tuning stage starts from that checkpoint, splices captions, and becomes what is exported.
    before = torch.load(tmp_path / "unet.pt", weights_only=False)["ema_unet"]["conv_in.weight"]
    train.train_unet(tmp_path, vae, steps=5, data_count=64, batch=8, name="finetune", init=tmp_path / "unet.pt",
                     word_mix=1.0, eval_every=10**9, log_every=5)
    tuned = torch.load(tmp_path / "finetune.pt", weights_only=False)
    assert tuned["step"] == 5
    assert 0 < (tuned["ema_unet"]["conv_in.weight"] - before).abs().max() < 0.01  # moved on from it, not restarted

    # ... which exports to a folder both loaders read, with the vocabulary files every transformers version reads.
    from diffusers import StableDiffusionPipeline

    unet, text_encoder, tokenizer, step = train.load_checkpoint(tmp_path)
    assert step == 5  # the latest stage
    train.export(tmp_path / "model", vae, text_encoder, tokenizer, unet)
    written = {f.name for f in (tmp_path / "model" / "tokenizer").iterdir()}
    assert {"vocab.json", "merges.txt", "tokenizer_config.json"} <= written
    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "model", safety_checker=None)
    prompt = "a red circle bouncing on the grass"
    assert pipe.tokenizer(prompt).input_ids == tokenizer(prompt).input_ids
    assert torch.equal(pipe.unet.conv_in.weight, unet.conv_in.weight)
    with pytest.raises(FileExistsError, match="--overwrite"):
        train.export(tmp_path / "model", vae, text_encoder, tokenizer, unet)


def test_the_object_channel_loss_is_the_shortfall_of_channel_0s_object_contrast():
    from vp2p.toy import train

    torch.manual_seed(0)
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[:, 16:32, 24:40] = True  # on latent cells 4:8 × 6:10, whole
    cover = torch.nn.functional.avg_pool2d(masks.float()[:, None], 4)[:, 0]
    mean = torch.randn(2, 4, 16, 16)
    mean[:, 0] = 0.0  # channel 0 flat: no contrast at all, the full margin is missing
    assert train.object_channel_loss(mean, masks, margin=2.0).item() == pytest.approx(2.0, abs=1e-6)
    std = mean.std()
    mean[:, 0] = 1.5 * std * cover  # 1.5 standard deviations brighter on the object (the std is held fixed)
    loss = train.object_channel_loss(mean, masks, margin=2.0).item()
    assert loss == pytest.approx(2.0 - 1.5 * std.item() / mean.std().item(), abs=1e-5)
    mean[:, 0] = 10 * std * cover  # far more than the margin: nothing asked
    assert train.object_channel_loss(mean, masks, margin=2.0).item() == 0.0


def test_the_color_separation_loss_is_the_shortfall_of_two_colors_distance_in_channels_1_to_3():
    from vp2p.toy import train

    torch.manual_seed(0)
    masks = torch.zeros(3, 64, 64, dtype=torch.bool)
    masks[:, 16:32, 24:40] = True  # on latent cells 4:8 × 6:10, whole
    cover = torch.nn.functional.avg_pool2d(masks.float()[:, None], 4)[:, 0].bool()
    mean = torch.randn(3, 4, 16, 16)
    std = mean.std()
    for frame, value in enumerate((0.0, 0.5, 3.0)):  # the objects' channels 1-3, in latent standard deviations
        mean[frame, 1:, cover[frame]] = value * std
    mean[:, 0, cover[0]] = 9.0  # channel 0 differs a lot but is not what tells colors apart
    std = mean.std()  # the loss's yardstick is the latents' std as they are now
    colors, plain = torch.tensor([0, 1, 2]), torch.tensor([True, True, True])
    loss = train.color_separation_loss(mean, masks, colors, plain, margin=2.0).item()
    first = mean[0, 1:, cover[0]].mean(1) / std
    second = mean[1, 1:, cover[1]].mean(1) / std
    third = mean[2, 1:, cover[2]].mean(1) / std
    distances = [torch.dist(first, second), torch.dist(first, third), torch.dist(second, third)]
    assert loss == pytest.approx(sum(max(0.0, 2.0 - d.item()) for d in distances) / 3, abs=1e-5)
    assert 0.2 < loss < 2.0
    # Same color, or a patterned / night object, is no pair: nothing is asked of it.
    assert train.color_separation_loss(mean, masks, torch.tensor([0, 0, 0]), plain).item() == 0.0
    assert train.color_separation_loss(mean, masks, colors, torch.tensor([True, False, False])).item() == 0.0
    # Far apart already: nothing asked.
    mean[1, 1:, cover[1]] = 40 * std
    mean[2, 1:, cover[2]] = -40 * std
    assert train.color_separation_loss(mean, masks, colors, plain, margin=2.0).item() == 0.0


def test_the_vae_stage_can_start_from_a_vae_and_give_every_color_a_shared_object_channel(tmp_path):
    from diffusers import AutoencoderKL

    from vp2p.io.loading import toy_model_path
    from vp2p.toy import train

    torch.set_num_threads(2)
    frames, masks, _ = train.render_frames(10_000_000, 32)
    x, masks = train.to_tensor(frames), torch.from_numpy(masks)

    def shortfall(vae):
        with torch.no_grad():
            return train.object_channel_loss(vae.encode(x).latent_dist.mean, masks).item()

    shipped = AutoencoderKL.from_pretrained(toy_model_path() / "vae").eval()
    tuned, report = train.train_vae(tmp_path, steps=12, batch=8, lr=3e-4, device="cpu", log_every=6,
                                    init=toy_model_path() / "vae", object_weight=1.0)
    before, after = shortfall(shipped), shortfall(tuned)
    assert after < 0.5 * before, (before, after)
    assert report["vae_psnr_db"] > 20  # started from the trained VAE, not from random weights (~12 dB)
    assert AutoencoderKL.from_pretrained(tmp_path / "vae").config.scaling_factor == report["scaling_factor"]


def test_the_vae_stage_pulls_apart_the_colors_the_object_channel_had_squeezed_together(tmp_path):
    from diffusers import AutoencoderKL

    from vp2p.toy import train

    candidate = Path(__file__).parents[1] / "models" / "toy-object-channel" / "vae"  # colors 1.5 units apart
    torch.set_num_threads(2)
    frames, masks, _ = train.render_frames(10_000_000, 64)
    x, masks = train.to_tensor(frames), torch.from_numpy(masks)
    colors, plain = train.frame_colors(10_000_000, 64)

    def shortfalls(vae):
        with torch.no_grad():
            mean = vae.encode(x).latent_dist.mean
            return (train.color_separation_loss(mean, masks, colors, plain).item(),
                    train.object_channel_loss(mean, masks).item())

    before = shortfalls(AutoencoderKL.from_pretrained(candidate).eval())
    tuned, report = train.train_vae(tmp_path, steps=12, batch=16, lr=3e-4, device="cpu", log_every=6,
                                    init=candidate, object_weight=1.0, color_weight=1.0)
    after = shortfalls(tuned)
    assert after[0] < 0.7 * before[0], (before, after)  # colors pulled apart on held-out frames
    assert after[1] < 0.2, (before, after)  # while every color still marks the object along channel 0
    assert report["vae_psnr_db"] > 20


def test_the_latent_anchor_loss_is_the_scaled_distance_of_channels_1_to_3_from_the_reference():
    from vp2p.toy import train

    torch.manual_seed(0)
    reference, scale = torch.randn(2, 4, 16, 16) * 3, 0.25
    mean = reference.clone()
    mean[:, 0] += 50  # channel 0 is free: it may become "an object here"
    expected = ((mean[:, 1:] / mean.std() - reference[:, 1:] * scale) ** 2).mean()
    assert train.latent_anchor_loss(mean, reference, scale).item() == pytest.approx(expected.item(), rel=1e-5)
    # The same latents in other raw units are the same scaled latents: nothing asked.
    assert train.latent_anchor_loss(7 * reference, reference, float(1 / reference.std())).item() < 1e-10


def test_the_vae_stage_can_hold_the_color_channels_to_the_vae_it_starts_from(tmp_path):
    from diffusers import AutoencoderKL

    from vp2p.io.loading import toy_model_path
    from vp2p.toy import train

    shipped_folder = toy_model_path() / "vae"
    shipped = AutoencoderKL.from_pretrained(shipped_folder).eval()
    torch.set_num_threads(2)
    frames, masks, _ = train.render_frames(10_000_000, 32)
    x, masks = train.to_tensor(frames), torch.from_numpy(masks)
    with torch.no_grad():
        held = shipped.encode(x).latent_dist.mean

    def shortfalls(vae):
        with torch.no_grad():
            mean = vae.encode(x).latent_dist.mean
            return (train.latent_anchor_loss(mean, held, shipped.config.scaling_factor).item(),
                    train.object_channel_loss(mean, masks).item())

    common = dict(steps=12, batch=8, lr=3e-4, device="cpu", log_every=6, init=shipped_folder, object_weight=1.0)
    free, _ = train.train_vae(tmp_path / "free", **common)
    held_to, report = train.train_vae(tmp_path / "anchored", **common, anchor_weight=10.0)
    (change_free, object_free), (change_held, object_held) = shortfalls(free), shortfalls(held_to)
    assert change_held < 0.6 * change_free, (change_free, change_held)  # channels 1-3 stay nearer the shipped VAE's
    assert object_held < 2 * object_free + 0.05, (object_free, object_held)  # channel 0 not held back much
    assert report["vae_psnr_db"] > 20
    with pytest.raises(ValueError, match="--vae-init"):
        train.train_vae(tmp_path / "none", steps=1, anchor_weight=1.0)


def test_the_decoder_stage_repairs_the_decoder_and_leaves_the_encoder_alone(tmp_path):
    from diffusers import AutoencoderKL

    from vp2p.io.loading import toy_model_path
    from vp2p.toy import train

    torch.manual_seed(0)
    vae = AutoencoderKL.from_pretrained(toy_model_path() / "vae").eval().requires_grad_(False)
    vae.decoder.conv_out.reset_parameters()  # a damaged decoder over a good encoder
    frames = train.to_tensor(train.render_frames(10_000_000, 16)[0])
    before = train.vae_psnr(vae, frames)
    tuned = train.train_decoder(tmp_path, vae, steps=20, batch=8, lr=1e-3, device="cpu", log_every=10)
    after = train.vae_psnr(tuned, frames)
    assert after > before + 3, (before, after)  # measured: 11.9 -> 16.8 dB
    # The encoder, hence every latent the UNet learned from, is bit for bit the same; the decoder moved.
    for (name, a), b in zip(vae.state_dict().items(), tuned.state_dict().values()):
        assert torch.equal(a, b) == name.startswith(("encoder.", "quant_conv.")), name
    # The stage is done once: called again it loads what it wrote instead of training anew.
    assert torch.load(tmp_path / "decoder.pt", weights_only=False)["step"] == 20
    again = train.train_decoder(tmp_path, vae, steps=20, device="cpu")
    assert all(torch.equal(a, b) for a, b in zip(tuned.state_dict().values(), again.state_dict().values()))
