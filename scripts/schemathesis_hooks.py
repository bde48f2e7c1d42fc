"""Schemathesis hooks for scripts/schemathesis.sh.

Every valid `Idempotency-Key` the fuzzer draws is made unique. The server
answers a key reused with another body with 422 `idempotency_key_reused`
(as the IETF Idempotency-Key draft asks): that depends on earlier requests,
not on whether this request fits the schema, and generators reuse the same
few boundary values. Invalid keys are left as drawn (they must stay 400).
"""

import re
import uuid
from datetime import date, timedelta

import schemathesis

_VALID_KEY = re.compile(r"^[!-~]{1,255}$")


@schemathesis.hook
def map_headers(context, headers):
    if headers:
        for name in list(headers):
            value = headers[name]
            if name.lower() == "idempotency-key" and isinstance(value, str) and _VALID_KEY.match(value):
                headers[name] = uuid.uuid4().hex
    return headers


# `GET /v1/reconciliation/settlements` has a dependency between two
# parameters that a JSON Schema cannot state and the document states in
# words: `to` is on or after `from`, at most 92 days later. Drawn pairs are
# moved into that range; single values stay as drawn.
_RECONCILIATION = "/v1/reconciliation/settlements"
_MAX_DAYS = 92


@schemathesis.hook
def map_query(context, query):
    operation = getattr(context, "operation", None)
    if not query or getattr(operation, "path", None) != _RECONCILIATION:
        return query
    try:
        start = date.fromisoformat(str(query["from"]))
        end = date.fromisoformat(str(query["to"]))
    except (KeyError, ValueError):
        return query
    if end < start or (end - start).days >= _MAX_DAYS:
        try:
            query["to"] = (start + timedelta(days=min(max((end - start).days, 0), _MAX_DAYS - 1))).isoformat()
        except OverflowError:
            query["to"] = start.isoformat()
    return query
