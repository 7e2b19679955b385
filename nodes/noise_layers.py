"""Sample Settings (Noise) and Noise Layer: AnimateDiff-Evolved's seed and noise options for the initial noise."""
from ..sampling import seeds
from ..sampling.errors import NoiseOptionError
from ..sampling.noise_layers import (ADD, APPLICATIONS, NORMALIZED_SUM, NoiseLayer, NoiseSettings, SettingsNoise,
                                     apply_noise_settings, context_of, parse_seed_override)

BIG = 0xffffffffffffffff
JS_MAX = 2**53 - 1  # the largest whole number the front end keeps exactly (as ADE's offsets)

NOISE_TYPE_TIP = ("default: fresh noise in every frame. constant: every frame starts from the same noise (a "
                  "steadier, less changing animation). empty: no noise (zeros; only useful below denoise 1). "
                  "repeated_context: the first context window's noise repeats (the animation loops its content "
                  "every window). FreeNoise: later windows reuse the noise before them, shuffled (AnimateDiff-"
                  "Evolved's FreeNoise: windows agree on the content). The last two need Context Windows (Motion) "
                  "on the model, otherwise they change nothing.")
SEED_OVERRIDE_TIP = ("Leave empty to use the seed. One number: the seed the noise is made from instead, plus "
                     "seed_offset (as in AnimateDiff-Evolved, with every other setting at its default the "
                     "sampler's own noise is kept and only the noise layers take this seed). Numbers separated by "
                     "commas: one seed per frame, plus seed_offset (frame 1 takes the first; at least as many as "
                     "frames, extra ones unused), so chosen frames can be re-rolled alone.")

LAYER_SEED_OVERRIDE_TIP = ("Leave empty to use the Sample Settings' seed. One number: this layer's own seed instead, "
                           "plus seed_offset. Numbers separated by commas: one seed per frame for this layer's "
                           "noise, plus seed_offset (frame 1 takes the first; at least as many as frames, extra "
                           "ones unused): changing one frame's seed changes only that frame's layer noise.")


def _seed_override(text):
    return parse_seed_override(text or "")


class NoiseLayerNode:
    DESCRIPTION = ("A noise layer for 'Sample Settings (Noise)': noise of its own seed mixed into the initial "
                   "noise, everywhere or where a mask is white. Replace re-rolls that part of the animation (a "
                   "region, or chosen frames with a per-frame mask or seed list) while the rest stays as it was; "
                   "add / add_weighted / normalized_sum vary it a little or a lot. Chain several: the layer "
                   "nearest the Sample Settings node is applied first, then the ones before it "
                   "(AnimateDiff-Evolved's Noise Layer nodes in one).")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["noise layer", "add noise", "replace noise", "noise mask", "variation seed", "noise weight"]
    RETURN_TYPES = ("NOISE_LAYERS",)
    RETURN_NAMES = ("noise_layers",)
    OUTPUT_TOOLTIPS = ("Connect to 'Sample Settings (Noise)' (noise_layers) or to another Noise Layer.",)
    FUNCTION = "make"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "application": (APPLICATIONS, {"default": ADD, "tooltip":
                "How this layer's noise meets the noise so far, where the mask is white. replace: swapped for the "
                "new noise (that part of the animation is re-rolled). add: old + new * noise_weight (a variation "
                "that grows with the weight). add_weighted: old * (1 - noise_weight * balance_multiplier) + new * "
                "noise_weight. normalized_sum: a blend of old and new by noise_weight, scaled to keep the noise's "
                "strength (0 = old, 1 = new)."}),
            "noise_weight": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 10.0, "step": 0.001, "tooltip":
                "How much of this layer's noise goes in (add, add_weighted, normalized_sum; replace ignores it). "
                "Small values give a close variation of the same animation, large ones a different one. "
                "normalized_sum takes 0 to 1."}),
            "balance_multiplier": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 10.0, "step": 0.001, "tooltip":
                "add_weighted only: how much the old noise is turned down as the new comes in (1 = by "
                "noise_weight, 0 = not at all, like add)."}),
            "seed_offset": ("INT", {"default": 0, "min": -JS_MAX, "max": JS_MAX, "tooltip":
                "Added to the seed for this layer's noise: each offset gives another variation of the "
                "animation with the same main seed."}),
            "seed_gen_override": (seeds.SEED_GENS_WITH_EXISTING, {"default": seeds.USE_EXISTING, "tooltip":
                "How this layer's seed becomes noise. use existing: as the Sample Settings node's seed_gen. comfy: "
                "one random stream over all frames (ComfyUI). auto1111: frame i seeded with seed + i (Automatic1111's "
                "batches). [gpu]: drawn on the GPU (other numbers than the CPU's)."}),
            "noise_type": (seeds.NOISE_TYPES, {"default": seeds.DEFAULT, "tooltip": NOISE_TYPE_TIP}),
            "batch_offset": ("INT", {"default": 0, "min": 0, "max": JS_MAX, "tooltip":
                "Shifts this layer's noise along the frames: frame 1 gets what frame 1 + batch_offset would "
                "have had, so the same noise plays later or earlier in the animation."}),
        }, "optional": {
            "prev_noise_layers": ("NOISE_LAYERS", {"tooltip":
                "Layers made before (another Noise Layer): this one is applied before them."}),
            "mask": ("MASK", {"tooltip":
                "Where this layer acts: white takes the layer's noise, black keeps the noise so far, grey "
                "blends. One mask for all frames or one per frame (e.g. only frames 5-8 white to re-roll them). "
                "Resized to the latent; a mask batch of another length is repeated or cut to the frames, as in "
                "AnimateDiff-Evolved, with a note in the log."}),
            "seed_override": ("STRING", {"default": "", "tooltip": LAYER_SEED_OVERRIDE_TIP}),
        }}

    def make(self, application, noise_weight, balance_multiplier, seed_offset, seed_gen_override, noise_type,
             batch_offset, prev_noise_layers=None, mask=None, seed_override=""):
        if application == NORMALIZED_SUM and noise_weight > 1.0:
            raise NoiseOptionError(f"Noise Layer: normalized_sum blends old and new noise by noise_weight from 0 "
                                   f"to 1; it is {noise_weight}. Lower it, or use add.")
        layer = NoiseLayer(application=application, noise_type=noise_type, batch_offset=batch_offset,
                           seed_gen_override=seed_gen_override, seed_offset=seed_offset,
                           seed_override=_seed_override(seed_override), mask=mask, weight=noise_weight,
                           balance_multiplier=balance_multiplier)
        return ((layer,) + tuple(prev_noise_layers or ()),)  # first, as ADE's nodes (add_to_start)


