"""Control adapters for animations (SparseCtrl, MotionCtrl OMCM, trajectory attention); imports without ComfyUI."""
