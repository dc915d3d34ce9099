"""A stream's decision chunks written as wire bytes are exactly the bytes protobuf writes for
the same message, for every column, option and size (so a client cannot tell them apart)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lez.api.v1 import access_pb2 as pb
from server import chunk_wire

COLUMNS = ("outcome", "reason", "euro", "derived", "notes")
WIDE = ("allowed_until", "days")
TECHNICAL = ("category", "fuel", "first_registration", "max_mass_kg", "co2_g_km", "power_kw")
TEXTS = st.sampled_from(["", "20261204T230748Z-2cd304", "2025-12-15", "é"])
# sizes around the varint boundaries of a length (127/128, 16383/16384)
SIZES = st.sampled_from([0, 1, 2, 127, 128, 16383, 16384, 50_000])


@st.composite
def chunks(draw: st.DrawFn) -> tuple[dict[str, object], dict[str, bytes] | None]:
    n = draw(SIZES)
    fields: dict[str, object] = {
        "chunk_id": draw(st.integers(0, 2**64 - 1)),
        "first_index": draw(st.integers(0, 2**64 - 1)),
        "count": draw(st.integers(0, 2**32 - 1)),
        "snapshot_id": draw(TEXTS),
        "ruleset_revision": draw(TEXTS),
        "as_of": draw(TEXTS),
    }
    for name in COLUMNS:
        fields[name] = draw(st.sampled_from([bytes(n), bytes([n % 251]) * n]))
    for name in WIDE:
        if draw(st.booleans()):
            fields[name] = draw(st.sampled_from([bytes(4 * n), b"\x7f" * (4 * n)]))
    technical = None
    if draw(st.booleans()):
        technical = {name: draw(st.sampled_from([b"", b"\x01" * n])) for name in TECHNICAL}
    return fields, technical


def _protobuf(fields: dict[str, object], technical: dict[str, bytes] | None) -> bytes:
    message = pb.DecisionChunk(**fields)  # type: ignore[arg-type]
    if technical is not None:
        message.technical.CopyFrom(pb.TechnicalColumns(**technical))
    return message.SerializeToString()


@settings(max_examples=300, deadline=None)
@given(chunks())
def test_the_written_bytes_are_protobuf_s(
    chunk: tuple[dict[str, object], dict[str, bytes] | None],
) -> None:
    fields, technical = chunk
    assert chunk_wire.decision_chunk(fields, technical) == _protobuf(fields, technical)


def test_an_empty_technical_part_is_still_present() -> None:
    """A caller who may see technical data gets the part even for an empty chunk."""
    written = chunk_wire.decision_chunk({"count": 0}, {})
    assert pb.DecisionChunk.FromString(written).HasField("technical")
    assert written == _protobuf({"count": 0}, {})


def test_a_field_the_message_does_not_have_is_refused() -> None:
    with pytest.raises(TypeError, match="no field"):
        chunk_wire.decision_chunk({"outcomes": b"\x00"}, None)
    with pytest.raises(TypeError, match="not written here"):
        chunk_wire.decision_chunk({"count": "3"}, None)


@pytest.mark.parametrize("value", [0, 1, 127, 128, 300, 2**32, 2**64 - 1])
def test_varints_are_protobuf_s(value: int) -> None:
    written = pb.DecisionChunk(chunk_id=value).SerializeToString()[1:]  # after the key
    assert chunk_wire.varint(value) == (written or b"\x00")  # protobuf leaves a 0 out
    with pytest.raises(ValueError):
        chunk_wire.varint(-1)
