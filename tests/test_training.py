"""MotionLoRA training, pure torch (training/): the loop lowers the loss deterministically, touches only LoRA
parameters, resumes exactly, saves the published layout, and refuses bad input with a fix. No ComfyUI."""
import copy
import math

import pytest
import torch

from motionkit.training import checkpoint
from motionkit.training.clips import match_captions, split_clips
from motionkit.training.errors import NonFiniteLossError, TrainingError
from torch.nn.utils import parametrize

from motionkit.training.lora import MotionLoRALayers, WeightDelta
from motionkit.training.loop import TrainSettings, evaluate, train
from motionkit.training.objective import draw_sigmas, prediction_loss
from training_helpers import EpsSampling, TinyUNet, denoiser, moving_clip, tiny_motion_model

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: tiny matrices run fastest on one thread

FRAMES = 8


class Setup:
    def __init__(self, rank=4, lora_seed=0, clips=None):
        self.motion = tiny_motion_model()
        self.unet = TinyUNet(self.motion)
        self.sampling = EpsSampling()
        self.clips = clips if clips is not None else moving_clip(FRAMES)[None].repeat(2, 1, 1, 1, 1)
        self.context = torch.randn(1, 3, 16, generator=torch.Generator().manual_seed(5))
        self.empty = torch.randn(1, 3, 16, generator=torch.Generator().manual_seed(6))  # the "" caption
        self.lora = MotionLoRALayers(self.motion, rank, torch.Generator().manual_seed(lora_seed))
        self.denoise = denoiser(self.unet, self.sampling, self.clips.shape[1])

    def loss(self, batch):
        # a dropped caption (caption_dropout) is the empty caption for all frames of that clip
        context = torch.cat([(self.empty if d else self.context).expand(batch.frames, -1, -1) for d in batch.dropped])
        return prediction_loss(self.sampling, self.denoise, batch.x0, batch.noise, batch.sigma, context)

    def sigmas(self, n, g):
        return draw_sigmas(self.sampling, n, g)

    def train(self, steps, seed=0, start_step=0, optimizer_state=None, lr=1e-2, **kw):
        settings = TrainSettings(steps=steps, learning_rate=lr, seed=seed, clips_per_step=1, **kw)
        with self.lora.attached(self.motion):
            return train(self.lora.trainable(), self.clips, self.loss, settings, self.sigmas,
                         start_step=start_step, optimizer_state=optimizer_state)

    def eval(self):
        with self.lora.attached(self.motion):
            return evaluate(self.clips, self.loss, self.sigmas, seed=99, draws=6)


def test_training_lowers_the_loss_deterministically_per_seed():
    a = Setup()
    before = a.eval()
    a.train(10, seed=3)
    after = a.eval()
    assert after < 0.5 * before, (before, after)   # a clear margin on fixed noises/timesteps

    b = Setup()
    b.train(10, seed=3)
    for x, y in zip(a.lora.trainable(), b.lora.trainable()):
        assert torch.equal(x, y)                   # same seed: bit for bit the same LoRA
    c, d = Setup(), Setup()
    c.train(2, seed=4)
    d.train(2, seed=3)
    assert not all(torch.equal(x, y) for x, y in zip(d.lora.trainable(), c.lora.trainable()))


def test_only_lora_parameters_change_and_the_adapters_are_removed():
    s = Setup()
    motion_before = copy.deepcopy(s.motion.state_dict())
    unet_before = {k: v.clone() for k, v in s.unet.state_dict().items() if not k.startswith("motion_model.")}
    lora_before = [p.clone() for p in s.lora.trainable()]
    s.train(5)
    for key, value in s.motion.state_dict().items():
        assert torch.equal(value, motion_before[key]), key
        assert value.grad is None
    for key, value in unet_before.items():
        assert torch.equal(s.unet.state_dict()[key], value), key
    assert not any(p.requires_grad for p in s.motion.parameters())
    assert not any(parametrize.is_parametrized(m) for m in s.motion.modules())
    assert not any(isinstance(m, WeightDelta) for m in s.motion.modules())
    assert any(not torch.equal(a, b) for a, b in zip(lora_before, s.lora.trainable()))
    # up starts at zero: before training the LoRA computes exactly the base model
    fresh = Setup()
    x = torch.randn(2 * FRAMES, 32, 4, 4)
    module = fresh.motion.down_blocks[0].motion_modules[0]
    base = module(x, FRAMES)
    with fresh.lora.attached(fresh.motion):
        assert torch.equal(module(x, FRAMES), base)


