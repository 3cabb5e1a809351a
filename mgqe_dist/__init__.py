"""mgqe-dist: recommendation models with multi-granular quantized embeddings, local or on Ray."""

__version__ = "0.1.0"
