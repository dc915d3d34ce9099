"""Shared domain package of the LEZ access-decision service.

It owns what the loader, the server and the clients must agree on: plate normalisation
(`lez.plates`), pseudonymisation (`lez.keys`), the DIV reference codes (`lez.codes`), the packed
vehicle record (`lez.vehicle`), enrichment (`lez.enrich`), the rules engine (`lez.rules`), the
recheck change classes (`lez.recheck`), fleet statistics (`lez.fleet`), the error model
(`lez.errors`) and the LMDB layout (`lez.store`). It imports nothing from `loader`, `server` or
`clients`.
"""

__version__ = "0.1.0"
