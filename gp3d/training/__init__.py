"""Training maths and its orchestration: the LightningModule, losses, regularisers, schedules, patches, EMA."""