def test_lora_adapter_equals_weight_patch():
    """What training computes (weight adapters) is the published rule W + up @ down (what Load MotionLoRA patches in)."""
    s = Setup()
    with torch.no_grad():
        for p in s.lora.up:
            p.normal_(0, 0.05)
    x = torch.randn(2 * FRAMES, 64, 2, 2)
    module = s.motion.up_blocks[0].motion_modules[1]
    with s.lora.attached(s.motion):
        adapted = module(x, FRAMES)
    patched = copy.deepcopy(s.motion)
    sd = s.lora.state_dict_published()
    params = dict(patched.named_parameters())
    for name, path in s.lora.targets.items():
        params[path + ".weight"].data += sd[f"{name}_lora.up.weight"] @ sd[f"{name}_lora.down.weight"]
    direct = patched.up_blocks[0].motion_modules[1](x, FRAMES)
    torch.testing.assert_close(adapted, direct, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(adapted, module(x, FRAMES))


@pytest.mark.parametrize("caption_dropout", [0.0, 0.5])
def test_resume_continues_exactly(tmp_path, caption_dropout):
    whole = Setup()
    whole.train(4, seed=2, caption_dropout=caption_dropout)
    first = Setup()
    result = first.train(2, seed=2, caption_dropout=caption_dropout)
    path = tmp_path / "resume.safetensors"
    checkpoint.save(str(path), first.lora.state_dict_published(), checkpoint.Metadata(step=result.step, rank=4,
                    base="SD1.5", family="tiny", motion_model="tiny"), optimizer_state=result.optimizer_state)
    second = Setup(lora_seed=7)  # another init: resuming must overwrite it
    saved = checkpoint.load(str(path))
    second.lora.load_published(saved.weights, "resume.safetensors")
    assert saved.metadata.step == 2
    second.train(2, seed=2, start_step=saved.metadata.step, optimizer_state=saved.optimizer_state,
                 caption_dropout=caption_dropout)
    for x, y in zip(whole.lora.trainable(), second.lora.trainable()):
        torch.testing.assert_close(x, y, rtol=0, atol=1e-7)


def test_caption_dropout_is_seeded_and_leaves_the_other_draws_as_they_were():
    """AnimateDiff's cfg_random_null_text: each clip drops its caption with probability p, per step; the draw comes
    from the step's (seed, step) generator after the clips, noise and σ, which stay exactly what they were without it."""
    from motionkit.training.loop import draw_batch, step_generator

    s = Setup(clips=torch.randn(6, FRAMES, 4, 8, 8, generator=torch.Generator().manual_seed(1)))
    drops = []
    for step in range(300):
        plain = draw_batch(s.clips, 3, step_generator(4, step), s.sigmas)
        a = draw_batch(s.clips, 3, step_generator(4, step), s.sigmas, caption_dropout=0.1)
        b = draw_batch(s.clips, 3, step_generator(4, step), s.sigmas, caption_dropout=0.1)
        assert plain.clips == a.clips and torch.equal(plain.x0, a.x0) and torch.equal(plain.noise, a.noise)
        assert torch.equal(plain.sigma, a.sigma) and plain.dropped == [False] * 3
        assert a.dropped == b.dropped and len(a.dropped) == 3
        drops += a.dropped
    assert 0.06 < sum(drops) / len(drops) < 0.14   # 900 draws at p = 0.1 (σ ≈ 0.01)
    assert all(draw_batch(s.clips, 2, step_generator(0, 0), s.sigmas, caption_dropout=1.0).dropped)
    # it changes training (the dropped steps see the empty caption), the same way for the same seed
    a, b, c = Setup(), Setup(), Setup()
    a.train(6, seed=3, caption_dropout=0.5)
    b.train(6, seed=3, caption_dropout=0.5)
    c.train(6, seed=3)
    assert all(torch.equal(x, y) for x, y in zip(a.lora.trainable(), b.lora.trainable()))
    assert not all(torch.equal(x, y) for x, y in zip(a.lora.trainable(), c.lora.trainable()))
    with pytest.raises(TrainingError, match="caption_dropout"):
        Setup().train(1, caption_dropout=1.5)


def test_nan_loss_stops_before_updating():
    s = Setup()
    before = [p.clone() for p in s.lora.trainable()]
    s.clips = s.clips.clone()
    s.clips[0, 3, 0, 0, 0] = float("nan")
    s.clips[1, 3, 0, 0, 0] = float("nan")
    with pytest.raises(NonFiniteLossError, match="learning_rate"):
        s.train(3)
    assert all(torch.equal(a, b) for a, b in zip(before, s.lora.trainable()))


def test_bf16_training_matches_fp32_loss_and_keeps_an_fp32_lora():
    a, b = Setup(), Setup()
    bf16 = a.train(1, seed=3, dtype=torch.bfloat16)
    fp32 = b.train(1, seed=3)
    assert all(p.dtype == torch.float32 for p in a.lora.trainable())
    assert abs(bf16.losses[0] - fp32.losses[0]) < 0.05 * fp32.losses[0]  # the same objective, in bf16 arithmetic
    assert not all(torch.equal(x, y) for x, y in zip(a.lora.trainable(), Setup().lora.trainable()))


# ---------------------------------------------------------------------------------------------
# bad input

def test_clip_checks():
    lat = torch.randn(16, 4, 8, 8)
    assert split_clips([lat], 8, 32).shape == (2, 8, 4, 8, 8)
    assert split_clips([lat[:8], lat[8:]], 0, 32).shape == (2, 8, 4, 8, 8)
    with pytest.raises(TrainingError, match="at least 2"):
        split_clips([lat], 1, 32)
    with pytest.raises(TrainingError, match="at most 24"):
        split_clips([torch.randn(32, 4, 8, 8)], 0, 24)
    with pytest.raises(TrainingError, match="different lengths"):
        split_clips([lat[:8], lat[:6]], 0, 32)
    with pytest.raises(TrainingError, match="divisor"):
        split_clips([lat], 6, 32)
    assert match_captions(["a"], 3) == ["a"] * 3
    with pytest.raises(TrainingError, match="2 captions for 3 clips"):
        match_captions(["a", "b"], 3)


def test_resume_with_other_rank_or_family_is_refused():
    s = Setup(rank=4)
    sd = s.lora.state_dict_published()
    with pytest.raises(TrainingError, match="rank 4 but rank is set to 8"):
        MotionLoRALayers(s.motion, 8).load_published(sd, "x.safetensors")
    no_mid = {k: v for k, v in sd.items() if not k.startswith("mid_block.")}
    with pytest.raises(TrainingError, match="another motion model family"):
        MotionLoRALayers(s.motion, 4).load_published(no_mid, "x.safetensors")


# ---------------------------------------------------------------------------------------------
# published layout

def test_saved_file_has_exactly_the_published_keys_and_loads_as_a_motion_lora(tmp_path):
    from motionkit.motion.formats import MotionModelInfo  # noqa: F401  (the loader under test is motion.lora's)
    from motionkit.motion.lora import read_motion_lora
    from motionkit.motion.model import SD15_CHANNELS, MotionArchitecture, MotionModel
    from motion_files import motion_lora as published  # key inventory written from MOTION_FORMATS.md §4.9

    with torch.device("meta"):
        v2 = MotionModel(MotionArchitecture(SD15_CHANNELS, has_mid=True))
    lora = MotionLoRALayers(v2, 64, torch.Generator().manual_seed(0))
    with torch.no_grad():
        for p in lora.up:
            p.normal_(0, 0.01)
    sd = lora.state_dict_published()
    expected = {k: tuple(v.shape) for k, v in published(rank=64, mid=True, device="meta").items()}
    assert len(expected) == 336
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert all(v.dtype == torch.float32 for v in sd.values())

    path = tmp_path / "zoom.safetensors"
    checkpoint.save(str(path), sd, checkpoint.Metadata(step=7, rank=64, base="SD1.5"))
    loaded = read_motion_lora(str(path))
    assert (loaded.rank, loaded.base, loaded.has_mid) == (64, "SD1.5", True)
    assert loaded.weights.keys() == sd.keys()
    assert all(torch.equal(loaded.weights[k], sd[k]) for k in sd)  # bit for bit: the same patches as trained
    assert checkpoint.read_metadata(str(path)).step == 7
    with pytest.raises(TrainingError, match="already exists"):
        checkpoint.check_target(str(path), overwrite=False)
    checkpoint.check_target(str(path), overwrite=True)


# ---------------------------------------------------------------------------------------------
# camera-move clips

def _centroid(frame):
    w = frame[..., 0]
    ys, xs = torch.meshgrid(torch.arange(w.shape[0]), torch.arange(w.shape[1]), indexing="ij")
    return float((w * xs).sum() / w.sum()), float((w * ys).sum() / w.sum())


def test_camera_moves_go_the_right_way():
    from motionkit.training.augment import MOVES, make_clips
    still = torch.zeros(1, 64, 64, 3)
    still[0, 24:32, 36:44] = 1.0  # a bright square right of and above the centre
    clips = {m: make_clips(still, [m], 5, 0.5, 64, 64) for m in MOVES}
    for m, c in clips.items():
        assert c.shape == (5, 64, 64, 3) and 0 <= float(c.min()) and float(c.max()) <= 1, m
    assert torch.allclose(clips["zoom_in"][0], still[0], atol=1e-4)      # starts at the picture itself
    assert torch.allclose(clips["zoom_out"][-1], still[0], atol=1e-4)    # ends there
    x0, y0 = _centroid(clips["zoom_in"][0])
    x1, y1 = _centroid(clips["zoom_in"][-1])
    assert x1 > x0 and y1 < y0            # zooming in pushes off-centre content outwards
    assert float(clips["zoom_in"][-1, ..., 0].sum()) > 1.5 * float(still[0, ..., 0].sum())  # and enlarges it
    xs = [_centroid(f)[0] for f in clips["pan_left"]]
    assert all(b > a for a, b in zip(xs, xs[1:]))  # camera turns left: the scene slides right
    assert _centroid(clips["pan_right"][-1])[0] < _centroid(clips["pan_right"][0])[0]
    assert _centroid(clips["tilt_up"][-1])[1] > _centroid(clips["tilt_up"][0])[1]    # the scene slides down
    assert _centroid(clips["tilt_down"][-1])[1] < _centroid(clips["tilt_down"][0])[1]
    # clockwise camera roll turns the scene anticlockwise: a point up-right of the centre moves up/left
    xr, yr = _centroid(clips["roll_clockwise"][-1])
    xa, ya = _centroid(clips["roll_anticlockwise"][-1])
    assert yr < ya and xr < xa
    many = make_clips(still, ["zoom_in"], 4, 0.5, 32, 32, variations=3, seed=1)
    assert many.shape[0] == 12 and not torch.equal(many[4:8], many[8:12])
    with pytest.raises(TrainingError, match="at least 2"):
        make_clips(still, ["zoom_in"], 1, 0.5, 32, 32)


def test_loss_is_the_models_own_noise_prediction_mse():
    """Through model_sampling, the loss is MSE(ε̂, ε) for an ε-prediction model (AnimateDiff's train.py)."""
    sampling = EpsSampling()
    g = torch.Generator().manual_seed(0)
    x0, noise = torch.randn(6, 4, 4, 4, generator=g), torch.randn(6, 4, 4, 4, generator=g)
    sigma = sampling.sigmas[torch.tensor([10, 10, 10, 500, 500, 500])]
    guess = torch.randn(6, 4, 4, 4, generator=g)

    def denoise(x_t, s, cond):  # a "network" that outputs `guess` as its noise prediction
        return sampling.calculate_denoised(s, guess, x_t)

    loss = prediction_loss(sampling, denoise, x0, noise, sigma, None)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(guess, noise), rtol=1e-5, atol=1e-6)
    sigmas = draw_sigmas(sampling, 1000, torch.Generator().manual_seed(1))
    assert len(set(sigmas.tolist())) > 400 and float(sigmas.min()) >= float(sampling.sigmas[0])


