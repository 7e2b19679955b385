"""Apply Domain Adapter: the AnimateDiff v3 domain adapter (v3_sd15_adapter.ckpt) on your checkpoint's MODEL."""
import folder_paths

from ..motion.lora import apply_domain_adapter, read_domain_adapter


class ApplyDomainAdapter:
    DESCRIPTION = ("Applies the AnimateDiff v3 domain adapter (v3_sd15_adapter.ckpt, a LoRA on the SD1.5 UNet that "
                   "v3_sd15_mm.ckpt was trained with) to a MODEL, the way core 'LoraLoaderModelOnly' does. "
                   "The input MODEL is left unchanged.")
    CATEGORY = "MotionKit"
    RETURN_TYPES = ("MODEL",)
    OUTPUT_TOOLTIPS = ("The model with the domain adapter applied; connect it to 'Apply Motion Model'.",)
    FUNCTION = "apply"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": ("MODEL", {"tooltip": "Your SD1.5 checkpoint's model."}),
            "adapter_name": (folder_paths.get_filename_list("loras"), {
                "tooltip": "The domain adapter file, v3_sd15_adapter.ckpt, in models/loras."}),
            "scale": ("FLOAT", {"default": 1.0, "min": -10.0, "max": 10.0, "step": 0.01,
                                "tooltip": "1 = as trained (the official v3 setting), 0 = off (the MODEL unchanged); "
                                           "in between weakens it."}),
        }}

    def apply(self, model, adapter_name, scale):
        path = folder_paths.get_full_path_or_raise("loras", adapter_name)
        return (apply_domain_adapter(model, read_domain_adapter(path, adapter_name), scale, adapter_name),)
