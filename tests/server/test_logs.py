"""The log formats and the options that choose them and the metrics address."""

from __future__ import annotations

import io
import json
import logging

import pytest

from server.config import parse_serve_args
from server.logs import JsonFormatter, TextFormatter, configure_logging


def _record(text: str, *args: object, **fields: object) -> logging.LogRecord:
    record = logging.LogRecord("lez.calls", logging.INFO, __file__, 1, text, args, None)
    if fields:
        record.fields = fields
    return record


def test_json_lines_carry_the_fields_at_the_top_level() -> None:
    line = JsonFormatter().format(
        _record("%s OK", "Check", request_id="abc", pairs=2, outcomes={"ALLOWED": 2})
    )
    assert "\n" not in line
    obj = json.loads(line)
    assert obj["message"] == "Check OK" and obj["level"] == "INFO" and obj["logger"] == "lez.calls"
    assert obj["request_id"] == "abc" and obj["pairs"] == 2 and obj["outcomes"] == {"ALLOWED": 2}
    assert obj["ts"].endswith("+00:00") and isinstance(obj["pid"], int)


def test_a_field_never_hides_a_fixed_key() -> None:
    obj = json.loads(JsonFormatter().format(_record("real", message="forged", level="DEBUG")))
    assert obj["message"] == "real" and obj["level"] == "INFO"


def test_json_holds_an_exception_in_one_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        import sys

        record = _record("failed")
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    assert "ValueError: boom" in json.loads(line)["exc"]


def test_text_appends_the_fields_quoting_spaces() -> None:
    line = TextFormatter().format(
        _record("Check OK", organisation="Stad Gent", pairs=1, zone="", outcomes={"ALLOWED": 1})
    )
    assert line.endswith('Check OK organisation="Stad Gent" pairs=1 zone=- outcomes=ALLOWED:1')


def test_configure_logging_replaces_the_handlers() -> None:
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    out = io.StringIO()
    try:
        configure_logging("info", "json", out)
        logging.getLogger("lez.server").info("hello %d", 1)
        logging.getLogger("lez.server").debug("not at info")
        assert [json.loads(x)["message"] for x in out.getvalue().splitlines()] == ["hello 1"]
        assert len(root.handlers) == 1
    finally:
        root.handlers[:] = saved[0]
        root.setLevel(saved[1])


def test_options() -> None:
    config = parse_serve_args(["--log-format", "json", "--metrics-address", "0.0.0.0:9464"], {})
    assert config.log_format == "json"
    assert (config.metrics_host, config.metrics_port) == ("0.0.0.0", 9464)
    env = {"LEZ_LOG_FORMAT": "json", "LEZ_METRICS_ADDRESS": "127.0.0.1:0"}
    assert parse_serve_args([], env).log_format == "json"
    default = parse_serve_args([], {})
    assert default.log_format == "text" and default.metrics_address == ""


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["--log-format", "xml"], "log_format must be one of text, json"),
        (["--metrics-address", "9464"], "must be host:port"),
        (["--metrics-address", "127.0.0.1:x"], "the port is not a number"),
        (["--metrics-address", "127.0.0.1:70000"], "port out of range"),
        (
            ["--address", "127.0.0.1:50051", "--metrics-address", "127.0.0.1:50051"],
            "the gRPC server listens there",
        ),
    ],
)
def test_bad_options_are_refused(argv: list[str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        parse_serve_args(argv, {})