def test_an_interrupted_save_leaves_the_last_one_intact(tmp_path, monkeypatch):
    s = Setup()
    path = str(tmp_path / "keep.safetensors")
    first = s.lora.state_dict_published()
    checkpoint.save(path, first, checkpoint.Metadata(step=1))
    import safetensors.torch

    def dies_mid_write(tensors, filename, metadata=None):
        open(filename, "wb").write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(safetensors.torch, "save_file", dies_mid_write)
    with pytest.raises(KeyboardInterrupt):
        checkpoint.save(path, {k: v + 1 for k, v in first.items()}, checkpoint.Metadata(step=2))
    monkeypatch.undo()
    saved = checkpoint.load(path)
    assert saved.metadata.step == 1 and all(torch.equal(saved.weights[k], first[k]) for k in first)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.safetensors"]  # no partial file left behind


# ---------------------------------------------------------------------------------------------
# Video Folder to Clips

def _numbered_video(path, count, size=32):
    """A video whose frame i shows its number as two flat colour levels (red = i % 10, green = i // 10), which survive
    mp4 compression."""
    from motionkit.media.animation import AnimationSettings, write_animation
    frames = torch.zeros(count, size, size, 3)
    for i in range(count):
        frames[i, ..., 0], frames[i, ..., 1] = (i % 10) / 9, (i // 10) / 9
    write_animation(frames, str(path), AnimationSettings(format="mp4", fps=8))


def _numbers(clips):
    mean = clips.mean(dim=(1, 2))
    return [int(round(float(r) * 9)) + 10 * int(round(float(g) * 9)) for r, g, _ in mean]


def test_video_folder_clips_start_at_a_seeded_random_window(tmp_path):
    """AnimateDiff's dataset takes a random window of each video; here seeded (per video name), same seed = same
    clips; "from_start" is the old cut from frame 0."""
    from motionkit.training.video_clips import video_folder_clips
    _numbered_video(tmp_path / "long.mp4", 100)

    def cut(**kw):
        return _numbers(video_folder_clips(str(tmp_path), 4, 3, 2, 32, 32, **kw))

    assert cut(window_start="from_start") == list(range(0, 24, 3))
    runs = {seed: cut(seed=seed) for seed in range(6)}
    assert cut(seed=3) == runs[3]                                  # reproducible
    for got in runs.values():                                      # 2 back-to-back clips, stride 3, inside the video
        assert len(got) == 8 and got == list(range(got[0], got[0] + 24, 3)) and got[-1] <= 99
    starts = {got[0] for got in runs.values()}
    assert len(starts) >= 3 and max(starts) > 0, starts            # not always the first frame


def test_video_folder_clips_name_short_and_unreadable_videos(tmp_path, caplog):
    """16 frames at stride 4 take 61 frames: with only shorter videos the error names each and the frames needed
    (it was an empty IMAGE batch that crashed VAE Encode); when others work, the skipped ones are logged."""
    from motionkit.training.video_clips import video_folder_clips
    short = tmp_path / "short"
    short.mkdir()
    _numbered_video(short / "a.mp4", 60)
    _numbered_video(short / "b.mp4", 20)
    with pytest.raises(TrainingError) as e:
        video_folder_clips(str(short), 16, 4, 1, 32, 32, label="'short'")
    for phrase in ("'short'", "16 frames at frame_stride 4", "takes 61 frames", "a.mp4 (60 frames)", "b.mp4 (20 frames)",
                   "Lower frames or frame_stride"):
        assert phrase in str(e.value), (phrase, str(e.value))
    assert str(tmp_path) not in str(e.value)

    _numbered_video(short / "c.mp4", 61)
    (short / "d.mp4").write_bytes(b"not a video")
    caplog.clear()
    with caplog.at_level("WARNING"):
        clips = video_folder_clips(str(short), 16, 4, 1, 32, 32, label="'short'")
    assert clips.shape == (16, 32, 32, 3) and _numbers(clips) == list(range(0, 61, 4))
    assert "skipped 3 of 4 videos in 'short'" in caplog.text
    assert "a.mp4 (60 frames)" in caplog.text and "b.mp4 (20 frames)" in caplog.text and "d.mp4 (unreadable" in caplog.text
