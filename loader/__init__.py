"""The loader: compiles the DIV subset and the cities' registrations into the LMDB store.

`extract` reads and validates a DIV extract, `build` turns it into a published store,
`synth` generates a realistic synthetic register, `registrations` imports the cities' data,
`config` holds the loader's settings and `__main__` is the `lez-loader` command line.
"""
