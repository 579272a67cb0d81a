"""Temporal's pydantic data converter with one TypeAdapter cache per process.

``temporalio.contrib.pydantic`` caches adapters per converter instance, and the worker builds a converter
for every workflow instance: each new or evicted lead rebuilt the schemas of ``LeadStart`` and the signal
types (about a quarter of the worker's CPU under load; temporalio/sdk-python#1695). One cache for the whole
process keeps one adapter per type: the type hints come from the workflow definition registered outside
the sandbox, so they are the same objects in every workflow instance.
"""

from __future__ import annotations

import functools
from typing import Any

from pydantic import TypeAdapter
from temporalio.contrib.pydantic import PydanticJSONPlainPayloadConverter
from temporalio.converter import (
    CompositePayloadConverter,
    DataConverter,
    DefaultPayloadConverter,
    JSONPlainPayloadConverter,
)

MAX_CACHED_TYPE_ADAPTERS = 1024


@functools.lru_cache(maxsize=MAX_CACHED_TYPE_ADAPTERS)
def shared_type_adapter(type_hint: Any) -> TypeAdapter[Any]:
    return TypeAdapter(type_hint)


class SharedCacheJSONConverter(PydanticJSONPlainPayloadConverter):
    def __init__(self) -> None:
        super().__init__(max_cached_type_adapters=0)
        # The base class looks adapters up through this attribute (unhashable hints bypass it).
        self._type_adapter = shared_type_adapter  # type: ignore[assignment]

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._type_adapter = shared_type_adapter  # type: ignore[assignment]


class SharedCachePayloadConverter(CompositePayloadConverter):
    """The default converters with JSON handled by pydantic through the process-wide adapter cache.

    The SDK builds a converter of this class every time it gives a data converter a serialization context
    (several times per workflow activation): the converters it holds are stateless, so one set serves all."""

    def __init__(self) -> None:
        super().__init__(*_shared_converters())


@functools.cache
def _shared_converters() -> tuple[Any, ...]:
    json_converter = SharedCacheJSONConverter()
    return tuple(
        json_converter if isinstance(c, JSONPlainPayloadConverter) else c
        for c in DefaultPayloadConverter.default_encoding_payload_converters
    )


data_converter = DataConverter(payload_converter_class=SharedCachePayloadConverter)
