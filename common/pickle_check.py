"""Why torch's weights-only loader refused a file, told without torch's own advice.

torch.load(weights_only=True) never runs pickled code, but its error text advises re-running with
`weights_only=False` or `add_safe_globals([...])`: both would run the code. Its wording also does not say
whether the file holds code: a pickle written with protocol 4 fails on its first FRAME opcode, an HTML page
saved as .ckpt on '<'. So after a refusal the pickle is disassembled (pickletools, nothing is run) and the
callables it imports are listed; those outside torch's weights-only allow-list are the code.
"""
from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from typing import BinaryIO, List, Set

REFUSED = "Weights only load failed"
_STRINGS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}
_PUSH_MEMO = {"GET", "BINGET", "LONG_BINGET"}
_NO_PUSH = {"MARK", "FRAME", "PROTO", "PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE", "STOP", "POP", "POP_MARK"}


def refused_by_weights_only(error: BaseException) -> bool:
    return isinstance(error, pickle.UnpicklingError) and REFUSED in str(error)


def _imports(stream: BinaryIO) -> Set[str]:
    """'module.name' of every callable one pickle imports (GLOBAL, INST, STACK_GLOBAL; EXT codes as 'copyreg
    extension'), read up to its STOP. STACK_GLOBAL takes the two strings before it, also through the memo."""
    found: Set[str] = set()
    pushed: list = []
    memo: dict = {}
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name in ("GLOBAL", "INST"):
            found.add(".".join(str(arg).split(" ", 1)))
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            module, attr = (pushed[-2:] if len(pushed) >= 2 else [None, None])
            found.add(f"{module}.{attr}" if isinstance(module, str) and isinstance(attr, str) else "unknown global")
            pushed.append(None)
        elif name.startswith("EXT"):
            found.add("copyreg extension")
            pushed.append(None)
        elif name in _STRINGS:
            pushed.append(arg if isinstance(arg, str) else arg.decode("latin-1") if isinstance(arg, bytes) else None)
        elif name in _PUSH_MEMO:
            pushed.append(memo.get(arg))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif name not in _NO_PUSH:
            pushed.append(None)
        if name == "STOP":
            break
    return found


def code_in_pickle(path: str) -> List[str]:
    """The callables the file's pickle(s) import that torch's weights-only loader does not allow, sorted; [] for
    none or for a file that is no pickle at all. Reads torch's zip format (data.pkl) and the legacy format / plain
    pickles (up to the 5 pickles the legacy format holds before its raw tensor bytes)."""
    from torch import _weights_only_unpickler as wo  # the allow-list torch.load(weights_only=True) applies
    allowed = set(wo._get_allowed_globals()) | set(wo._get_user_allowed_globals())
    found: Set[str] = set()
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                streams = [io.BytesIO(z.read(n)) for n in z.namelist() if n.endswith("data.pkl")]
        else:
            streams = [open(path, "rb")]
    except (OSError, zipfile.BadZipFile):
        return []
    for stream in streams:
        with stream:
            for _ in range(5):
                try:
                    found |= _imports(stream)
                except Exception:  # noqa: BLE001 - past the last pickle, or not a pickle: nothing more to list
                    break
    return sorted(found - allowed)


def reason(error: BaseException) -> str:
    """A load error in a few words: torch's weights-only text replaced (its advice would run the code)."""
    if refused_by_weights_only(error):
        return "it is not a PyTorch weights file"
    return f"{type(error).__name__}: {error}"
