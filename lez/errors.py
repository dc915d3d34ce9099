"""The one error model of the project.

Every failure a caller can meet is a `LezError` subclass carrying a stable `code` (a short
snake-case string) and a message that says what to change. The server maps these classes to
gRPC status codes in one table (`server/status.py`); the clients map them back. No message ever
contains a raw plate: callers pass pseudonymised key prefixes or row numbers instead.
"""

from __future__ import annotations

import re
from typing import Final

ECHO_LIMIT: Final = 40
"""Longest piece of a caller's value an error message quotes."""
_DIGIT: Final = re.compile(r"[0-9]")
_LETTER: Final = re.compile(r"[^\W\d_]")


def could_hold_plate(value: str) -> bool:
    """Whether a text could hold a plate (a letter and a digit anywhere in it): such a text is
    never quoted in an error or a log."""
    return bool(_DIGIT.search(value) and _LETTER.search(value))


def echo(value: str, limit: int = ECHO_LIMIT) -> str:
    """A caller's free-text value as an error message may quote it: cut to `limit` characters,
    control characters replaced, and not quoted at all when it could hold a plate (a letter and
    a digit anywhere in it), so a plate sent in the wrong field never comes back in an error."""
    if could_hold_plate(value):
        return f"(a value of {len(value)} characters, not shown: it could be a plate)"
    shown = "".join(c if c.isprintable() else "?" for c in value[:limit])
    more = f"... ({len(value)} characters)" if len(value) > limit else ""
    return repr(shown) + more


class LezError(Exception):
    """Base of all domain errors. `code` is stable and machine-readable."""

    code = "lez_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidPlate(LezError):
    """A plate that cannot be read. `rule` names the rule it broke; the plate is never echoed."""

    code = "invalid_plate"
    field = "plate"  # the request field a `google.rpc.BadRequest` violation names

    def __init__(self, rule: str, detail: str) -> None:
        super().__init__(f"plate rejected ({rule}): {detail}")
        self.rule = rule


class InvalidRequest(LezError):
    """A request that is malformed (unknown zone, bad date, empty batch...). `field` names the
    request field at fault (`google.rpc.BadRequest`), "request" when it is the whole message."""

    code = "invalid_request"
    field = "request"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        if field is not None:
            self.field = field


class UndecodableRequest(InvalidRequest):
    """Request bytes that do not parse as the method's message: not protobuf, a field of the
    wrong wire type, or invalid UTF-8 in a string field. Nothing of the bytes is echoed."""

    code = "undecodable_request"

    def __init__(self, message_name: str) -> None:
        super().__init__(
            f"the request does not decode as lez.api.v1.{message_name} (not protobuf, a field "
            "of the wrong type, or invalid UTF-8 in a string field); build it from access.proto",
            field=message_name,
        )


class BatchTooLarge(InvalidRequest):
    """A chunk or message over the configured limit."""

    code = "batch_too_large"

    def __init__(self, size: int, limit: int, what: str = "pairs in one chunk") -> None:
        super().__init__(f"{size} {what} exceeds the limit of {limit}; send smaller chunks")
        self.size = size
        self.limit = limit


class UnknownZone(InvalidRequest):
    """A zone id that no loaded rule revision knows."""

    code = "unknown_zone"
    field = "zone"


class UnknownRuleset(LezError):
    """A pinned rule revision that is not loaded in the current store."""

    code = "unknown_ruleset"


class PermissionDenied(LezError):
    """The caller's organisation or role may not make this call (finality, minimisation)."""

    code = "permission_denied"


class Unauthenticated(LezError):
    """No usable client identity."""

    code = "unauthenticated"


