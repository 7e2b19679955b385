"""Control models for animations (pure torch; ComfyUI glue is imported lazily). SparseCtrl: sparsectrl*.py."""
