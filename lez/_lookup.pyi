from typing import Any

def find(
    key_hi: Any,
    key_lo: Any,
    bucket_starts: Any | None,
    bucket_bits: int,
    q_hi: Any,
    q_lo: Any,
    out: Any,
    /,
) -> None: ...
def find_one(
    key_hi: Any, key_lo: Any, bucket_starts: Any | None, bucket_bits: int, key: bytes, /
) -> int: ...
def version_one(
    key_hi: Any,
    key_lo: Any,
    bucket_starts: Any | None,
    bucket_bits: int,
    offsets: Any,
    records: Any,
    record_size: int,
    from_at: int,
    to_at: int,
    key: bytes,
    day: int,
    /,
) -> tuple[int, int, int]: ...
def fill_versions(
    records: Any,
    record_size: int,
    from_at: int,
    to_at: int,
    offsets: Any,
    idx: Any,
    days: Any,
    out: Any,
    found: Any,
    known: Any,
    /,
) -> None: ...
