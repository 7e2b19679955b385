"""The mapping table: which ADE node becomes which MotionKit node, which ADE settings map to which MotionKit values,
and for the ADE features MotionKit lacks, the MotionKit class (and input) that will provide each (FEATURES): while
it is not in the registry the feature is reported as "MotionKit has no equivalent yet"."""

LOAD, APPLY, CONTEXT, FREEINIT = ("MotionKitLoadMotionModel", "MotionKitApplyMotionModel", "MotionKitContextWindows",
                                  "MotionKitFreeInit")
LORA, KEYFRAME, REGION, I2V = ("MotionKitLoadMotionLoRA", "MotionKitMotionKeyframe", "MotionKitRegionalMotion",
                               "MotionKitI2VImage")
SPARSE_LOAD, SPARSE_KEYS = "MotionKitLoadSparseCtrl", "MotionKitSparseCtrlKeyframes"
FREENOISE = "MotionKitFreeNoise"
SAMPLE_SETTINGS, NOISE_LAYER = "MotionKitSampleSettings", "MotionKitNoiseLayer"
PIA_APPLY = "MotionKitApplyPIAImage"
CAMERA_APPLY, CAMERA_LOAD = "MotionKitApplyCameraCtrl", "MotionKitLoadCameraCtrl"
CAMERA_PRESET, CAMERA_FILE = "MotionKitCameraPosesPreset", "MotionKitCameraPosesFromFile"
CAMERA_MIX = "MotionKitCameraPosesMix"
# ADE's mixed camera motions (6 motions; Combo: each at strength 1) -> Camera Poses Mix's (motion, strength) slots
CAMERA_COMBOS = {"ADE_CameraPoseCombo": False, "ADE_CameraPoseAdvanced": True}  # node -> has strengths
CAMERA_COMBO_SLOTS = 6
PIA_PRESETS = {f"{kind} ({size} Motion)": f"{kind.lower()}, {size.replace('Medium', 'moderate').lower()} motion"
               for kind in ("Animation", "Loop", "Style Transfer") for size in ("Small", "Medium", "Large")}
NOISE_LAYERS = {"ADE_NoiseLayerAdd": "add", "ADE_NoiseLayerAddWeighted": "add_weighted",  # ADE node -> application
                "ADE_NoiseLayerNormalizedSum": "normalized_sum", "ADE_NoiseLayerReplace": "replace"}
GUIDERS = ("CFGGuider", "BasicGuider", "DualCFGGuider", "PerpNegGuider")
MOTION_WINDOWS = "MotionKitMotionWindows"  # motion-only windows = ADE's view options

# ---------------------------------------------------------------------------------------------------------------
# The mapping table. ADE features MotionKit does not have (yet) are one entry each: the MotionKit class (and the
# input) that provides it. While that class (input) is not in the registry the feature is reported as "MotionKit
# has no equivalent yet"; once it is, the converter uses it (for the ones with a conversion written below) or
# names the node to use instead (for the rest).
FEATURES = {
    "view_options": (MOTION_WINDOWS, None),                 # View Options / Views Only context
    "scheduled_context": (CONTEXT, "start_percent"),        # context options' start_percent / guarantee_steps
    "context_chain": (CONTEXT, "start_percent"),            # prev_context: Context Windows chained by start_percent
    "context_ref": ("MotionKitContextRef", None),           # Context Extras: ContextRef
    "naive_reuse": ("MotionKitContextNaiveReuse", None),    # Context Extras: NaiveReuse
    "noise_layers": ("MotionKitNoiseLayer", None),          # Sample Settings: noise_layers
    "seed_options": ("MotionKitSampleSettings", None),      # seed_gen other than comfy, batch/seed offsets, override
    "camera_ctrl": ("MotionKitApplyCameraCtrl", None),      # CameraCtrl
    "pia": ("MotionKitApplyPIAImage", None),                # PIA
    "ad_settings": ("MotionKitMotionModelSettings", None),  # AD Settings: PE / weight adjustments
    "per_block": ("MotionKitPerBlock", None),               # per-block scale/effect (Regional Motion has down/mid/up)
    "custom_cfg": ("MotionKitCustomCFG", None),             # Sample Settings: custom_cfg
    "sigma_schedule": ("MotionKitSigmaSchedule", None),     # Sample Settings: sigma_schedule
    "image_inject": ("MotionKitNoisedImageInjection", None),
    "ancestral_opts": ("MotionKitAncestralOptions", None),
}

# FEATURES whose conversion is written: where the converter reaches them (else "convert it by hand")
CONVERTED_FEATURES = {
    "context_ref": "Context Extras Set in a sampler's context options",
    "naive_reuse": "Context Extras Set in a sampler's context options",
    "noise_layers": "a Sample Settings' noise_layers", "seed_options": "a sampler's Sample Settings",
    "camera_ctrl": "Apply AnimateDiff+CameraCtrl in Use Evolved Sampling's m_models",
    "pia": "Apply AnimateDiff+PIA in Use Evolved Sampling's m_models",
}

