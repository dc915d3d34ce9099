from typing import Any

def enrich(
    records: Any,
    record_size: int,
    fields: Any,
    correction: Any | None,
    category_class: Any,
    kind_hint: Any,
    fuel_family: Any,
    params: Any,
    euro_index: Any,
    euro_starts: Any,
    euro_values: Any,
    category: Any,
    vclass: Any,
    family: Any,
    euro: Any,
    derived: Any,
    /,
) -> None: ...
