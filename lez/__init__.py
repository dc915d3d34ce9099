"""Shared domain package of the LEZ access-decision service.

It owns what the loader, the server and the clients must agree on: plate normalisation
(`lez.plates`), pseudonymisation (`lez.keys`), the DIV reference codes (`lez.codes`), the packed
vehicle record (`lez.vehicle`), enrichment (`lez.enrich`), the rules engine (`lez.rules`), the
recheck change classes (`lez.recheck`), fleet statistics (`lez.fleet`), the error model
(`lez.errors`) and the LMDB layout (`lez.store`). It imports nothing from `loader`, `server` or
`clients`.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    """`lez.__version__`, read from the package metadata on first use (`lez.version`)."""
    if name == "__version__":
        from lez.version import VERSION

        return VERSION
    raise AttributeError(f"module 'lez' has no attribute {name!r}")
