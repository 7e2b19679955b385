"""Build UI-format workflows with ADE's nodes as the ComfyUI frontend saves them, from ADE's input specs
(ade_import/ade_nodes.json, ADE 90fb133): widgets_values in INPUT_TYPES order with control_after_generate after
seed INTs, socket inputs listed with their links. Other nodes (core, VideoHelperSuite) are given their sockets."""
from __future__ import annotations

import json
from pathlib import Path

SPECS = json.loads((Path(__file__).resolve().parent.parent / "ade_import" / "ade_nodes.json").read_text())["nodes"]


def default(entry):
    if "default" in entry:
        return entry["default"]
    if entry["type"] == "COMBO":
        return entry["options"][0] if entry.get("options") else "model.safetensors"
    return {"INT": 0, "FLOAT": 0.0, "STRING": "", "BOOLEAN": False}[entry["type"]]


class UIGraph:
    def __init__(self):
        self.nodes, self.links = [], []
        self.by_id = {}
        self.last_link = 0

    def ade(self, kind: str, pos=None, **values) -> int:
        """An ADE node; `values` by input name (the rest at ADE's defaults)."""
        spec = SPECS[kind]
        unknown = set(values) - {e["name"] for e in spec["inputs"]}
        assert not unknown, f"{kind} has no inputs {unknown}"
        widgets = []
        for e in spec["inputs"]:
            if e["widget"]:
                widgets.append(values.get(e["name"], default(e)))
                if e.get("control_after_generate"):
                    widgets.append("randomize")
        inputs = [{"name": e["name"], "type": e["type"], "link": None} for e in spec["inputs"] if not e["widget"]
                  and not e.get("ui_widget")]
        outputs = [{"name": n, "type": t, "links": []} for t, n in zip(spec["outputs"], spec["output_names"])]
        return self.node(kind, inputs, outputs, widgets, pos)

    def node(self, kind, inputs, outputs, widgets=None, pos=None) -> int:
        nid = max(self.by_id, default=0) + 1
        if isinstance(inputs, dict):
            inputs = [{"name": n, "type": t, "link": None} for n, t in inputs.items()]
        if isinstance(outputs, (list, tuple)) and outputs and isinstance(outputs[0], str):
            outputs = [{"name": t, "type": t, "links": []} for t in outputs]
        node = {"id": nid, "type": kind, "pos": list(pos or [100 * nid, 50 * nid]), "size": [300, 120], "flags": {},
                "order": nid, "mode": 0, "inputs": inputs, "outputs": outputs,
                "properties": {"Node name for S&R": kind},
                "widgets_values": widgets if isinstance(widgets, dict) else list(widgets or [])}
        self.nodes.append(node)
        self.by_id[nid] = node
        return nid

    def link(self, src: int, src_slot: int, dst: int, name: str, widget: bool = False) -> int:
        self.last_link += 1
        lid = self.last_link
        s, d = self.by_id[src], self.by_id[dst]
        kind = s["outputs"][src_slot]["type"]
        slot = next((i for i, inp in enumerate(d["inputs"]) if inp["name"] == name), None)
        if slot is None:  # a widget converted to a socket
            assert widget, f"{d['type']} has no socket {name}"
            d["inputs"].append({"name": name, "type": kind, "widget": {"name": name}, "link": None})
            slot = len(d["inputs"]) - 1
        old = d["inputs"][slot]["link"]
        if old is not None:  # an input takes one link: the new one replaces it
            gone = next(l for l in self.links if l[0] == old)
            self.links.remove(gone)
            self.by_id[gone[1]]["outputs"][gone[2]]["links"].remove(old)
        d["inputs"][slot]["link"] = lid
        s["outputs"][src_slot]["links"].append(lid)
        self.links.append([lid, src, src_slot, dst, slot, kind])
        return lid

    def workflow(self) -> dict:
        return {"last_node_id": max(self.by_id), "last_link_id": self.last_link, "nodes": self.nodes,
                "links": self.links, "groups": [], "config": {}, "extra": {}, "version": 0.4}