class SampleSettingsNode:
    DESCRIPTION = ("AnimateDiff-Evolved's seed and noise options (Sample Settings): how the initial noise of the "
                   "animation is made from the seed, with a seed offset, an override (one seed, or one per frame), "
                   "a batch offset, Automatic1111-style per-frame seeds, a noise type, and noise layers. The "
                   "noise is bit-identical to AnimateDiff-Evolved's for the same settings and seed. Use the MODEL "
                   "output with KSampler / KSamplerAdvanced / SamplerCustom (the sampler's seed is used), or the "
                   "NOISE output with SamplerCustomAdvanced (noise_seed is used); using both applies the settings "
                   "once. Put it after 'Context Windows (Motion)' for repeated_context / FreeNoise.")
    CATEGORY = "MotionKit"
    SEARCH_ALIASES = ["sample settings", "seed options", "seed offset", "seed override", "batch offset",
                      "auto1111 seed", "noise type", "constant noise", "noise layers"]
    RETURN_TYPES = ("MODEL", "NOISE")
    RETURN_NAMES = ("model", "noise")
    OUTPUT_TOOLTIPS = ("The model, sampling from these settings' noise (for KSampler and the like; the input MODEL "
                       "is unchanged).",
                       "Noise for SamplerCustomAdvanced, from noise_seed and these settings.")
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "The model to sample with these noise settings (after Apply Motion "
                                           "Model and Context Windows)."}),
            "noise_seed": ("INT", {"default": 0, "min": 0, "max": BIG, "control_after_generate": True, "tooltip":
                "The seed of the NOISE output (SamplerCustomAdvanced). KSampler users: the MODEL output takes "
                "KSampler's own seed and ignores this."}),
            "batch_offset": ("INT", {"default": 0, "min": 0, "max": JS_MAX, "tooltip":
                "Shifts the noise along the frames: frame 1 starts from what frame 1 + batch_offset would have "
                "had, e.g. to re-make the later part of a longer animation in a shorter batch."}),
            "noise_type": (seeds.NOISE_TYPES, {"default": seeds.DEFAULT, "tooltip": NOISE_TYPE_TIP}),
            "seed_gen": (seeds.SEED_GENS, {"default": seeds.COMFY, "tooltip":
                "How the seed becomes noise. comfy: one random stream over all frames (as ComfyUI). auto1111: "
                "frame i drawn on its own from seed + i (Automatic1111's way of seeding a batch), so a frame "
                "keeps its noise when the frame count changes. [gpu]: drawn on the GPU (other numbers than the "
                "CPU's)."}),
            "seed_offset": ("INT", {"default": 0, "min": -JS_MAX, "max": JS_MAX, "tooltip":
                "Added to the seed: the animation of seed + offset, while the sampler's seed widget stays the "
                "same (e.g. to keep one seed for several samplers that should differ)."}),
        }, "optional": {
            "noise_layers": ("NOISE_LAYERS", {"tooltip":
                "Noise layers (Noise Layer nodes) mixed into the noise, for variations or re-rolled regions."}),
            "seed_override": ("STRING", {"default": "", "tooltip": SEED_OVERRIDE_TIP}),
        }}

    def apply(self, model, noise_seed, batch_offset, noise_type, seed_gen, seed_offset, noise_layers=None,
              seed_override=""):
        settings = NoiseSettings(batch_offset=batch_offset, noise_type=noise_type, seed_gen=seed_gen,
                                 seed_offset=seed_offset, seed_override=_seed_override(seed_override),
                                 layers=tuple(noise_layers or ()))
        return (apply_noise_settings(model, settings),
                SettingsNoise(noise_seed, settings, context_of(model.model_options)))
