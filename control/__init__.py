"""Control adapters for animations: SparseCtrl (sparsectrl/), MotionCtrl OMCM (motionctrl/), each a model family of
the shape model.py / files.py / apply.py / errors.py; and training-free trajectory attention (box_attention.py: no
weights, no files, only a UNet patch). Pure torch; ComfyUI glue is imported lazily."""
