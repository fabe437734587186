#!/usr/bin/env python3
"""A real SMTP server for Reglament's tests and benchmark (aiosmtpd, on loopback).

    target/tmp/tools/venv/bin/python tests/smtp/server.py PORT FOLDER

Stores every accepted message as FOLDER/NNNNNN.eml (the bytes as received; written to a
temporary name and renamed, so a reader never sees half a message) and appends its envelope
(file name, sender, recipients) as one JSON line to FOLDER/envelopes.jsonl. Refuses, at RCPT, addresses whose local part starts with `reject` (550,
permanent) or `tempfail` (451, temporary). Prints `ready PORT` on stdout once it listens, and
stops on SIGTERM or SIGINT.

Needs aiosmtpd (tests/tools/requirements.txt); the tests and the outbox benchmark start it
under the venv that tests/it/tools.rs installs.
"""

import asyncio
import itertools
import json
import os
import signal
import sys

from aiosmtpd.controller import Controller


class Store:
    def __init__(self, folder):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        existing = [int(n[:-4]) for n in os.listdir(folder) if n.endswith(".eml") and n[:-4].isdigit()]
        self.numbers = itertools.count(max(existing, default=0) + 1)
        self.envelopes = open(os.path.join(folder, "envelopes.jsonl"), "a", encoding="utf-8")

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("reject"):
            return "550 5.1.1 <%s>: mailbox unavailable (test rejection)" % address
        if local.startswith("tempfail"):
            return "451 4.3.0 <%s>: try again later (test)" % address
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        name = "%06d.eml" % next(self.numbers)
        meta = {"file": name, "mail_from": envelope.mail_from, "rcpt_tos": envelope.rcpt_tos}
        self.envelopes.write(json.dumps(meta, ensure_ascii=False) + "\n")
        self.envelopes.flush()
        tmp = os.path.join(self.folder, "." + name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or envelope.content)
        os.rename(tmp, os.path.join(self.folder, name))
        return "250 2.0.0 Message accepted for delivery"


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    port, folder = int(sys.argv[1]), sys.argv[2]
    controller = Controller(
        Store(folder),
        hostname="127.0.0.1",
        port=port,
        enable_SMTPUTF8=True,
        decode_data=False,
        data_size_limit=50 * 1024 * 1024,
    )
    controller.start()
    print("ready", port, flush=True)
    loop = asyncio.new_event_loop()
    stop = loop.create_future()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: stop.done() or stop.set_result(None))
    loop.run_until_complete(stop)
    controller.stop()


if __name__ == "__main__":
    main()
