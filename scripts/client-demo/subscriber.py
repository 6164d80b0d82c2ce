"""A downstream subscriber's view of the demo: reads the catalog's topics with a stock Kafka
client (confluent-kafka) and checks every record about the demo's products against the
committed AsyncAPI document (events/asyncapi.json): key, CloudEvents headers and payload.
It reads the change feed too (the compacted products topic): a state record for every
product created, a finished state once its images were processed, and a tombstone (a record
with no value) for every product deleted.

    python subscriber.py <brokers> <topic prefix> <asyncapi.json> <demo-ids.json>

demo-ids.json holds {"created": [...], "deleted": [...], "compressed": [...]} product ids.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from typing import Any

import jsonschema
from confluent_kafka import Consumer, KafkaError


TOMBSTONE = "tombstone"
STATE = "com.catalog.product.state.v1"


def messages_by_type(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The AsyncAPI messages that describe one event type, by their `ce_type`; the message
    of a record without a value (the products topic's tombstone) under TOMBSTONE."""
    out = {}
    for message in doc["components"]["messages"].values():
        ce_type = message["headers"]["properties"]["ce_type"].get("const")
        if ce_type:
            tombstone = message["payload"].get("type") == "null"
            out[TOMBSTONE if tombstone else ce_type] = message
    return out


def validate(doc: dict[str, Any], schema: dict[str, Any], value: Any, what: str) -> None:
    """Validates against a schema of the document, resolving its `#/components/...` refs."""
    rooted = {**schema, "components": doc["components"]}
    errors = sorted(jsonschema.Draft7Validator(rooted).iter_errors(value), key=str)
    if errors:
        raise SystemExit(f"[subscriber] FAILED: {what}: {errors[0].message}")


def main(brokers: str, prefix: str, asyncapi: str, ids_file: str) -> None:
    doc = json.load(open(asyncapi))
    ids = json.load(open(ids_file))
    by_type = messages_by_type(doc)
    # The events the demo must have caused: (ce_type, product id).
    wanted = {("com.catalog.product.created.v1", i) for i in ids["created"]}
    wanted |= {("com.catalog.product.deleted.v1", i) for i in ids["deleted"]}
    wanted |= {("com.catalog.images.compressed.v1", i) for i in ids["compressed"]}
    wanted |= {(STATE, i) for i in ids["created"]}
    wanted |= {(STATE + " finished", i) for i in ids["compressed"]}
    wanted |= {(TOMBSTONE, i) for i in ids["deleted"]}
    ours = set(ids["created"])

    consumer = Consumer(
        {
            "bootstrap.servers": brokers,
            "group.id": f"client-demo-subscriber-{uuid.uuid4()}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 100,
        }
    )
    consumer.subscribe(
        [f"{prefix}product-events", f"{prefix}images-compressed", f"{prefix}products"]
    )
    checked = 0
    deadline = time.monotonic() + 60
    try:
        while wanted and time.monotonic() < deadline:
            record = consumer.poll(0.5)
            if record is None:
                continue
            if record.error():
                if record.error().code() == KafkaError._PARTITION_EOF:
                    continue
                raise SystemExit(f"[subscriber] FAILED: {record.error()}")
            key = (record.key() or b"").decode()
            if key not in ours:
                continue
            headers = {k: (v or b"").decode() for k, v in (record.headers() or [])}
            ce_type = headers.get("ce_type", "")
            where = f"{record.topic()}[{record.partition()}]@{record.offset()} {ce_type}"
            value = record.value()
            kind = TOMBSTONE if value is None and ce_type == STATE else ce_type
            message = by_type.get(kind)
            if message is None:
                raise SystemExit(f"[subscriber] FAILED: {where}: no AsyncAPI message has this ce_type")
            validate(doc, message["headers"], headers, f"{where} headers")
            validate(doc, message["bindings"]["kafka"]["key"], key, f"{where} key")
            payload = None if value is None else json.loads(value)
            validate(doc, message["payload"], payload, f"{where} payload")
            product_id = key if payload is None else payload["product_id"]
            if product_id != key or headers["ce_subject"] != key:
                raise SystemExit(f"[subscriber] FAILED: {where}: key, ce_subject and product_id differ")
            for image in (payload or {}).get("images", []):
                if image.get("outcome", image.get("status")) != "compressed":
                    continue
                urls = {v["format"]: [] for v in image.get("variants", [])}
                for variant in image.get("variants", []):
                    urls[variant["format"]].append(f'{variant["url"]} {variant["width"]}w')
                if not urls or image.get("thumbhash") is None or (
                    "srcset" in image and image["srcset"] != {k: ", ".join(v) for k, v in urls.items()}
                ):
                    raise SystemExit(f"[subscriber] FAILED: {where}: a compressed image's variants, srcset or thumbhash: {image}")
            checked += 1
            wanted.discard((kind, key))
            if kind == STATE and payload["processing_status"] != "pending":
                wanted.discard((STATE + " finished", key))
    finally:
        consumer.close()
    if wanted:
        raise SystemExit(f"[subscriber] FAILED: never saw {sorted(wanted)}")
    print(f"[subscriber] {checked} records about the demo's products match events/asyncapi.json")


if __name__ == "__main__":
    main(*sys.argv[1:5])
