"""gp3d's Hydra launcher plugins (see launchers.py)."""
