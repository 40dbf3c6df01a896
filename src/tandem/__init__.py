"""tandem: train the retriever and the ranker of a deep recommender together, then serve them as one pipeline."""

__version__ = "0.1.0"
