"""PIA (open-mmlab/PIA, "Personalized Image Animator"): animate one still image with a chosen motion strength.

presets.py: the per-frame mask values (motion strength), exactly the paper code's table; apply.py: the UNet side
(its 9-channel conv_in and the image latent and mask it reads), on a MODEL that has pia.ckpt applied as a motion
model (motion.formats detects it)."""
