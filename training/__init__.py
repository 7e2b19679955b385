"""Training a MotionLoRA (AnimateDiff's third stage) on ComfyUI's own model: pure torch where it can be.

* `lora`       LoRA layers on the q/k/v/out projections of every motion-module attention block, in the published
               MotionLoRA key layout (MOTION_FORMATS.md §4.9), as weight adapters w -> w + up @ down (inside ComfyUI
               core's comfy.weight_adapter LoraDiff on ModelPatcher weight wrappers; in pure torch a twin of it).
* `objective`  the model's own prediction objective (noise or v) through a ComfyUI-style `model_sampling`.
* `loop`       the training loop over clips (seeded, resumable, NaN-safe).
* `checkpoint` saving / resuming files (atomic writes, never overwriting unless asked).
* `clips`      checking and batching reference clips; `augment` camera-move clips from a still (OpenCV).
* `comfy_train` the ComfyUI side (MODEL + MOTION_MODEL → a trained MotionLoRA); the only module importing ComfyUI.
"""
