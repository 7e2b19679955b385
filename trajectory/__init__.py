"""Trajectories ("draw where things move"): paths -> per-frame flow maps, for any backend. Imports without ComfyUI."""
