"""Schemathesis hooks for scripts/schemathesis.sh.

Every valid `Idempotency-Key` the fuzzer draws is made unique. The server
answers a key reused with another body with 422 `idempotency_key_reused`
(as the IETF Idempotency-Key draft asks): that depends on earlier requests,
not on whether this request fits the schema, and generators reuse the same
few boundary values. Invalid keys are left as drawn (they must stay 400).
"""

import re
import uuid

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
