"""tandem.experiments."""
