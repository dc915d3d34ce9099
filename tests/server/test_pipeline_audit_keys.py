"""The keys a chunk's audit record lists (`KeyedItems.valid_keys_bytes`): the readable items'
keys in input order, taken without a copy when they already are one whole bytes object."""

from __future__ import annotations

import numpy as np

from server.pipeline import KeyedItems


def _items(keys: bytes, invalid: list[int]) -> KeyedItems:
    n = len(invalid)
    return KeyedItems(
        keys=np.frombuffer(keys, dtype=np.uint8).reshape(n, 16),
        countries=np.full((n, 2), ord("B"), dtype=np.uint8),
        days=np.zeros(n, dtype=np.int32),
        invalid=np.array(invalid, dtype=np.uint8),
    )


def test_all_readable_keys_of_a_whole_bytes_object_are_that_object() -> None:
    keys = bytes(range(48))
    assert _items(keys, [0, 0, 0]).valid_keys_bytes() is keys


def test_unreadable_items_are_left_out_in_order() -> None:
    keys = bytes(range(48))
    assert _items(keys, [0, 3, 0]).valid_keys_bytes() == keys[:16] + keys[32:]


def test_keys_that_view_part_of_a_buffer_are_copied_exactly() -> None:
    buffer = bytes(range(64))
    view = np.frombuffer(buffer, dtype=np.uint8)[16:].reshape(3, 16)
    items = KeyedItems(
        keys=view,
        countries=np.full((3, 2), ord("B"), dtype=np.uint8),
        days=np.zeros(3, dtype=np.int32),
        invalid=np.zeros(3, dtype=np.uint8),
    )
    got = items.valid_keys_bytes()
    assert got == buffer[16:] and got is not buffer
