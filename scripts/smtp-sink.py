#!/usr/bin/env python3
"""An SMTP sink for Herald's tests, built on aiosmtpd (a third-party SMTP server).

Started by `src/sandbox/smtp.rs` with the interpreter from `.venv` (see `scripts/test-deps`).
Protocol on stdout, one line each, flushed at once:

  1. the TCP port it listens on (127.0.0.1, chosen by the kernel);
  2. then one JSON object per accepted message:
     {"mail_from": str, "rcpt_tos": [str], "data": str (the raw message)}.

Fault injection by recipient local part, answered at RCPT TO:
  fail4xx...  ->  451 4.3.0 Try again later
  fail5xx...  ->  550 5.1.1 No such user

Options:
  --starttls CERT KEY   offer STARTTLS with this certificate and key (PEM files)
  --auth USER:PASS      require AUTH (PLAIN/LOGIN) with these credentials, allowed without TLS
  --pipelining          advertise PIPELINING (RFC 2920); aiosmtpd reads commands in order
                        from its stream either way, so a pipelined client is served as usual

It exits when its stdin closes, so a test that dies never leaves it running.
"""

import argparse
import json
import logging
import ssl
import sys
import threading
import warnings

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword, TLSSetupException

# Output lines come from aiosmtpd's thread; one lock keeps them whole.
_stdout_lock = threading.Lock()


def emit(line: str) -> None:
    with _stdout_lock:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class Sink:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        local = address.split("@", 1)[0].lower()
        if local.startswith("fail4xx"):
            return "451 4.3.0 Try again later"
        if local.startswith("fail5xx"):
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        raw = envelope.original_content or envelope.content
        if isinstance(raw, bytes):
            raw = raw.decode("utf-8", errors="replace")
        emit(
            json.dumps(
                {
                    "mail_from": envelope.mail_from,
                    "rcpt_tos": list(envelope.rcpt_tos),
                    "data": raw,
                }
            )
        )
        return "250 OK"


class PipeliningSink(Sink):
    async def handle_EHLO(self, server, session, envelope, hostname, responses):
        session.host_name = hostname
        # After the greeting line, before the last ("250 HELP").
        return responses[:1] + ["250-PIPELINING"] + responses[1:]


class EphemeralPortController(Controller):
    """aiosmtpd's Controller, bound to port 0.

    Controller probes its own port after binding; with port 0 it would probe port 0. The
    listening socket already knows the kernel's choice, so the probe is pointed there, and no
    free-port guess can race another process.
    """

    def _trigger_server(self):
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starttls", nargs=2, metavar=("CERT", "KEY"))
    parser.add_argument("--auth", metavar="USER:PASS")
    parser.add_argument("--pipelining", action="store_true")
    args = parser.parse_args()

    # aiosmtpd logs every session at INFO; only real trouble belongs on the test's stderr.
    # A client refusing our self-signed certificate is a test's expected outcome, not trouble.
    mail_log = logging.getLogger("mail.log")
    mail_log.setLevel(logging.ERROR)
    mail_log.addFilter(
        lambda record: not (
            record.exc_info and isinstance(record.exc_info[1], TLSSetupException)
        )
    )

    smtp_kwargs = {}
    if args.starttls:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(args.starttls[0], args.starttls[1])
        smtp_kwargs["tls_context"] = context
    if args.auth:
        user, _, password = args.auth.partition(":")

        def authenticate(server, session, envelope, mechanism, auth_data):
            ok = (
                isinstance(auth_data, LoginPassword)
                and auth_data.login.decode() == user
                and auth_data.password.decode() == password
            )
            # handled=False: aiosmtpd then answers 535 itself on a mismatch.
            return AuthResult(success=ok, handled=False)

        # Plain-text AUTH is the point here (a loopback test server); silence the warning.
        warnings.filterwarnings("ignore", message="Requiring AUTH while not requiring TLS")
        smtp_kwargs["authenticator"] = authenticate
        smtp_kwargs["auth_require_tls"] = False
        smtp_kwargs["auth_required"] = True

    controller = EphemeralPortController(
        PipeliningSink() if args.pipelining else Sink(),
        hostname="127.0.0.1",
        port=0,
        **smtp_kwargs,
    )
    controller.start()
    emit(str(controller.port))
    try:
        # Blocks until the parent closes our stdin (or dies).
        while sys.stdin.buffer.read(4096):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
