"""The Temporal PayloadCodec that seals every payload of a lead's workflow with that lead's data key.

Whole payloads are encrypted (inputs, signals, queries, updates, activity inputs and results, and
failure details with ``DefaultFailureConverterWithEncodedAttributes``): simpler and safer than
picking personal fields, and what the UI and CLI need stays readable because Temporal never passes
workflow ids, activity types or search attributes (stage, score, grade, owner, SLA) through a codec.

The serialization context tells the codec whose payload it handles: a workflow id shaped like a
lead id, or like a visitor id (an anonymous visitor's held events carry URLs and properties, personal
before anyone knows whose they are), selects the key; a visitor has a key of its own, stored beside
the leads' under its workflow id. Erasing the lead a visitor was stitched to terminates the visitor's
workflow (it could not even complete once its key is gone) and then destroys its key
(activities/erasure.py). Payloads of other workflows, payloads without a context, and the
unencrypted histories recorded before this codec existed pass through unchanged. Decoding needs no
context: a sealed payload names its lead and key in its metadata.

Codecs run in the worker's event loop, outside the workflow sandbox, so they may use the store.
"""

from __future__ import annotations

import dataclasses
import os
import re
from collections.abc import Sequence

from temporalio.api.common.v1 import Payload
from temporalio.converter import (
    ActivitySerializationContext,
    DataConverter,
    DefaultFailureConverterWithEncodedAttributes,
    PayloadCodec,
    SerializationContext,
    WithSerializationContext,
    WorkflowSerializationContext,
)

from payload_converter import data_converter as plain_converter
from privacy.keys import NONCE_BYTES, KeyRing

ENCODING = b"binary/leadflow-aesgcm"
LEAD_META = "leadflow-lead"
KEY_META = "leadflow-key"
# The shapes api/lead_ids.py gives lead ids and api/ingest_doors.py visitor ids (kept here so the codec
# imports nothing from api/): each such workflow is one person's, sealed with that person's key.
SEALED_WORKFLOW_ID = re.compile(r"^(lead|visitor)-[0-9a-f]{32}$")


def lead_of(context: SerializationContext) -> str | None:
    """The person (lead or anonymous visitor) whose payload this is, from the workflow id of a workflow or
    activity context: the id their data key is stored under."""
    if isinstance(context, WorkflowSerializationContext | ActivitySerializationContext):
        workflow_id = context.workflow_id
        if workflow_id and SEALED_WORKFLOW_ID.match(workflow_id):
            return workflow_id
    return None


class LeadPayloadCodec(PayloadCodec, WithSerializationContext):
    def __init__(self, keys: KeyRing, lead_id: str | None = None) -> None:
        self.keys = keys
        self.lead_id = lead_id

    def with_context(self, context: SerializationContext) -> LeadPayloadCodec:
        lead_id = lead_of(context)
        return self if lead_id == self.lead_id else LeadPayloadCodec(self.keys, lead_id)

    async def encode(self, payloads: Sequence[Payload]) -> list[Payload]:
        if self.lead_id is None or not payloads:
            return list(payloads)
        key = await self.keys.for_encoding(self.lead_id)
        aad = key.key_id.encode()
        sealed = []
        for payload in payloads:
            nonce = os.urandom(NONCE_BYTES)
            sealed.append(
                Payload(
                    metadata={"encoding": ENCODING, LEAD_META: key.lead_id.encode(), KEY_META: aad},
                    data=nonce + key.aead.encrypt(nonce, payload.SerializeToString(), aad),
                )
            )
        return sealed

    async def decode(self, payloads: Sequence[Payload]) -> list[Payload]:
        opened = []
        for payload in payloads:
            if payload.metadata.get("encoding") != ENCODING:
                opened.append(payload)  # another workflow's, or recorded before encryption
                continue
            lead_id = payload.metadata[LEAD_META].decode()
            key_id = payload.metadata[KEY_META]
            key = await self.keys.for_decoding(lead_id, key_id.decode())
            data = payload.data
            opened.append(Payload.FromString(key.aead.decrypt(data[:NONCE_BYTES], data[NONCE_BYTES:], key_id)))
        return opened


def lead_data_converter(keys: KeyRing) -> DataConverter:
    """leadflow's converter (payload_converter.py) with lead payloads sealed, failure messages included."""
    return dataclasses.replace(
        plain_converter,
        payload_codec=LeadPayloadCodec(keys),
        failure_converter_class=DefaultFailureConverterWithEncodedAttributes,
    )
