"""Train MotionLoRA: a MotionLoRA learnt from reference clips, inside the graph (training/comfy_train.py)."""
import logging
import os

import folder_paths

from ..training import comfy_train
from ..training.loop import DTYPES, TrainSettings
from ..training.plot import loss_curve
from .model_folders import MOTION_LORA_FOLDER

NO_RESUME = "[none]"
CAPTION_DROPOUT = 0.1  # AnimateDiff train.py: cfg_random_null_text_ratio


def _first(value):
    return value[0] if isinstance(value, list) else value


class TrainMotionLoRA:
    DESCRIPTION = ("Trains a MotionLoRA (a new camera move or kind of motion) from a few reference clips: a LoRA on the "
                   "motion model's attention layers only, as in the AnimateDiff paper. The SD model and the motion model "
                   "stay unchanged. Saves a .safetensors to models/animatediff_motion_lora (loads in Load MotionLoRA and "
                   "AnimateDiff-Evolved) and outputs the MOTION_LORA for Apply Motion Model.")
    CATEGORY = "MotionKit/Training"
    RETURN_TYPES = ("MOTION_LORA", "IMAGE", "STRING")
    RETURN_NAMES = ("motion_lora", "loss_curve", "file")
    OUTPUT_TOOLTIPS = ("The trained MotionLoRA at strength 1: connect it to Apply Motion Model's motion_lora.",
                       "The training loss per step (light) and its running mean (dark).",
                       "The saved file's name in models/animatediff_motion_lora (empty if not saved).")
    OUTPUT_IS_LIST = (False, False, False)
    INPUT_IS_LIST = True  # clips and captions may come as lists (one per clip)
    FUNCTION = "train"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "Your SD1.5 checkpoint's MODEL (or SDXL with an SDXL motion model). Frozen."}),
            "motion_model": ("MOTION_MODEL", {"tooltip": "The motion model to train the LoRA for (from Load Motion "
                                                         "Model; v2 is what the published MotionLoRAs use). Frozen."}),
            "clips": ("LATENT", {"tooltip": "The reference clips, VAE-encoded: one batch of several clips of "
                                            "frames_per_clip frames each (e.g. from Make Camera-Move Clips → VAE "
                                            "Encode), or a list of latents, one clip each."}),
            "captions": ("CONDITIONING", {"tooltip": "What the clips show (CLIP Text Encode): one for all clips, or one "
                                                     "per clip (a list, in clip order)."}),
            "frames_per_clip": ("INT", {"default": 16, "min": 0, "max": 64,
                                        "tooltip": "Frames of one clip in the clips batch (the clip maker's frames). "
                                                   "0 = each LATENT is one clip."}),
            "filename": ("STRING", {"default": "my_motion_lora",
                                    "tooltip": "File name in models/animatediff_motion_lora (.safetensors is added; may "
                                               "hold subfolders). Empty = do not save."}),
            "rank": ("INT", {"default": 64, "min": 1, "max": 512,
                             "tooltip": "LoRA rank: 64 as the published MotionLoRAs (77 MB); smaller = smaller file, "
                                        "less capacity."}),
            "learning_rate": ("FLOAT", {"default": 1e-4, "min": 1e-7, "max": 1.0, "step": 1e-5, "round": 1e-7,
                                        "tooltip": "AdamW learning rate; 1e-4 as AnimateDiff. Lower it if the loss "
                                                   "jumps or becomes NaN."}),
            "steps": ("INT", {"default": 400, "min": 1, "max": 100000,
                              "tooltip": "Training steps (each on clips_per_step clips). A camera move: 300-500."}),
            "clips_per_step": ("INT", {"default": 1, "min": 1, "max": 64,
                                       "tooltip": "Clips per step (the batch size); memory grows with it."}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xffffffffffffffff,
                             "tooltip": "Seeds the LoRA's initial weights and each step's clips, timesteps and noise: "
                                        "the same seed and inputs give the same LoRA."}),
            "training_dtype": (list(DTYPES), {"default": "bf16",
                                              "tooltip": "bf16: about half the memory and faster on GPUs and bf16 CPUs "
                                                         "(the LoRA itself stays fp32). fp32: exact, slower."}),
            "gradient_checkpointing": ("BOOLEAN", {"default": True,
                                                   "tooltip": "Recompute each UNet and motion layer in the backward "
                                                              "pass instead of storing it: much less memory, ~30% "
                                                              "slower. Needed for 16 frames at 256x256 on 24 GB."}),
            "save_every": ("INT", {"default": 100, "min": 0, "max": 100000,
                                   "tooltip": "Also save the file every N steps (0 = only at the end). After a "
                                              "cancel, the last save is complete and usable."}),
            "overwrite": ("BOOLEAN", {"default": False,
                                      "tooltip": "Replace an existing file of this name (off: an existing file stops "
                                                 "the run before training)."}),
        }, "optional": {
            "resume_from": ([NO_RESUME] + folder_paths.get_filename_list(MOTION_LORA_FOLDER),
                            {"default": NO_RESUME,
                             "tooltip": "Continue training this MotionLoRA (same rank and motion model); steps "
                                        "continue its count. Its optimizer state is used when saved beside it."}),
            "caption_dropout": ("FLOAT", {"default": CAPTION_DROPOUT, "min": 0.0, "max": 1.0, "step": 0.01,
                                          "tooltip": "Chance that a clip trains on the empty caption (\"\") in a "
                                                     "step, as AnimateDiff does (0.1): the LoRA then also learns the "
                                                     "unconditional prediction that CFG uses. Needs clip connected "
                                                     "(without it: no dropout). 0 = always the captions."}),
            "clip": ("CLIP", {"tooltip": "The CLIP your captions were encoded with (the checkpoint's): the node "
                                         "encodes the empty caption with it for caption_dropout."}),
        }}

    def train(self, model, motion_model, clips, captions, frames_per_clip, filename, rank, learning_rate, steps,
              clips_per_step, seed, training_dtype, gradient_checkpointing, save_every, overwrite, resume_from=None,
              caption_dropout=CAPTION_DROPOUT, clip=None):
        import comfy.utils

        p = {k: _first(v) for k, v in dict(frames_per_clip=frames_per_clip, filename=filename, rank=rank,
                                           learning_rate=learning_rate, steps=steps, clips_per_step=clips_per_step,
                                           seed=seed, training_dtype=training_dtype, overwrite=overwrite,
                                           gradient_checkpointing=gradient_checkpointing, save_every=save_every,
                                           resume_from=resume_from or NO_RESUME, caption_dropout=caption_dropout,
                                           clip=clip).items()}
        name = p["filename"].strip()
        save_path = None
        if name:
            if not name.endswith(".safetensors"):
                name += ".safetensors"
            root = folder_paths.get_folder_paths(MOTION_LORA_FOLDER)[0]
            save_path = os.path.abspath(os.path.join(root, name))
            if os.path.commonpath([save_path, os.path.abspath(root)]) != os.path.abspath(root):
                raise ValueError(f"filename '{p['filename']}' leaves models/{MOTION_LORA_FOLDER}; use a plain name.")
        resume = None if p["resume_from"] == NO_RESUME else folder_paths.get_full_path_or_raise(MOTION_LORA_FOLDER,
                                                                                               p["resume_from"])
        settings = TrainSettings(steps=p["steps"], learning_rate=p["learning_rate"], clips_per_step=p["clips_per_step"],
                                 seed=p["seed"], dtype=DTYPES[p["training_dtype"]], save_every=p["save_every"],
                                 caption_dropout=p["caption_dropout"])
        # a dropped caption is "" through the captions' CLIP, encoded as CLIP Text Encode does (AnimateDiff: the
        # empty string through the same text encoder)
        empty = (p["clip"].encode_from_tokens_scheduled(p["clip"].tokenize(""))
                 if p["clip"] is not None and p["caption_dropout"] > 0 else None)
        request = comfy_train.TrainRequest(rank=p["rank"], settings=settings, save_path=save_path,
                                           overwrite=p["overwrite"], resume_path=resume,
                                           gradient_checkpointing=p["gradient_checkpointing"],
                                           frames_per_clip=p["frames_per_clip"],
                                           save_shown=save_path and f"'{os.path.relpath(save_path, root)}' in "
                                                                   f"ComfyUI's models/{MOTION_LORA_FOLDER} folder",
                                           empty_caption=empty)
        bar = comfy.utils.ProgressBar(settings.steps)
        losses, first = [], [None]
        every = max(1, settings.steps // 50)

        def progress(step, loss):
            if first[0] is None:
                first[0] = step
            losses.append(loss)
            done = step - first[0] + 1
            logging.info(f"MotionKit Train MotionLoRA: step {step} loss {loss:.5f}")
            preview = None
            if done % every == 0 or done == settings.steps:  # the curve so far, shown in the node
                from PIL import Image
                curve = (loss_curve(losses, first_step=first[0])[0].numpy() * 255).astype("uint8")
                preview = ("JPEG", Image.fromarray(curve), 512)
            bar.update_absolute(done, settings.steps, preview)

        lora, run_losses, total = comfy_train.run(_first(model), _first(motion_model), [c["samples"] for c in clips],
                                                  list(captions), request, progress=progress)
        logging.info(f"MotionKit: trained MotionLoRA '{lora.name}' to step {total}"
                     + (f", saved to {save_path}" if save_path else ""))
        return ((lora,), loss_curve(run_losses, first_step=total - len(run_losses) + 1),
                name if save_path else "")
