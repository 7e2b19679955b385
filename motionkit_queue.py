#!/usr/bin/env python3
"""Queue batches of an API-format ComfyUI workflow over one or more ComfyUI servers and report where each
prompt's outputs went (the tool itself is the ``queue_tool`` package next to this file).

    python motionkit_queue.py workflow_api.json --set 3.seed=1..8 --set 6.text=@prompts.txt
    python motionkit_queue.py workflow_api.json --set 3.seed=1..64 --server http://gpu1:8188 \\
        --server http://gpu2:8188 --manifest sweep.json
    python motionkit_queue.py --resume sweep.json --server http://gpu1:8188 --server http://gpu2:8188

--set NODE.INPUT=VALUE   NODE is a node id (or a unique node title); VALUE is parsed with the type of
                         the value the workflow already has there:
                           7            one value              1..8     an inclusive integer range
                           0..1..0.25   a range with a step    5,7.5,9  a list (\\, for a literal comma)
                           @file.txt    one value per line (verbatim: commas kept; blank lines skipped)
                         Several --set form the cartesian product; --zip pairs them instead.
Exit status: 0 all prompts succeeded, 1 some failed or timed out, 2 bad arguments or workflow,
3 no server could be reached, 130 interrupted (our queued prompts are removed first).
"""
import os
import sys

# run from anywhere: the package sits next to this file, whatever the pack's folder is called
_here = os.path.dirname(os.path.abspath(__file__))
if _here not in sys.path:
    sys.path.insert(0, _here)

from queue_tool import *  # noqa: E402,F401,F403  (the tool's API, for scripts that import this file)
from queue_tool import __all__, main  # noqa: E402,F401

if __name__ == "__main__":
    sys.exit(main())
