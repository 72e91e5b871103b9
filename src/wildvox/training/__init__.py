"""Training: the loop, checkpoints and schedules."""
