"""Animate Anyone (MooreThreads/Moore-AnimateAnyone) on ComfyUI's own UNet: pose guider, reference
attention, file loading. Pure torch except where a function says it imports ComfyUI (lazily)."""