LABELS = {"view_options": "view options", "scheduled_context": "scheduled context options",
          "context_chain": "chained context options", "context_ref": "ContextRef", "naive_reuse": "NaiveReuse",
          "noise_layers": "noise layers", "seed_options": "seed options", "camera_ctrl": "CameraCtrl", "pia": "PIA",
          "ad_settings": "AD settings: PE / weight adjustments", "per_block": "per-block settings",
          "custom_cfg": "custom CFG", "sigma_schedule": "sigma schedules", "image_inject": "noised image injection",
          "ancestral_opts": "ancestral options"}

# ADE beta_schedule -> Apply Motion Model's noise_schedule (same schedules; the rest are not in MotionKit)
BETA_SCHEDULES = {
    "autoselect": "autoselect", "use existing": "use model's own",
    "sqrt_linear (AnimateDiff)": "sqrt_linear (AnimateDiff)", "linear (AnimateDiff-SDXL)": "linear (AnimateDiff-SDXL)",
    "linear (HotshotXL/default)": "linear (HotshotXL/default)", "lcm": "lcm (SD default schedule)",
}
FUSE_METHODS = {"pyramid": "pyramid", "flat": "flat", "overlap-linear": "overlap-linear"}
CONTEXT_SCHEDULES = {  # ADE context options node -> Context Windows' schedule
    "ADE_StandardUniformContextOptions": "uniform", "ADE_StandardStaticContextOptions": "static",
    "ADE_LoopedUniformContextOptions": "uniform looped", "ADE_AnimateDiffUniformContextOptions": "uniform looped",
    "ADE_BatchedContextOptions": "batched",
}
VIEW_SCHEDULES = {"ADE_StandardUniformViewOptions": "uniform", "ADE_StandardStaticViewOptions": "static",
                  "ADE_LoopedUniformViewOptions": "uniform looped"}
SPREADS = {"uniform": "uniform", "starting": "from start", "ending": "to end", "center": "centred"}
CONTEXT_AWARE = {"nearest_hint": "nearest hint", "off": "zero condition"}
LOADERS = ("ADE_LoadAnimateDiffModel", "ADE_LoadAnimateLCMI2VModel")
APPLIES = ("ADE_ApplyAnimateDiffModel", "ADE_ApplyAnimateDiffModelSimple", "ADE_ApplyAnimateLCMI2VModel")
GEN1 = ("ADE_AnimateDiffLoaderGen1", "ADE_AnimateDiffLoaderWithContext", "AnimateDiffLoaderV1",
        "ADE_AnimateDiffLoaderV1Advanced")
SINKS = ("ADE_UseEvolvedSampling", *GEN1)
# nodes not converted and why (beyond FEATURES): shown in the report
UNSUPPORTED = {
    "ADE_ApplyAnimateDiffModelWithCameraCtrl": "camera_ctrl", "ADE_LoadAnimateDiffModelWithCameraCtrl": "camera_ctrl",
    "ADE_CameraCtrlAnimateDiffKeyframe": "camera_ctrl", "ADE_ApplyAnimateDiffModelWithPIA": "pia",
    "ADE_InjectPIAIntoAnimateDiffModel": "pia", "ADE_PIA_AnimateDiffKeyframe": "pia",
    "ADE_InputPIA_Multival": "pia", "ADE_InputPIA_PaperPresets": "pia",
    "ADE_ContextExtras_ContextRef": "context_ref", "ADE_ContextExtras_NaiveReuse": "naive_reuse",
    "ADE_NoiseLayerAdd": "noise_layers", "ADE_NoiseLayerAddWeighted": "noise_layers",
    "ADE_NoiseLayerNormalizedSum": "noise_layers", "ADE_NoiseLayerReplace": "noise_layers",
    "ADE_AnimateDiffSettings": "ad_settings", "ADE_CustomCFG": "custom_cfg", "ADE_CustomCFGSimple": "custom_cfg",
    "ADE_SigmaSchedule": "sigma_schedule", "ADE_NoisedImageInjection": "image_inject",
    "ADE_AncestralOptions": "ancestral_opts",
}
# the ADE / ACN node types converted (tests/test_ade_import.py converts each)
COVERED = (
    "ADE_LoadAnimateDiffModel", "ADE_ApplyAnimateDiffModel", "ADE_ApplyAnimateDiffModelSimple", "ADE_UseEvolvedSampling",
    "ADE_AnimateDiffLoaderGen1", "ADE_AnimateDiffLoaderWithContext", "AnimateDiffLoaderV1",
    "ADE_AnimateDiffLoaderV1Advanced", "ADE_AnimateDiffLoRALoader", "ADE_MultivalDynamic", "ADE_MultivalScaledMask",
    "ADE_MultivalDynamicFloatInput", "ADE_AnimateDiffKeyframe", "ADE_StandardUniformContextOptions",
    "ADE_StandardStaticContextOptions", "ADE_LoopedUniformContextOptions", "ADE_AnimateDiffUniformContextOptions",
    "ADE_BatchedContextOptions", "ADE_ContextExtras_Set", "ADE_AnimateDiffSamplingSettings",
    "ADE_IterationOptsFreeInit", "ADE_IterationOptsDefault", "ADE_LoadAnimateLCMI2VModel",
    "ADE_ApplyAnimateLCMI2VModel", "ADE_UpscaleAndVAEEncode", "ACN_SparseCtrlLoaderAdvanced",
    "ACN_SparseCtrlIndexMethodNode", "ACN_SparseCtrlSpreadMethodNode", "ACN_SparseCtrlRGBPreprocessor",
    "CheckpointLoaderSimpleWithNoiseSelect", "ADE_EmptyLatentImageLarge", "ADE_AnimateDiffUnload",
    "ADE_AnimateDiffCombine",
)
# once MotionKit has Motion Windows (FEATURES["view_options"]): the View Options nodes and Views Only context
VIEWS = ("ADE_StandardUniformViewOptions", "ADE_StandardStaticViewOptions", "ADE_LoopedUniformViewOptions",
         "ADE_ViewsOnlyContextOptions")
