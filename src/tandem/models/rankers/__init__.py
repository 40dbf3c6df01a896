"""tandem.models.rankers."""
