"""Media in and out of ComfyUI: animation files, video and image-folder input, and the path confinement every
path input goes through (`safe_paths`). Imports without ComfyUI."""
