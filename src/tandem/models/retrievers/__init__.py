"""tandem.models.retrievers."""
