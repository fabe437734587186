"""Schemathesis hooks for the fuzzer test (tests/it/fuzz.rs), loaded through SCHEMATHESIS_HOOKS.

Writes take an Idempotency-Key, and the generator repeats small keys ("0", "A") across
different requests; each such repeat is refused with 422 before the handler runs, so most
writes would never reach the code under test. Every generated key is made unique here (a
counter, so runs stay reproducible); the idempotency answers themselves are tested in
tests/it/http.rs.
"""

import itertools

import schemathesis

_keys = itertools.count(1)


@schemathesis.hook
def before_call(ctx, case, **kwargs):
    headers = case.headers or {}
    for name in list(headers):
        if name.lower() == "idempotency-key":
            headers[name] = f"fuzz-{next(_keys)}"
