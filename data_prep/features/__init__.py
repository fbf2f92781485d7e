"""Feature networks: the distillation teacher (spec 6.5) and instance-selection scores (spec 9)."""
