"""Sampling helpers: noise schedules (and later context windows, noise options). Imports without ComfyUI."""
