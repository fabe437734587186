"""Schemathesis hooks for the fuzzer test (tests/it/fuzz.rs), loaded through SCHEMATHESIS_HOOKS.

Writes take an Idempotency-Key, and the generator repeats small keys ("0", "A") across
different requests; each such repeat is refused with 422 before the handler runs, so most
writes would never reach the code under test. Every generated key is made unique here (a
counter, so runs stay reproducible); the idempotency answers themselves are tested in
tests/it/http.rs. Job activations are made not to wait (below).
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
    # A job activation long-polls up to requestTimeout ms when no job is there (the fuzzer's
    # types have none): keep the calls short so the run stays bounded; long polling itself is
    # tested in tests/it/workers.rs.
    if case.path == "/v2/jobs/activation" and isinstance(case.body, dict):
        case.body["requestTimeout"] = -1
