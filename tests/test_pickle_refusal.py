"""A pickle that holds code is refused and said to hold code; torch's advice to load it another way
(weights_only=False, add_safe_globals) never reaches the message. Motion models (motion/formats.py), SparseCtrl
files (control/sparsectrl.py) and the training optimizer sidecar (training/checkpoint.py). No ComfyUI."""
from __future__ import annotations

import os
import pickle

import pytest
import torch

from motionkit.control.sparsectrl.errors import SparseCtrlError
from motionkit.control.sparsectrl.files import read_file as read_sparsectrl
from motionkit.motion.errors import MotionKitError
from motionkit.motion.formats import read_state_dict
from motionkit.common.pickle_check import code_in_pickle
from motionkit.training import checkpoint
from motionkit.training.errors import TrainingError

ADVICE = ("weights_only", "add_safe_globals", "arbitrary code", "Weights only load failed", "corrupt")


class RunsCode:
    """Unpickling calls os.makedirs(marker): proof of execution if the directory appears."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def code_files(tmp_path):
    """(name, path, marker) of pickles that call os.makedirs when loaded the usual way, in each way one is written:
    torch.save's zip and legacy formats (protocol 2: torch reports "GLOBAL"), torch.save with protocol 4 and a plain
    pickle.dumps (protocol 4+: torch stops at FRAME, "Unsupported operand 149", before it sees the code)."""
    out = []
    for name, write in [
        ("zip.ckpt", lambda o, p: torch.save(o, p)),
        ("legacy.ckpt", lambda o, p: torch.save(o, p, _use_new_zipfile_serialization=False)),
        ("zip_p4.ckpt", lambda o, p: torch.save(o, p, pickle_protocol=4)),
        ("plain.ckpt", lambda o, p: open(p, "wb").write(pickle.dumps(o, protocol=pickle.HIGHEST_PROTOCOL))),
    ]:
        marker = tmp_path / f"ran_{name}"
        path = tmp_path / name
        write({"w": torch.zeros(2), "config": RunsCode(str(marker))}, str(path))
        out.append((name, path, marker))
    return out


def assert_says_code(message: str, name: str):
    assert f"'{name}'" in message and "holds code (" in message and "makedirs" in message, message
    assert "refused it and ran none of it" in message, message
    for advice in ADVICE:
        assert advice not in message, (advice, message)


def test_code_in_pickle_lists_only_what_torch_does_not_allow(tmp_path):
    for name, path, _ in code_files(tmp_path):
        found = code_in_pickle(str(path))
        assert "os.makedirs" in found or "posix.makedirs" in found, (name, found)
    plain = tmp_path / "weights.ckpt"
    torch.save({"w": torch.zeros(2)}, str(plain), pickle_protocol=4)
    assert code_in_pickle(str(plain)) == []  # torch's own rebuild functions are allowed
    (tmp_path / "page.ckpt").write_bytes(b"<html>not a model</html>")
    assert code_in_pickle(str(tmp_path / "page.ckpt")) == []


def test_motion_model_with_code_is_refused_as_code(tmp_path):
    for name, path, marker in code_files(tmp_path):
        with pytest.raises(MotionKitError) as e:
            read_state_dict(str(path))
        assert not marker.exists(), "unpickling ran code from the file"
        assert_says_code(str(e.value), name)


def test_sparsectrl_file_with_code_is_refused_as_code(tmp_path):
    for name, path, marker in code_files(tmp_path):
        with pytest.raises(SparseCtrlError) as e:
            read_sparsectrl(str(path))
        assert not marker.exists()
        assert_says_code(str(e.value), name)


def test_damaged_file_is_corrupt_without_torchs_advice(tmp_path):
    page = tmp_path / "page.ckpt"
    page.write_bytes(b"<html>not a model</html>")  # torch: "Weights only load failed ... Unsupported operand 60"
    for read, error in ((read_state_dict, MotionKitError), (read_sparsectrl, SparseCtrlError)):
        with pytest.raises(error) as e:
            read(str(page))
        message = str(e.value)
        assert "corrupt or incomplete" in message and "holds code" not in message, message
        assert "weights_only" not in message and "add_safe_globals" not in message, message


def test_training_sidecar_with_code_is_refused_as_code(tmp_path):
    from motion_files import motion_lora as published

    path = tmp_path / "resume.safetensors"
    checkpoint.save(str(path), published(rank=4, mid=False, device="cpu"), checkpoint.Metadata(step=1, rank=4))
    marker = tmp_path / "ran"
    torch.save({"state": {}, "hook": RunsCode(str(marker))}, str(path) + checkpoint.SIDECAR)
    with pytest.raises(TrainingError) as e:
        checkpoint.load(str(path))
    assert not marker.exists()
    assert_says_code(str(e.value), "resume.safetensors.trainstate")
    assert "delete it" in str(e.value).lower()


def test_existing_target_is_named_without_its_host_folder(tmp_path):
    path = tmp_path / "zoom.safetensors"
    path.write_bytes(b"x")
    for shown, expected in ((None, "'zoom.safetensors' already exists"),
                            ("'zoom.safetensors' in ComfyUI's models/animatediff_motion_lora folder",
                             "'zoom.safetensors' in ComfyUI's models/animatediff_motion_lora folder already exists")):
        with pytest.raises(TrainingError) as e:
            checkpoint.check_target(str(path), overwrite=False, shown=shown)
        assert expected in str(e.value) and str(tmp_path) not in str(e.value), str(e.value)
