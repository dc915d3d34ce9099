"""Build hook for the one optional native piece: batch HMAC keying (lez/_hmac.c).

`optional=True`: where no compiler or OpenSSL headers exist the install still succeeds and
`lez.keys` falls back to its pure-Python loop (same output, about 10x slower).
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
        )
    ]
)