class RateLimited(LezError):
    """A quota of the caller's organisation is used up. `quota` names it (`checks_per_minute`,
    `checks_per_day`, `pairs_per_day`, `concurrent_streams`), `limit` is its value and
    `retry_after_s` says when the quota allows the call again (the next minute, the next
    Brussels day, a stream ending). `attempt`: the refused call asked for register data, so it
    is audited as a refused attempt (not so a stream refused a slot before sending anything)."""

    code = "rate_limited"

    def __init__(
        self, message: str, *, quota: str = "", limit: int | None = None,
        retry_after_s: float = 60.0, attempt: bool = True,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.quota = quota
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.attempt = attempt


class Overloaded(LezError):
    """The server (one worker) has as much work in flight as its caps allow, or the caller's
    organisation has its share of it: refused at once, retry in about a second. `limit` names
    the cap's value."""

    code = "overloaded"

    def __init__(self, message: str, *, limit: int | None = None) -> None:
        super().__init__(message)
        self.limit = limit


class KeyMismatch(LezError):
    """Keys sent by a client were made with another HMAC key than the store's."""

    code = "key_mismatch"


class DeadlineExceeded(LezError):
    """The caller's deadline passed before the answer was complete."""

    code = "deadline_exceeded"


class StreamIdle(DeadlineExceeded):
    """A CheckStream sent nothing for the configured idle time and was ended, so an idle
    stream cannot hold a worker's stream slot (DEADLINE_EXCEEDED)."""

    code = "stream_idle"


class StoreNotReady(LezError):
    """No store is published yet, or it is being switched."""

    code = "store_not_ready"


class AuditClosed(StoreNotReady):
    """The server is stopping and its audit log is closed: a call still finishing cannot be
    recorded, so it is not answered (UNAVAILABLE, like a store not ready: retry elsewhere)."""


class AuditFailed(AuditClosed):
    """The audit log could not be written or synced to disk: the call's record is not durable,
    so it is not answered, nor is any later call of this process (UNAVAILABLE: retry on another
    worker or replica; the operator must look at the disk)."""


class ServerStopping(StoreNotReady):
    """The server is stopping and a call was still running at the end of its grace period: the
    call is ended with this error (UNAVAILABLE: retry on another replica) rather than cut off."""


class StoreFormatMismatch(LezError):
    """The store was written with a format version or key id this code does not accept."""

    code = "store_format_mismatch"


class StoreCorrupt(LezError):
    """The store failed verification."""

    code = "store_corrupt"


class StoreChangeError(LezError):
    """Changes a store cannot apply (unsorted or repeated keys, another key or record format)."""

    code = "store_change_error"


class KeyFileError(LezError):
    """The HMAC key file is missing, unreadable or malformed."""

    code = "key_file_error"


class ExtractError(LezError):
    """A DIV extract that cannot be loaded as a whole (not a bad row: those are rejects)."""

    code = "extract_error"


class BuildFailed(ExtractError):
    """A store build stopped before publishing; the published store is untouched.

    `report` is the build's report so far (`loader.build.BuildReport`; the domain does not
    import the loader, so it is typed `object` here).
    """

    def __init__(self, message: str, report: object) -> None:
        super().__init__(message)
        self.report = report


class RuleTableError(LezError):
    """A rule-table file with a mistake, located by file, line and field."""

    code = "rule_table_error"

    def __init__(self, path: str, line: int | None, field: str, problem: str) -> None:
        where = f"{path}:{line}" if line is not None else path
        super().__init__(f"{where}: field '{field}': {problem}")
        self.path = path
        self.line = line
        self.field = field


class RegistrationFileError(LezError):
    """A registrations file with a bad row, located by line and field."""

    code = "registration_file_error"


class FeedError(LezError):
    """The DIV change feed failed in a way a retry does not fix (a refused request, retries
    used up, an answer that breaks docs/div-feed.md). The published store is unchanged."""

    code = "feed_error"


class CheckpointError(LezError):
    """A sync checkpoint file that cannot be read or belongs to another store or key."""

    code = "checkpoint_error"


class TransactionRefused(LezError):
    """One feed transaction that cannot be applied to a plate's history; the rest of the day
    applies and the transaction is reported by its id, never by plate."""

    code = "transaction_refused"


class StandinError(LezError):
    """The local DIV stand-in (`lez-div`, development only) cannot start or generate: a feed
    directory without its manifest, a day file that does not match it, missing certificates,
    bad generation options."""

    code = "standin_error"


class AuditKeyError(LezError):
    """The audit key file is missing, unreadable or malformed, or a log was chained with
    another audit key."""

    code = "audit_key_error"


class ServerStartRefused(LezError):
    """A server that must not start: its port is already served, or another server holds its
    audit directory."""

    code = "server_start_refused"


class SyncBusy(LezError):
    """Another `lez-loader sync` holds the store's sync lock; one sync at a time."""

    code = "sync_busy"
