"""What every bench script shares: ComfyUI imported in this process with the pack loaded (`Comfy`), the test
models as inputs, CPU threads and the load of other processes, and peak memory.

The scripts in this folder import it as `import harness as bm` (this folder is on sys.path when a script runs).
"""
from __future__ import annotations

import asyncio
import json
import os
import resource
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(os.path.abspath(__file__)).resolve().parent.parent
TESTS = REPO / "tests"
PACK_NAME = "MotionKit"
BENCH_MOTION_FILE = "bench_mm_v2_random_fp16.safetensors"


# ---------------------------------------------------------------------------------------------
# Inputs: ComfyUI, checkpoint, motion file

def find_comfyui() -> Path:
    """The ComfyUI the tests use (tests/comfy_env.py: $COMFYUI_PATH, else /opt/ComfyUI, else two folders up)."""
    if str(TESTS) not in sys.path:
        sys.path.insert(0, str(TESTS))
    import comfy_env
    root = comfy_env.find_comfyui()
    if root is None:
        raise SystemExit("no ComfyUI found: set $COMFYUI_PATH to a ComfyUI checkout")
    return root.resolve()


def cache_dir() -> Path:
    d = Path(os.environ.get("MOTIONKIT_TEST_CACHE", Path.home() / ".cache" / "motionkit" / "test_models"))
    d.mkdir(parents=True, exist_ok=True)
    return d


def default_motion_file() -> Path:
    """A random v2 (mm_sd_v15_v2 layout, with mid block) fp16 motion model, built once (tests/motion_files.py)."""
    path = cache_dir() / BENCH_MOTION_FILE
    if path.exists():
        return path
    import torch
    from safetensors.torch import save_file

    import motion_files as mf
    t0 = time.perf_counter()
    sd = mf.v2(seed=1, dtype=torch.float16)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    save_file(sd, str(tmp))
    os.replace(tmp, path)
    print(f"[bench] built {path} ({len(sd)} tensors) in {time.perf_counter() - t0:.1f}s", file=sys.stderr)
    return path


def default_checkpoint(comfyui: Path) -> Path:
    from sd15_checkpoint import cached_sd15_checkpoint
    return cached_sd15_checkpoint(comfyui_root=comfyui)


# ---------------------------------------------------------------------------------------------
# CPU threads and load

def _cpu_jiffies() -> tuple[int, int] | None:
    """(busy, total) jiffies of all CPUs since boot (/proc/stat), or None off Linux."""
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(v) - v[3] - (v[4] if len(v) > 4 else 0), sum(v)


class OtherLoad:
    """CPU cores used by OTHER processes over an interval: all CPUs' busy time (/proc/stat) minus this process's
    own CPU time, per second of wall time. Unlike the load average it is not left over from the minute before."""

    def __init__(self):
        self.start()

    def start(self):
        self.j0, self.c0, self.t0 = _cpu_jiffies(), time.process_time(), time.perf_counter()

    def cores(self) -> float | None:
        j1, c1, t1 = _cpu_jiffies(), time.process_time(), time.perf_counter()
        if self.j0 is None or j1 is None or t1 <= self.t0:
            return None
        busy = (j1[0] - self.j0[0]) / os.sysconf("SC_CLK_TCK")
        return max(0.0, (busy - (c1 - self.c0)) / (t1 - self.t0))


def comfy_setup(comfyui, device_arg: str, fp16: bool, threads_arg: str):
    """What a one-process ADE bench does before loading ComfyUI: tests/ on sys.path, the ComfyUI root (--comfyui, or
    as the tests find it) on sys.path with its argument parsing off, --force-fp16 when asked, the device and threads,
    and the random SD1.5 checkpoint. -> (torch, root, device, threads, threads_note, checkpoint)."""
    sys.path.insert(0, str(TESTS))
    import torch
    if comfyui:
        os.environ["COMFYUI_PATH"] = str(Path(comfyui).resolve())
    root = find_comfyui()
    device = device_arg if device_arg != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    sys.path.insert(0, str(root))
    import comfy.options
    comfy.options.enable_args_parsing(False)
    import comfy.cli_args
    if fp16:
        comfy.cli_args.args.force_fp16 = True
    threads, threads_note = choose_threads(threads_arg, torch)
    return torch, root, device, threads, threads_note, default_checkpoint(root).resolve()


