"""Build hook for the four optional native pieces: batch HMAC keying (lez/_hmac.c), the
batch lookup in the store's key columns (lez/_lookup.c), the enrichment of a chunk's records
(lez/_enrich.c) and the loader's radix sort of uint64 values (lez/_sort.c).

`optional=True`: where no compiler or OpenSSL headers exist the install still succeeds;
`lez.keys` falls back to its pure-Python loop (same output, about 10x slower),
`lez.store.columns` to its NumPy search and sort and `lez.enrich` to its NumPy passes (same output, see
their docstrings for the figures).
"""

from setuptools import Extension, setup

BUFFER_CORES = ("_lookup", "_enrich", "_sort")
"""The cores that read NumPy arrays through lez/_buffers.h."""

setup(
    ext_modules=[
        Extension(
            "lez._hmac",
            ["lez/_hmac.c"],
            libraries=["crypto"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        *(
            Extension(
                f"lez.{core}",
                [f"lez/{core}.c"],
                depends=["lez/_buffers.h"],
                extra_compile_args=["-O3"],
                optional=True,
            )
            for core in BUFFER_CORES
        ),
    ]
)
