"""Inference on a trained generator: latents and classes, truncation, rendering, trajectories, meshes."""
