"""The browser viewer (``python -m gp3d.view``): pure pose, scheduling and checkpoint-following
logic, the per-view renderer, and the viser app that wires them to a page."""
