"""What every MotionKit package shares; it imports nothing of ours, so every other package can import it.

* errors:   the base error classes (every package's errors subclass MotionKitError)
* unet_call: facts about one UNet call under ComfyUI: the start/end-percent range it is in, the frames it holds,
            its context window's frames, and its transformer_options from a wrapper's arguments
* weights:  the one weights-file reader (weights-only pickles, safetensors) and unwrapper, and pickle_check:
            why a pickle was refused (the code it holds), never torch's advice to load it another way
* folders:  the one model-folder registration
"""
