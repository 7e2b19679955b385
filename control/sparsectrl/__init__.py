"""SparseCtrl (AnimateDiff v3's sparse control net): the encoder (model.py), its published files (files.py), where
the keyframe images go (keyframes.py) and the CONTROL_NET on core's ControlNet chain (apply.py). Pure torch except
apply.py, which imports ComfyUI lazily."""
