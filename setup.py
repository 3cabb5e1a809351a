"""Builds the one C extension (the CPU nearest-centroid kernel); metadata is in pyproject.toml.

The extension is optional: without a C compiler the install still succeeds and MGQE searches
with torch ops instead (same codes, slower on CPU).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "mgqe_dist.embeddings._search",
            ["mgqe_dist/embeddings/_search.c"],
            extra_compile_args=["-O3"],
            optional=True,
        )
    ]
)
