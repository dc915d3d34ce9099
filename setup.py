"""Build hook for the two optional native pieces: batch HMAC keying (lez/_hmac.c) and the
batch lookup in the store's key columns (lez/_lookup.c).

`optional=True`: where no compiler or OpenSSL headers exist the install still succeeds;
`lez.keys` falls back to its pure-Python loop (same output, about 10x slower) and
`lez.store.columns` to its NumPy search (same output, see its docstring for the figures).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "lez._hmac",
            ["lez/_hmac.c"],
            libraries=["crypto"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
        Extension(
            "lez._lookup",
            ["lez/_lookup.c"],
            extra_compile_args=["-O3"],
            optional=True,
        ),
    ]
)
