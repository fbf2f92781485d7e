"""The steps of ``python -m gp3d.benchmark3d``: a held-out split with ground truth, unconditional
scores of generated samples, and single-view 3D reconstruction by PTI against the truth."""