def choose_threads(arg: str, torch) -> tuple[int, str]:
    """Set torch's thread count from --threads and say why: a number is used as given; `auto` samples what other
    processes use right now (1 s) and leaves them their cores: max(1, round(cores - others)) threads (OpenMP
    threads that share a core wait on each other, which makes runs 2-4x slower and noisy). The 1-minute load
    average is not used: it still holds the load of a bench that just ended (the old auto dropped to 1 thread after
    every previous run)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    if arg != "auto":
        n = int(arg)
        torch.set_num_threads(n)
        return n, f"--threads {n}, on {usable} usable cores"
    probe = OtherLoad()
    time.sleep(1.0)
    others = probe.cores()
    if others is None:
        n = torch.get_num_threads()
        return n, f"auto: torch's default ({n}); the load of other processes cannot be read here"
    n = max(1, min(usable, round(usable - others)))
    torch.set_num_threads(n)
    return n, f"auto: other processes used {others:.1f} of {usable} cores in the second before the start"


# ---------------------------------------------------------------------------------------------
# Memory

def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def rss_mib() -> float | None:
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def peak_rss_mib() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:  # not Linux: lifetime peak only
        r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return r / (1024 * 1024) if sys.platform == "darwin" else r / 1024
    return kb / 1024


# ---------------------------------------------------------------------------------------------
# ComfyUI in this process

class StubServer:
    """What PromptExecutor needs of PromptServer when there is no web server."""
    client_id = None
    last_node_id = None
    last_prompt_id = None
    sockets_metadata: dict = {}

    def send_sync(self, event, data, sid=None):
        pass

    def queue_updated(self):
        pass


class Comfy:
    def __init__(self, root: Path, device: str, checkpoint: Path, motion_file: Path, extra_packs: tuple = ()):
        """`extra_packs`: (folder name, path) of other custom node packs to load beside MotionKit, each through a
        symlink in the same temporary custom_nodes folder (bench_ade.py: AnimateDiff-Evolved)."""
        import torch
        sys.path.insert(0, str(root))
        import comfy.options
        comfy.options.enable_args_parsing(False)
        import comfy.cli_args
        if device == "cpu":
            comfy.cli_args.args.cpu = True
        import comfy.model_management as mm  # noqa: E402  (reads args.cpu at import)
        import comfy.utils
        import execution
        import folder_paths
        import nodes

        self.torch, self.mm, self.utils, self.execution, self.nodes = torch, mm, comfy.utils, execution, nodes
        self.device = device
        self.torch_device = mm.get_torch_device()

        self.tmp = tempfile.TemporaryDirectory(prefix="motionkit_bench_")
        base = Path(self.tmp.name)
        for d in ("output", "temp", "input", "custom_nodes"):
            (base / d).mkdir()
        folder_paths.set_output_directory(str(base / "output"))
        folder_paths.set_temp_directory(str(base / "temp"))
        folder_paths.set_input_directory(str(base / "input"))
        folder_paths.add_model_folder_path("checkpoints", str(checkpoint.parent), is_default=True)

        pack = base / "custom_nodes" / PACK_NAME
        os.symlink(REPO, pack, target_is_directory=True)
        load = nodes.load_custom_node(str(pack))
        ok = asyncio.run(load) if asyncio.iscoroutine(load) else load
        if not ok or "MotionKitApplyMotionModel" not in nodes.NODE_CLASS_MAPPINGS:
            raise SystemExit("ComfyUI did not load the MotionKit pack (see the log above)")
        for name, path in extra_packs:
            link = base / "custom_nodes" / name
            os.symlink(Path(path).resolve(), link, target_is_directory=True)
            load = nodes.load_custom_node(str(link))
            if not (asyncio.run(load) if asyncio.iscoroutine(load) else load):
                raise SystemExit(f"ComfyUI did not load the custom node pack {path} (see the log above)")
        # the pack registered animatediff_models when it loaded; add the bench file's folder to it
        folder_paths.add_model_folder_path("animatediff_models", str(motion_file.parent), is_default=True)
        apply_cls = nodes.NODE_CLASS_MAPPINGS["MotionKitApplyMotionModel"]
        self.pack_module = apply_cls.__module__.rsplit(".nodes.", 1)[0]
        self.executor = execution.PromptExecutor(StubServer(), cache_type=execution.CacheType.CLASSIC)
        self.step_times: list[tuple[float, int]] = []  # (time, total) of every progress report
        self.lifetime_peak = 0.0
        comfy.utils.set_progress_bar_global_hook(self._hook)
        self.nodes.interrupt_processing(False)

    def _hook(self, value, total, preview, node_id=None):
        self.step_times.append((time.perf_counter(), total))

    def sync(self):
        if self.device == "cuda":
            self.torch.cuda.synchronize()

    def pack_attr(self, module: str, name: str):
        return getattr(sys.modules[f"{self.pack_module}.{module}"], name)

    def validate(self, prompt: dict, outputs: list[str]):
        valid = asyncio.run(self.execution.validate_prompt(uuid.uuid4().hex, prompt, outputs))
        if not valid[0]:
            raise SystemExit(f"workflow rejected by ComfyUI: {json.dumps(valid[1])[:2000]} {json.dumps(valid[3])[:3000]}")

    def run(self, prompt: dict, output: str) -> dict:
        """Run one workflow; per-step seconds from the progress-bar hook, peak memory of the run."""
        torch = self.torch
        self.step_times = []
        rss_before = rss_mib()
        self.lifetime_peak = max(self.lifetime_peak, peak_rss_mib())  # VmHWM before it is reset
        reset_ok = reset_peak_rss()
        if self.device == "cuda":
            torch.cuda.reset_peak_memory_stats()
        others = OtherLoad()
        t0 = time.perf_counter()
        self.executor.execute(prompt, uuid.uuid4().hex, {}, [output])
        self.sync()
        wall = time.perf_counter() - t0
        other_cores = others.cores()
        if not self.executor.success:
            err = next((d for e, d in self.executor.status_messages if e == "execution_error"), {})
            raise SystemExit(f"workflow failed in node {err.get('node_id')} ({err.get('node_type')}): "
                             f"{err.get('exception_type')}: {err.get('exception_message')}\n"
                             + "".join(err.get("traceback", [])))
        # the sampler's step reports only: its last one ends the run; other bars (context windows report
        # every window, sampling.window_progress) have other totals
        ticks = [t for t, total in self.step_times if total == self.step_times[-1][1]] if self.step_times else []
        intervals = [b - a for a, b in zip(ticks, ticks[1:])]
        out = {"wall_s": wall, "step_callbacks": len(ticks), "step_intervals_s": intervals,
               "s_per_step": statistics.mean(intervals) if intervals else None,
               "rss_before_mib": rss_before, "peak_rss_mib": peak_rss_mib(),
               "peak_rss_reset": reset_ok, "other_processes_cores": other_cores}
        if self.device == "cuda":
            out["cuda_peak_allocated_mib"] = torch.cuda.max_memory_allocated() / 2**20
            out["cuda_peak_reserved_mib"] = torch.cuda.max_memory_reserved() / 2**20
        return out


def widget_defaults(cls) -> dict:
    """The default of every required widget input of a node class (links are filled in by the caller)."""
    out = {}
    for name, spec in cls.INPUT_TYPES().get("required", {}).items():
        if len(spec) > 1 and isinstance(spec[1], dict) and "default" in spec[1]:
            out[name] = spec[1]["default"]
        elif isinstance(spec[0], list) and spec[0]:
            out[name] = spec[0][0]
    return out


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


def fmt(x, spec=".3f"):
    return "n/a" if x is None else format(x, spec)