# why the rest is kept, by name prefix: a FEATURES key, or the reason itself
KEPT_BY_PREFIX = (
    ("ADE_AdjustPE", "ad_settings"), ("ADE_AdjustWeight", "ad_settings"), ("ADE_AnimateDiffModelSettings", "ad_settings"),
    ("ADE_PerBlock", "per_block"), ("ADE_ADBlock", "per_block"),
    ("ADE_Camera", "camera_ctrl"), ("ADE_LoadCameraPoses", "camera_ctrl"), ("ADE_ReplaceCamera", "camera_ctrl"),
    ("ADE_ReplaceOriginalPose", "camera_ctrl"), ("ADE_ContextExtras_ContextRef", "context_ref"),
    ("ADE_ContextExtras_NaiveReuse", "naive_reuse"), ("ADE_CustomCFG", "custom_cfg"), ("ADE_CFGExtras", "custom_cfg"),
    ("ADE_SigmaSchedule", "sigma_schedule"), ("ADE_RawSigmaSchedule", "sigma_schedule"),
    ("ADE_NoisedImageInject", "image_inject"), ("ADE_NoiseLayer", "noise_layers"),
    ("ADE_PromptScheduling", "ADE's prompt scheduling: MotionKit's Prompt Schedule uses another syntax (convert by "
                             "hand)"),
    ("ADE_ValueScheduling", "ADE's value scheduling: MotionKit has no equivalent yet"),
    ("ADE_Visualize", "a preview of context windows: MotionKit has no equivalent yet"),
    ("ADE_Multival", "a multival not feeding a converted node: MotionKit has no equivalent yet (it takes one "
                     "value times a mask, on the node itself)"),
    ("ADE_RegisterLoraHook", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
    ("ADE_RegisterModelAsLoraHook", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
    ("ADE_CombineLoraHooks", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
    ("ADE_LoraHook", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
    ("ADE_SetLoraHook", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
    ("ADE_AttachLoraHook", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
    ("ADE_Paired", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
    ("ADE_Conditioning", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
    ("ADE_TimestepsConditioning", "deprecated in ADE itself (ComfyUI's own hook nodes replace it): kept"),
)
ADE_PREFIXES = ("ADE_", "AnimateDiff", "ACN_SparseCtrl", "CheckpointLoaderSimpleWithNoiseSelect")
# core nodes some ADE nodes become (core's inputs, which every ComfyUI has)
CORE_SPECS = {
    "CheckpointLoaderSimple": {"inputs": [{"name": "ckpt_name", "type": "COMBO", "widget": True, "options": []}],
                               "outputs": ["MODEL", "CLIP", "VAE"], "output_names": ["MODEL", "CLIP", "VAE"]},
    "EmptyLatentImage": {"inputs": [{"name": n, "type": "INT", "widget": True, "default": d}
                                    for n, d in (("width", 512), ("height", 512), ("batch_size", 1))],
                         "outputs": ["LATENT"], "output_names": ["LATENT"]},
}
SAVE_FORMATS = {"image/gif": "gif", "image/webp": "webp", "video/h264-mp4": "mp4", "video/webm": "webm"}
