"""tandem.serving."""
