"""CameraCtrl (hehao13/CameraCtrl, the AnimateDiff v3 version): camera poses -> Plücker embedding -> camera encoder
-> features merged into the first temporal attention of every down and up motion module. Pure torch; ComfyUI glue
is imported lazily.

* poses.py:   RealEstate10K pose files, presets (pan, zoom, roll, tilt, orbit), combining
* plucker.py: the per-pixel Plücker ray embedding, as the original's inference.py
* encoder.py: the camera encoder (CameraPoseEncoder) and the qkv_merge layers that take its features
* files.py:   the two published layouts (the original release's nested dict, ADE's pruned flat file)
* merge.py:   how a motion module gets the features (motion.model's attention-input hook)
"""