def sd_base(g: UIGraph):
    """Checkpoint, prompts, empty latent, KSampler, decode, VHS Video Combine: (ckpt, ksampler) ids."""
    ckpt = g.node("CheckpointLoaderSimple", {}, ["MODEL", "CLIP", "VAE"], ["sd15.safetensors"], pos=[0, 0])
    pos_ = g.node("CLIPTextEncode", {"clip": "CLIP"}, ["CONDITIONING"], ["a cat"], pos=[400, 0])
    neg = g.node("CLIPTextEncode", {"clip": "CLIP"}, ["CONDITIONING"], ["bad"], pos=[400, 200])
    lat = g.node("EmptyLatentImage", {}, ["LATENT"], [512, 512, 32], pos=[400, 400])
    ks = g.node("KSampler", {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING",
                             "latent_image": "LATENT"}, ["LATENT"], [1, "fixed", 20, 7.5, "euler", "normal", 1.0],
                pos=[900, 0])
    dec = g.node("VAEDecode", {"samples": "LATENT", "vae": "VAE"}, ["IMAGE"], pos=[1200, 0])
    vhs = g.node("VHS_VideoCombine", {"images": "IMAGE", "audio": "AUDIO", "meta_batch": "VHS_BatchManager",
                                      "vae": "VAE"}, ["VHS_FILENAMES"],
                 {"frame_rate": 8, "loop_count": 0, "filename_prefix": "AnimateDiff", "format": "video/h264-mp4",
                  "pingpong": False, "save_output": True}, pos=[1500, 0])
    g.link(ckpt, 1, pos_, "clip")
    g.link(ckpt, 1, neg, "clip")
    g.link(pos_, 0, ks, "positive")
    g.link(neg, 0, ks, "negative")
    g.link(lat, 0, ks, "latent_image")
    g.link(ks, 0, dec, "samples")
    g.link(ckpt, 2, dec, "vae")
    g.link(dec, 0, vhs, "images")
    return ckpt, ks


