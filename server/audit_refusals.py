"""Refused calls are audited too: an unknown certificate, a role or zone the caller does not have.

The servicer records every consultation it answers (`server.service`); a call refused before
any answer leaves no record there, yet attempts are what an audit must show (someone probing
with a stolen certificate, an organisation asking outside its zones). `RefusalAudit` is a gRPC
server interceptor around every AccessService method: when a call ends with UNAUTHENTICATED or
PERMISSION_DENIED it appends one record (no pairs, no keys, `status` the refusal, the caller as
far as it is known: a listed identity with its organisation and roles, or the certificate CN
that was not listed, or `(none)`). Other failures are not refusals and are not recorded here (a
stream that fails after answering is recorded by the servicer with its status).

Wrapped method handlers are made once per method, so a call pays one extra coroutine frame.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import grpc
import grpc.aio

from lez.errors import Unauthenticated
from server.audit import AuditLog, KeyBatch
from server.auth import Authenticator
from server.state import StoreHolder

SERVICE_PREFIX: Final = "/lez.api.v1.AccessService/"
REFUSALS: Final = frozenset({grpc.StatusCode.UNAUTHENTICATED, grpc.StatusCode.PERMISSION_DENIED})


if TYPE_CHECKING:  # generic in the type stubs only
    _Interceptor = grpc.aio.ServerInterceptor[Any, Any]
else:
    _Interceptor = grpc.aio.ServerInterceptor


class RefusalAudit(_Interceptor):
    """Appends an audit record for each AccessService call refused by authentication or roles."""

    def __init__(self, audit: AuditLog, auth: Authenticator, holder: StoreHolder) -> None:
        self.audit = audit
        self.auth = auth
        self.holder = holder
        self._wrapped: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    async def intercept_service(
        self,
        continuation: Callable[
            [grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler[Any, Any]]
        ],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = handler_call_details.method
        handler = await continuation(handler_call_details)
        if handler is None or not method.startswith(SERVICE_PREFIX):
            return handler
        wrapped = self._wrapped.get(method)
        if wrapped is None:
            wrapped = self._wrapped[method] = self._wrap(method[len(SERVICE_PREFIX) :], handler)
        return wrapped

    def _wrap(
        self, rpc: str, handler: grpc.RpcMethodHandler[Any, Any]
    ) -> grpc.RpcMethodHandler[Any, Any]:
        serializers = {
            "request_deserializer": handler.request_deserializer,
            "response_serializer": handler.response_serializer,
        }
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(rpc, handler.unary_unary), **serializers
            )
        if handler.stream_unary is not None:
            return grpc.stream_unary_rpc_method_handler(
                self._unary(rpc, handler.stream_unary), **serializers
            )
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(rpc, handler.unary_stream), **serializers
            )
        return grpc.stream_stream_rpc_method_handler(
            self._stream(rpc, handler.stream_stream), **serializers
        )

    def _unary(self, rpc: str, behaviour: Any) -> Any:
        async def call(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await behaviour(request, context)
            except BaseException:
                self._record_if_refused(rpc, context)
                raise

        return call

    def _stream(self, rpc: str, behaviour: Any) -> Any:
        async def call(
            request: Any, context: grpc.aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Any]:
            try:
                async for item in behaviour(request, context):
                    yield item
            except BaseException:
                self._record_if_refused(rpc, context)
                raise

        return call

    def _record_if_refused(self, rpc: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        code = context.code()
        if code not in REFUSALS:
            return
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
            status=code.name if isinstance(code, grpc.StatusCode) else str(code),
        )
