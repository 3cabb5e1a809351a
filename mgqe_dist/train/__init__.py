"""Training: data loading, model factory, the local loop and the `train` entry."""
