"""A reload keeps the compiled rule catalog when the new build carries the same rule texts (every
daily layer does): compiling costs a worker about 0.3 s of Python that calls in flight would
otherwise wait for. Other rule texts are compiled afresh."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from lez.keys import PlateKeyer
from server.state import ServedSnapshot, open_served_snapshot
from tests.server.test_reload_layers import OLD_DIESEL, _publish_euro


def test_same_rules_reuse_the_catalog_other_rules_compile_anew(
    store_root: Path, keyer: PlateKeyer
) -> None:
    def opened(build: Path, previous: ServedSnapshot | None = None) -> ServedSnapshot:
        return open_served_snapshot(
            build, key_id=keyer.key_id, rules_dir=None, warm=False, previous=previous
        )

    base = (store_root / "current").resolve()
    first = opened(base)
    layer = _publish_euro(store_root, keyer, OLD_DIESEL, "6", "catalog-layer-1")
    second = opened(layer, first)
    assert second.catalog is first.catalog
    assert second.meta.snapshot_id == "catalog-layer-1"

    edited = replace(first, rule_texts={k: v + "\n" for k, v in first.rule_texts.items()})
    third = opened(layer, edited)
    assert third.catalog is not first.catalog
    assert third.catalog.get(None).id == first.catalog.get(None).id
    for served in (first, second, third):
        served.reader.close()
