def accelerate(flag: bool, /) -> bool: ...
def keys(secret: bytes, messages: bytes | memoryview, width: int, /) -> bytes: ...
def normalise_keys(
    secret: bytes,
    data: bytes | memoryview,
    starts: bytes | memoryview,
    lengths: bytes | memoryview,
    countries: bytes | memoryview,
    /,
) -> tuple[bytes, bytes, bytes]: ...
