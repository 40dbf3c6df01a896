"""tandem.training."""