def large_graph() -> dict:
    """A vid2vid workflow as ADE users build them (made for the tests from the node definitions, not copied from
    anyone's file): IPAdapter and a LoRA on the model, prompt travel, VideoHelperSuite video in and out, OpenPose
    through Advanced-ControlNet, depth through core's ControlNet, SparseCtrl RGB keyframes, ADE Gen2 with a motion
    LoRA, effect multival, keyframes, AD settings, context options and sample settings, then an upscale pass with a
    Gen1 loader saved by an older ADE; reroutes, a seed primitive, old-frontend {"0": x, "1": y} positions."""
    g = UIGraph()
    S = {"model": "MODEL", "clip": "CLIP"}
    ckpt = g.node("CheckpointLoaderSimple", {}, ["MODEL", "CLIP", "VAE"], ["dreamshaper_8.safetensors"], [0, 0])
    lora = g.node("LoraLoader", S, ["MODEL", "CLIP"], ["add_detail.safetensors", 0.6, 0.6], [0, 200])
    vae = g.node("VAELoader", {}, ["VAE"], ["vae-ft-mse-840000-ema-pruned.safetensors"], [0, 400])
    skip = g.node("CLIPSetLastLayer", {"clip": "CLIP"}, ["CLIP"], [-2], [0, 550])
    ipa_loader = g.node("IPAdapterUnifiedLoader", {"model": "MODEL", "ipadapter": "IPADAPTER"},
                        ["MODEL", "IPADAPTER"], ["PLUS (high strength)"], [350, 0])
    ref = g.node("LoadImage", {}, ["IMAGE", "MASK"], ["style_ref.png", "image"], [350, 200])
    ipa = g.node("IPAdapterAdvanced", {"model": "MODEL", "ipadapter": "IPADAPTER", "image": "IMAGE",
                                       "image_negative": "IMAGE", "attn_mask": "MASK", "clip_vision": "CLIP_VISION"},
                 ["MODEL"], [0.7, "linear", "concat", 0.0, 1.0, "V only"], [700, 0])
    travel = g.node("BatchPromptSchedule", {"clip": "CLIP"}, ["CONDITIONING", "CONDITIONING"],
                    ['"0": "a dancer in a red dress, city at night",\n"32": "a dancer in a blue dress, snow"',
                     48, False, "", "", 0, 0, 0, 0], [350, 450])
    neg = g.node("CLIPTextEncode", {"clip": "CLIP"}, ["CONDITIONING"], ["worst quality, watermark"], [350, 750])
    video = g.node("VHS_LoadVideo", {"meta_batch": "VHS_BatchManager", "vae": "VAE"},
                   ["IMAGE", "INT", "AUDIO", "VHS_VIDEOINFO"],
                   {"video": "dance.mp4", "force_rate": 12, "custom_width": 512, "custom_height": 768,
                    "frame_load_cap": 48, "skip_first_frames": 0, "select_every_nth": 1,
                    "choose video to upload": "image"}, [0, 900])
    info = g.node("VHS_VideoInfo", {"video_info": "VHS_VIDEOINFO"}, ["FLOAT", "INT", "FLOAT", "INT", "INT"], [],
                  [0, 1300])
    scale = g.node("ImageScale", {"image": "IMAGE"}, ["IMAGE"], ["lanczos", 512, 768, "center"], [350, 900])
    encode = g.node("VAEEncode", {"pixels": "IMAGE", "vae": "VAE"}, ["LATENT"], [], [700, 900])
    pose = g.node("DWPreprocessor", {"image": "IMAGE"}, ["IMAGE", "POSE_KEYPOINT"],
                  ["enable", "enable", "enable", 512, "yolox_l.onnx", "dw-ll_ucoco_384.onnx"], [350, 1100])
    pose_cn = g.node("ControlNetLoaderAdvanced", {"tk_optional": "TIMESTEP_KEYFRAME"}, ["CONTROL_NET"],
                     ["control_v11p_sd15_openpose.pth"], [700, 1100])
    acn_apply = g.node("ACN_AdvancedControlNetApply", {
        "positive": "CONDITIONING", "negative": "CONDITIONING", "control_net": "CONTROL_NET", "image": "IMAGE",
        "mask_optional": "MASK", "timestep_kf": "TIMESTEP_KEYFRAME", "latent_kf_override": "LATENT_KEYFRAME",
        "weights_override": "CONTROL_NET_WEIGHTS", "model_optional": "MODEL", "vae_optional": "VAE"},
        ["CONDITIONING", "CONDITIONING", "MODEL"], [0.8, 0.0, 0.9], [1050, 450])
    depth = g.node("DepthAnythingPreprocessor", {"image": "IMAGE"}, ["IMAGE"],
                   ["depth_anything_vitl14.pth", 512], [350, 1300])
    depth_cn = g.node("ControlNetLoader", {}, ["CONTROL_NET"], ["control_v11f1p_sd15_depth.pth"], [700, 1300])
    cn_apply = g.node("ControlNetApplyAdvanced", {"positive": "CONDITIONING", "negative": "CONDITIONING",
                                                  "control_net": "CONTROL_NET", "image": "IMAGE", "vae": "VAE"},
                      ["CONDITIONING", "CONDITIONING"], [0.5, 0.0, 0.8], [1400, 450])
    sparse = g.ade("ACN_SparseCtrlLoaderAdvanced", pos=[700, 1500], sparsectrl_name="v3_sd15_sparsectrl_rgb.ckpt",
                   motion_strength=0.9)
    spread = g.ade("ACN_SparseCtrlSpreadMethodNode", pos=[350, 1500], spread="starting")
    keyframes = g.node("VHS_SelectEveryNthImage", {"images": "IMAGE"}, ["IMAGE", "INT"], [16, 0], [0, 1500])
    rgb = g.ade("ACN_SparseCtrlRGBPreprocessor", pos=[350, 1700])
    sparse_apply = g.node("ControlNetApplyAdvanced", {"positive": "CONDITIONING", "negative": "CONDITIONING",
                                                      "control_net": "CONTROL_NET", "image": "IMAGE", "vae": "VAE"},
                          ["CONDITIONING", "CONDITIONING"], [0.6, 0.0, 0.5], [1750, 450])
    pe = g.ade("ADE_AdjustPEFullStretch", pos=[700, 200])
    ad_settings = g.ade("ADE_AnimateDiffSettings", pos=[1050, 200])
    mm = g.ade("ADE_LoadAnimateDiffModel", pos=[1400, 200], model_name="v3_sd15_mm.ckpt")
    mlora = g.ade("ADE_AnimateDiffLoRALoader", pos=[1400, 0], name="v2_lora_PanLeft.ckpt", strength=0.4)
    effect = g.ade("ADE_MultivalDynamic", pos=[1400, -200], float_val=1.1)
    kf1 = g.ade("ADE_AnimateDiffKeyframe", pos=[1750, -400], start_percent=0.0)
    kf_effect = g.ade("ADE_MultivalDynamic", pos=[1400, -400], float_val=0.6)
    kf2 = g.ade("ADE_AnimateDiffKeyframe", pos=[2100, -400], start_percent=0.6, guarantee_steps=2)
    apply_ = g.ade("ADE_ApplyAnimateDiffModel", pos=[1750, 0], end_percent=0.95)
    ctx = g.ade("ADE_StandardUniformContextOptions", pos=[1750, 250], context_length=16, context_overlap=4)
    iters = g.ade("ADE_IterationOptsDefault", pos=[1750, 700])
    settings = g.ade("ADE_AnimateDiffSamplingSettings", pos=[2100, 700])
    use = g.ade("ADE_UseEvolvedSampling", pos=[2100, 0], beta_schedule="autoselect")
    reroute = g.node("Reroute", [{"name": "", "type": "*", "link": None}],
                     [{"name": "", "type": "MODEL", "links": []}], [], [2400, 0])
    seed = g.node("PrimitiveNode", [], [{"name": "INT", "type": "INT", "links": [], "widget": {"name": "seed"}}],
                  [123456789, "fixed"], [2400, 300])
    ks = g.node("KSampler", {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING",
                             "latent_image": "LATENT"}, ["LATENT"],
                [123456789, "fixed", 25, 7.0, "dpmpp_2m", "karras", 0.75], [2600, 0])
    dec = g.node("VAEDecode", {"samples": "LATENT", "vae": "VAE"}, ["IMAGE"], [], [2950, 0])
    out1 = g.node("VHS_VideoCombine", {"images": "IMAGE", "audio": "AUDIO", "meta_batch": "VHS_BatchManager",
                                       "vae": "VAE"}, ["VHS_FILENAMES"],
                  {"frame_rate": 12, "loop_count": 0, "filename_prefix": "dance", "format": "video/h264-mp4",
                   "pix_fmt": "yuv420p", "crf": 19, "save_metadata": True, "pingpong": False, "save_output": True},
                  [3250, 0])
    upscale = g.node("LatentUpscaleBy", {"samples": "LATENT"}, ["LATENT"], ["nearest-exact", 1.5], [2950, 400])
    ctx2 = g.ade("ADE_LoopedUniformContextOptions", pos=[2950, 650])
    ctx2_node = g.by_id[ctx2]
    ctx2_node["widgets_values"] = [16, 1, 4, False, "flat", False, 0, 1]
    gen1 = g.ade("ADE_AnimateDiffLoaderWithContext", pos=[3250, 400])
    g.by_id[gen1]["widgets_values"] = ["v3_sd15_mm.ckpt", "sqrt_linear (AnimateDiff)"]  # an older ADE's two widgets
    ks2 = g.node("KSampler", {"model": "MODEL", "positive": "CONDITIONING", "negative": "CONDITIONING",
                              "latent_image": "LATENT"}, ["LATENT"],
                 [123456789, "fixed", 15, 7.0, "dpmpp_2m", "karras", 0.45], [3600, 400])
    dec2 = g.node("VAEDecode", {"samples": "LATENT", "vae": "VAE"}, ["IMAGE"], [], [3950, 400])
    up_model = g.node("UpscaleModelLoader", {}, ["UPSCALE_MODEL"], ["4x-UltraSharp.pth"], [3950, 600])
    up = g.node("ImageUpscaleWithModel", {"upscale_model": "UPSCALE_MODEL", "image": "IMAGE"}, ["IMAGE"], [],
                [4250, 400])
    vfi = g.node("RIFE VFI", {"frames": "IMAGE", "optional_interpolation_states": "INTERPOLATION_STATES"},
                 ["IMAGE"], ["rife47.pth", 10, 2, True, True, 1.0], [4550, 400])
    out2 = g.node("VHS_VideoCombine", {"images": "IMAGE", "audio": "AUDIO", "meta_batch": "VHS_BatchManager",
                                       "vae": "VAE"}, ["VHS_FILENAMES"],
                  {"frame_rate": 24, "loop_count": 0, "filename_prefix": "dance_hires", "format": "video/h264-mp4",
                   "pix_fmt": "yuv420p", "crf": 17, "save_metadata": True, "pingpong": False, "save_output": True},
                  [4850, 400])
    prev1 = g.node("PreviewImage", {"images": "IMAGE"}, [], [], [700, 1700])
    prev2 = g.node("PreviewImage", {"images": "IMAGE"}, [], [], [1050, 1700])
    g.node("Note", {}, [], ["Load dance.mp4 into input/. Motion: v3_sd15_mm + PanLeft LoRA."], [0, -300])
    L = g.link
    L(ckpt, 0, lora, "model"); L(ckpt, 1, lora, "clip"); L(lora, 1, skip, "clip")  # noqa: E702
    L(lora, 0, ipa_loader, "model"); L(ipa_loader, 0, ipa, "model"); L(ipa_loader, 1, ipa, "ipadapter")  # noqa: E702
    L(ref, 0, ipa, "image"); L(skip, 0, travel, "clip"); L(skip, 0, neg, "clip")  # noqa: E702
    L(vae, 0, video, "vae"); L(video, 3, info, "video_info"); L(video, 0, scale, "image")  # noqa: E702
    L(scale, 0, encode, "pixels"); L(vae, 0, encode, "vae"); L(scale, 0, pose, "image")  # noqa: E702
    L(travel, 0, acn_apply, "positive"); L(neg, 0, acn_apply, "negative")  # noqa: E702
    L(pose_cn, 0, acn_apply, "control_net"); L(pose, 0, acn_apply, "image")  # noqa: E702
    L(scale, 0, depth, "image"); L(acn_apply, 0, cn_apply, "positive"); L(acn_apply, 1, cn_apply, "negative")  # noqa
    L(depth_cn, 0, cn_apply, "control_net"); L(depth, 0, cn_apply, "image")  # noqa: E702
    L(spread, 0, sparse, "sparse_method"); L(video, 0, keyframes, "images")  # noqa: E702
    L(keyframes, 0, rgb, "image"); L(vae, 0, rgb, "vae"); L(encode, 0, rgb, "latent_size")  # noqa: E702
    L(cn_apply, 0, sparse_apply, "positive"); L(cn_apply, 1, sparse_apply, "negative")  # noqa: E702
    L(sparse, 0, sparse_apply, "control_net"); L(rgb, 0, sparse_apply, "image")  # noqa: E702
    L(pe, 0, ad_settings, "pe_adjust"); L(ad_settings, 0, mm, "ad_settings")  # noqa: E702
    L(mm, 0, apply_, "motion_model"); L(mlora, 0, apply_, "motion_lora"); L(effect, 0, apply_, "effect_multival")  # noqa
    L(kf_effect, 0, kf2, "effect_multival"); L(kf1, 0, kf2, "prev_ad_keyframes"); L(kf2, 0, apply_, "ad_keyframes")  # noqa
    L(iters, 0, settings, "iteration_opts"); L(ipa, 0, use, "model"); L(apply_, 0, use, "m_models")  # noqa: E702
    L(ctx, 0, use, "context_options"); L(settings, 0, use, "sample_settings"); L(use, 0, reroute, "")  # noqa: E702
    L(reroute, 0, ks, "model"); L(sparse_apply, 0, ks, "positive"); L(sparse_apply, 1, ks, "negative")  # noqa: E702
    L(encode, 0, ks, "latent_image"); L(seed, 0, ks, "seed", widget=True)  # noqa: E702
    L(ks, 0, dec, "samples"); L(vae, 0, dec, "vae"); L(dec, 0, out1, "images")  # noqa: E702
    L(video, 2, out1, "audio"); L(ks, 0, upscale, "samples")  # noqa: E702
    L(ipa, 0, gen1, "model"); L(ctx2, 0, gen1, "context_options"); L(gen1, 0, ks2, "model")  # noqa: E702
    L(sparse_apply, 0, ks2, "positive"); L(sparse_apply, 1, ks2, "negative"); L(upscale, 0, ks2, "latent_image")  # noqa
    L(seed, 0, ks2, "seed", widget=True); L(ks2, 0, dec2, "samples"); L(vae, 0, dec2, "vae")  # noqa: E702
    L(up_model, 0, up, "upscale_model"); L(dec2, 0, up, "image"); L(up, 0, vfi, "frames")  # noqa: E702
    L(vfi, 0, out2, "images"); L(video, 2, out2, "audio"); L(pose, 0, prev1, "images")  # noqa: E702
    L(depth, 0, prev2, "images")
    for nid in (ckpt, travel, mm, apply_, ks):  # saved by an old frontend
        node = g.by_id[nid]
        node["pos"] = {"0": node["pos"][0], "1": node["pos"][1]}
        node["size"] = {"0": node["size"][0], "1": node["size"][1]}
    g.by_id[apply_]["inputs"][0]["label"] = "motion model"
    wf = g.workflow()
    wf["groups"] = [{"title": "AnimateDiff", "bounding": [1350, -450, 1100, 1300], "color": "#A88", "font_size": 24}]
    return wf


if __name__ == "__main__":  # regenerate the fixture
    out = Path(__file__).resolve().parent / "data" / "ade_large_controlnet_vhs.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(large_graph(), indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    print(out)
