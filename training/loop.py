"""The training loop over reference clips (AnimateDiff train.py's, for a LoRA): AdamW, gradient clipping at 1.

Each step draws, from a generator seeded by (seed, step), which clips to use, one timestep per clip, noise for
every frame of it, and (last, so the other draws do not depend on it) which clips train on the empty caption this
step (caption_dropout: AnimateDiff's cfg_random_null_text, each clip's caption becomes "" with probability 0.1, so
the motion model also learns the unconditional prediction that classifier-free guidance subtracts); so a run is
deterministic per seed, and a resumed run draws exactly what the uninterrupted run would have drawn from that step
on. A non-finite loss stops the run before any parameter is touched.
"""
from __future__ import annotations

import math
from contextlib import nullcontext
from dataclasses import dataclass, field
from typing import Callable

import torch
from einops import rearrange

from .errors import NonFiniteLossError, TrainingError

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}


@dataclass
class TrainSettings:
    steps: int
    learning_rate: float = 1e-4
    clips_per_step: int = 1
    seed: int = 0
    dtype: torch.dtype = torch.float32   # compute dtype (bf16 = autocast); the LoRA itself stays fp32
    save_every: int = 0                  # 0 = only at the end
    max_grad_norm: float = 1.0           # AnimateDiff's
    caption_dropout: float = 0.0         # chance that a clip trains on the empty caption (AnimateDiff: 0.1)
    weight_decay: float = 1e-2           # AnimateDiff's AdamW setting
    device_type: str = "cpu"


@dataclass
class Batch:
    x0: torch.Tensor       # [(clips·frames), C, H, W] clean latents
    noise: torch.Tensor    # same shape
    sigma: torch.Tensor    # [(clips·frames)], one value per clip repeated over its frames
    clips: list            # which clips (indices), in batch order
    frames: int
    dropped: list = field(default_factory=list)  # per clip of the batch: True = train it on the empty caption


@dataclass
class TrainResult:
    step: int                                  # steps done in all (resumed ones included)
    losses: list = field(default_factory=list)  # loss of each step of this run
    optimizer_state: dict | None = None


def step_generator(seed: int, step: int) -> torch.Generator:
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(step)) % (2 ** 63))


def draw_batch(clips: torch.Tensor, count: int, generator: torch.Generator, draw_sigmas,
               caption_dropout: float = 0.0) -> Batch:
    """`count` clips (without repeats while there are enough), their per-clip σ and per-frame noise, and which of
    them drop their caption (each with probability `caption_dropout`)."""
    total, frames = clips.shape[:2]
    if count <= total:
        chosen = torch.randperm(total, generator=generator)[:count]
    else:
        chosen = torch.randint(0, total, (count,), generator=generator)
    x0 = clips[chosen]
    noise = torch.randn(x0.shape, generator=generator).to(x0)
    sigma = draw_sigmas(count, generator)
    dropped = (torch.rand(count, generator=generator) < caption_dropout).tolist()
    return Batch(rearrange(x0, "b f c h w -> (b f) c h w"), rearrange(noise, "b f c h w -> (b f) c h w"),
                 sigma.repeat_interleave(frames), chosen.tolist(), frames, dropped)


def make_optimizer(parameters, settings: TrainSettings, state: dict | None = None) -> torch.optim.Optimizer:
    optimizer = torch.optim.AdamW(parameters, lr=settings.learning_rate, weight_decay=settings.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state)
        for group in optimizer.param_groups:  # the learning rate is this run's setting
            group["lr"] = settings.learning_rate
    return optimizer


def autocast(settings: TrainSettings):
    if settings.dtype == torch.float32:
        return nullcontext()
    return torch.autocast(settings.device_type, dtype=settings.dtype)


def train(parameters: list, clips: torch.Tensor, loss_fn: Callable[[Batch], torch.Tensor], settings: TrainSettings,
          draw_sigmas, start_step: int = 0, optimizer_state: dict | None = None,
          on_step: Callable[[int, float], None] | None = None, on_save: Callable[[int, dict], None] | None = None,
          check_interrupt: Callable[[], None] | None = None) -> TrainResult:
    """Train `parameters` for settings.steps steps from `start_step`. `loss_fn(batch)` returns the scalar loss.

    on_step(step, loss) after each step; on_save(step, optimizer_state) every save_every steps and at the end;
    check_interrupt() before each step (raises to stop; whatever on_save wrote last stays)."""
    if settings.steps < 1:
        raise TrainingError(f"steps must be at least 1 (got {settings.steps}).")
    if settings.clips_per_step < 1:
        raise TrainingError(f"clips_per_step must be at least 1 (got {settings.clips_per_step}).")
    if not 0.0 <= settings.caption_dropout <= 1.0:
        raise TrainingError(f"caption_dropout is a probability from 0 to 1 (got {settings.caption_dropout}); 0.1 as "
                            f"AnimateDiff.")
    optimizer = make_optimizer(parameters, settings, optimizer_state)
    result = TrainResult(step=start_step)
    for step in range(start_step, start_step + settings.steps):
        if check_interrupt is not None:
            check_interrupt()
        batch = draw_batch(clips, settings.clips_per_step, step_generator(settings.seed, step), draw_sigmas,
                           settings.caption_dropout)
        optimizer.zero_grad(set_to_none=True)
        with autocast(settings):
            loss = loss_fn(batch)
        value = float(loss.detach())
        if not math.isfinite(value):
            raise NonFiniteLossError(
                f"The training loss became {value} at step {step + 1}; the LoRA was not updated with it and the last "
                f"save is kept. Lower learning_rate (e.g. to a tenth), or train in fp32 instead of bf16.")
        loss.backward()
        torch.nn.utils.clip_grad_norm_(parameters, settings.max_grad_norm)
        optimizer.step()
        result.step = step + 1
        result.losses.append(value)
        if on_step is not None:
            on_step(result.step, value)
        done = result.step - start_step
        if on_save is not None and (done == settings.steps or (settings.save_every and done % settings.save_every == 0)):
            on_save(result.step, optimizer.state_dict())
    result.optimizer_state = optimizer.state_dict()
    return result


@torch.no_grad()
def evaluate(clips: torch.Tensor, loss_fn: Callable[[Batch], torch.Tensor], draw_sigmas, seed: int = 1234,
             draws: int = 4, settings: TrainSettings | None = None) -> float:
    """Mean loss over a fixed set of (clip, σ, noise) draws: the same draws for every call with one seed."""
    total = 0.0
    for i in range(draws):
        batch = draw_batch(clips, clips.shape[0], step_generator(seed, 10 ** 9 + i), draw_sigmas)
        with autocast(settings or TrainSettings(steps=1)):
            total += float(loss_fn(batch))
    return total / draws
