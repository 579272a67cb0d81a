"""Open a lead's sealed history for people and tools: every payload in it decoded by the codec.

For replay debugging and for recording the plain histories kept in tests/histories (which must
replay without any key). The server's copy stays sealed; this works only while the lead's key exists.
"""

from __future__ import annotations

from google.protobuf.message import Message
from temporalio.api.common.v1 import Payload, Payloads
from temporalio.client import WorkflowHistory
from temporalio.converter import PayloadCodec


async def decode_payloads_in(message: Message, codec: PayloadCodec) -> None:
    """Decode, in place, every Payload anywhere inside ``message`` (events, failures, maps, lists)."""
    for field, value in message.ListFields():
        if field.message_type is None:
            continue
        if field.message_type.GetOptions().map_entry:
            if field.message_type.fields_by_name["value"].message_type is None:
                continue
            for key in list(value):
                await _decode_one(value[key], codec)
        elif field.is_repeated:
            if field.message_type.full_name == Payload.DESCRIPTOR.full_name:
                opened = await codec.decode(list(value))
                del value[:]
                value.extend(opened)
            else:
                for item in value:
                    await _decode_one(item, codec)
        else:
            await _decode_one(value, codec)


async def _decode_one(message: Message, codec: PayloadCodec) -> None:
    if isinstance(message, Payload):
        message.CopyFrom((await codec.decode([message]))[0])
    elif isinstance(message, Payloads):
        await codec.decode_wrapper(message)
    else:
        await decode_payloads_in(message, codec)


async def decoded_history(history: WorkflowHistory, codec: PayloadCodec) -> WorkflowHistory:
    """A copy of ``history`` with every payload decoded (unsealed payloads pass through unchanged)."""
    events = []
    for event in history.events:
        copy = type(event)()
        copy.CopyFrom(event)
        await decode_payloads_in(copy, codec)
        events.append(copy)
    return WorkflowHistory(history.workflow_id, events)
