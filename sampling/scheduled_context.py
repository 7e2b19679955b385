"""Context windows whose options change during sampling (AnimateDiff-Evolved's scheduled context options).

Each 'Context Windows (Motion)' node makes one handler (sampling.context_handler.make_handler). Chained on one
MODEL with start_percents above 0, they form a schedule: `ScheduledContextWindows` holds their handlers and
hands each model call to the one in force, chosen as ADE 90fb133 chooses among its context options
(context.ContextOptionsGroup.prepare_current_context, written once in common.start_schedule): the first options
are in force from the start of sampling; a later one takes over at the first step whose sigma is at or below its
start_percent's sigma on the model's schedule, once the one before has run its guarantee_steps.

It is a ComfyUI context handler itself (core's ContextHandlerABC: should_use_context, get_resized_cond,
execute), so core's calc_cond_batch runs it as it runs one handler; the options are chosen in
`should_use_context`, the first thing core asks at every model call. A schedule of one part is never made: one
Context Windows node puts its own handler on the model, as before schedules existed.

What the chain must look like (`schedule_parts`): the first Context Windows on a MODEL starts at 0, each later one
later in sampling than the one before it (ADE sorts options by start_percent; a chain out of order, or two
options at one start_percent, is refused here with the two named, rather than silently reordered).
A Context Windows at 0 after a single one replaces it (as it did before schedules existed).
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..common.start_schedule import StartSchedule
from .errors import ContextWindowError


@dataclass(frozen=True, eq=False)
class ContextPart:
    """One Context Windows node's options in a schedule."""
    start_percent: float
    guarantee_steps: int
    handler: object  # core's IndexListContextHandler with MotionKit's additions (context_handler.make_handler)
    label: str  # the node's settings, for messages

    def describe(self) -> str:
        return f"Context Windows ({self.label}, start_percent {self.start_percent:g})"


@dataclass(frozen=True, eq=False)
class ContextPlan:
    """What a MODEL's Context Windows are: the parts, and the handler they put in model_options (attached to the
    model under context_handler.KEY, so the next Context Windows node finds them)."""
    parts: tuple
    handler: object


def schedule_parts(earlier: ContextPlan | None, part: ContextPart) -> tuple:
    """The parts after adding `part` to the model's Context Windows `earlier` (None: it has none of MotionKit's)."""
    if not 0.0 <= part.start_percent <= 1.0:
        raise ContextWindowError(f"{part.describe()}: start_percent must be from 0 (the first step) to 1.")
    if part.guarantee_steps < 0:
        raise ContextWindowError(f"{part.describe()}: guarantee_steps must be 0 or more.")
    if part.start_percent == 0.0:
        if earlier is not None and len(earlier.parts) > 1:
            switches = ", ".join(p.describe() for p in earlier.parts)
            raise ContextWindowError(
                f"{part.describe()} follows Context Windows that already change during sampling ({switches}). "
                f"At start_percent 0 it would replace them all. Give it a start_percent above "
                f"{earlier.parts[-1].start_percent:g} to add it to the end of that schedule, or connect it before "
                f"the first of them.")
        return (part,)  # the first options, or new ones replacing a single earlier one (as without schedules)
    if earlier is None:
        raise ContextWindowError(
            f"{part.describe()} has no Context Windows before it on this MODEL, but the first Context Windows are in "
            f"force from the start of sampling, whatever their start_percent. Set start_percent to 0, or connect "
            f"this node after another 'Context Windows (Motion)' whose windows should run before "
            f"{part.start_percent:g} of sampling.")
    last = earlier.parts[-1]
    if part.start_percent == last.start_percent:
        raise ContextWindowError(
            f"{part.describe()} and {last.describe()} before it both start at {part.start_percent:g}: only one can "
            f"take over there. Give the later node a start_percent above {last.start_percent:g}, or remove one.")
    if part.start_percent < last.start_percent:
        raise ContextWindowError(
            f"{part.describe()} follows {last.describe()}, which starts later in sampling. Chain Context Windows "
            f"in the order they take over: raise this node's start_percent above {last.start_percent:g}, or swap "
            f"the two nodes.")
    return earlier.parts + (part,)


class ScheduledContextWindows:
    """Several Context Windows handlers, each in force from its start_percent; core calls it as one handler.

    The state of the choice lives here and is reset before every sampling run (`set_start_sigmas`, from the
    model's ON_PRE_RUN callback); each part's handler keeps its own (its step, its saved ControlNet images)."""

    def __init__(self, parts):
        if len(parts) < 2:
            raise ValueError("a schedule has two parts or more")
        self.parts = tuple(parts)
        self.schedule = StartSchedule([p.start_percent for p in self.parts], [p.guarantee_steps for p in self.parts],
                                      first_in_force=True)
        # what core (its memory estimate for one window) and the motion model's frame check read: the longest window
        self.dim = 0
        self.context_length = max(p.handler.context_length for p in self.parts)

    @property
    def current(self) -> ContextPart:
        return self.parts[self.schedule.index]

    def set_start_sigmas(self, model_sampling) -> None:
        """The parts' start percents on this model's schedule; the next run starts with the first part."""
        self.schedule.set_start_sigmas(model_sampling)

    def choose(self, timestep: torch.Tensor, model_options: dict, model=None) -> ContextPart:
        """The part in force for this model call (every frame has the same sigma: the first is ADE's t[0])."""
        if not self.schedule.initialized and model is not None:  # a run that skipped ON_PRE_RUN: the model's own
            self.set_start_sigmas(model.model_sampling)
        sample_sigmas = (model_options.get("transformer_options") or {}).get("sample_sigmas")
        self.schedule.step(timestep.reshape(-1)[0], sample_sigmas)
        return self.current

    # core's ContextHandlerABC --------------------------------------------------------------------------------

    def should_use_context(self, model, conds, x_in, timestep, model_options) -> bool:
        return self.choose(timestep, model_options, model).handler.should_use_context(
            model, conds, x_in, timestep, model_options)

    def get_resized_cond(self, cond_in, x_in, window, device=None):
        return self.current.handler.get_resized_cond(cond_in, x_in, window, device)

    def execute(self, calc_cond_batch, model, conds, x_in, timestep, model_options):
        return self.current.handler.execute(calc_cond_batch, model, conds, x_in, timestep, model_options)


@functools.cache
def scheduled_class():
    """ScheduledContextWindows as a core ContextHandlerABC (made on first use: imports ComfyUI). Core only calls
    the three methods, so a core without that base class gets the plain class."""
    import comfy.context_windows as cw
    abc = getattr(cw, "ContextHandlerABC", None)
    bases = (ScheduledContextWindows,) if abc is None else (ScheduledContextWindows, abc)
    return type("MotionKitScheduledContextHandler", bases, {})
