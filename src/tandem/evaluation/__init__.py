"""tandem.evaluation."""
