"""Tora (alibaba/Tora, diffusers version): its trajectory extractor, its per-block motion-guidance fusers and the
trajectory -> flow -> colour video preparation of its inference. Pure torch and numpy; imports without ComfyUI."""
