"""Hydra multiruns as researchers run them: launchers that check every job before any starts
(and resume re-queued SLURM jobs), the run record and objective each job leaves, W&B grouping of
one sweep's runs, and the sweep report (``python -m gp3d.sweep_report``)."""
