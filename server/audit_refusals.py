"""Refused calls are audited too: an unknown certificate, a role or zone the caller does not have.

The servicer records every consultation it answers (`server.service`); a call refused before
any answer leaves no record there, yet attempts are what an audit must show (someone probing
with a stolen certificate, an organisation asking outside its zones). Every servicer method
ends a domain error through one path (`server.status.translate_errors`), and that path calls
the servicer's `on_refused` for `Unauthenticated`, `PermissionDenied` and an attempt over a
quota (`RateLimited.attempt`); `RefusalAudit` is what the servicer calls there. It appends
one record (no pairs, no keys, `status` the refusal, the caller as far as it is known: a listed
identity with its organisation and roles, or the certificate CN that was not listed, or
`(none)`). Other failures are not refusals and are not
recorded here (a stream that fails after answering is recorded by the servicer with its
status). Answered calls pay nothing for it.
"""

from __future__ import annotations

from typing import Any

import grpc
import grpc.aio

from lez.errors import Unauthenticated
from server.audit import AuditWriter, KeyBatch
from server.auth import Authenticator
from server.state import StoreHolder


class RefusalAudit:
    """Appends an audit record for an AccessService call refused by authentication or roles."""

    def __init__(self, audit: AuditWriter, auth: Authenticator, holder: StoreHolder) -> None:
        self.audit = audit
        self.auth = auth
        self.holder = holder

    def record(
        self,
        rpc: str,
        context: grpc.aio.ServicerContext[Any, Any],
        status: grpc.StatusCode,
        *,
        request_id: str = "",
    ) -> None:
        """One record of the refused call `rpc` (the method's name) with its request id."""
        try:
            who = self.auth.identify(context)
            identity, organisation, roles = who.identity, who.organisation, who.role_names
        except Unauthenticated:
            cn = list(context.auth_context().get("x509_common_name", ()))
            identity = cn[0].decode(errors="replace") if cn else "(none)"
            organisation, roles = "", ()
        served = self.holder.current
        self.audit.record(
            rpc=rpc,
            identity=identity,
            organisation=organisation,
            roles=roles,
            zone="",
            ruleset_revision="",
            snapshot_id=served.meta.snapshot_id if served is not None else "",
            pairs=0,
            outcomes={},
            keys=KeyBatch(),
            status=status.name,
            request_id=request_id,
        )
