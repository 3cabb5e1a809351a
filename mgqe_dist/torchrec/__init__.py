"""TorchRec integration; torchrec itself is imported only where used, so this imports without it."""

from mgqe_dist.torchrec import quant_baseline  # noqa: F401  (registers torchrec_int8/int4)
