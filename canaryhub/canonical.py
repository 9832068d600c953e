"""Canonical JSON: the one spelling of a value that everything CanaryHub hashes is hashed in.

The audit chain, evaluation records, certificates and evidence manifests all hash
`canonical_json(value)`: keys sorted, no whitespace, UTF-8 kept as is. `normalise_json` turns a
value into what it reads back as from a JSON column, so a stored record rehashes to the digest
computed before it was stored.
"""

from __future__ import annotations

import json
from typing import Any


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def normalise_json(value: Any) -> Any:
    """The value as it reads back from a JSON column, refusing NaN and infinities (which are not
    JSON, and which PostgreSQL's jsonb refuses) with ValueError."""
    # canonical_json's spelling, refusing what is not finite in the same pass: the evaluator
    # normalises every canary's inputs each tick, and a walk of its own doubled the cost.
    return json.loads(json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str,
                                 allow_nan=False))
