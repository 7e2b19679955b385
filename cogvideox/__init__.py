"""CogVideoX: the video diffusion transformer, its 3D causal VAE, and their published file layouts."""
