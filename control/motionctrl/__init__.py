"""MotionCtrl's object-motion control module (OMCM) for AnimateDiff: the adapter (model.py), its published file
(files.py), and its features added to the UNet during sampling (apply.py). Pure torch except where a function
says it imports ComfyUI (lazily)."""
