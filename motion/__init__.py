"""Motion-module models, checkpoint formats and their injection into a ComfyUI UNet.

Everything here but `injection` imports without ComfyUI.
"""
