"""Builds the C extensions (the CPU nearest-centroid kernel of training, the served-table
decode); metadata is in pyproject.toml.

Both are optional: without a C compiler the install still succeeds and MGQE searches and the
serving tables decode with torch ops instead (same results, slower on CPU).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mgqe_dist.embeddings._search",
            ["mgqe_dist/embeddings/_search.c"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "mgqe_dist.serve._decode",
            ["mgqe_dist/serve/_decode.c"],
            # SQ's multiply and add must round separately, as torch's ops do (bit parity).
            extra_compile_args=["-O3", "-ffp-contract=off"],
            optional=True,
        ),
    ]
)
