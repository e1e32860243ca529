"""Structured logging (stdlib ``logging``) and credential redaction.

- ``setup_logging(settings.log)``: one handler on the root logger, JSON (one object a line) or
  ``key=value`` text; extra fields come from ``log.info("msg", extra={"camera": cam, ...})``.
- ``redact_url(url)``: the only way a camera/Redis URL may be printed. Removes the userinfo password
  (``rtsp://admin:***@host/...``) and credential values in the query string; other text and plain file
  paths come back unchanged.
- ``redact_text(text)``: redact_url applied to every ``scheme://...`` in free text.
- ``RedactingFilter``: a logging.Filter that redacts URLs with credentials that slip into messages;
  setup_logging installs it, and the formatters redact exception text and string extras too.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from typing import Any, TextIO

REDACTED = "***"

# Query keys whose values are secrets: exact (normalised: lowercase, alphanumerics only) ...
_SECRET_KEYS_EXACT = {
    "u",
    "p",
    "pw",
    "pwd",
    "pass",
    "passwd",
    "password",
    "passphrase",
    "user",
    "username",
    "usr",
    "login",
    "key",
    "apikey",
    "token",
    "auth",
    "secret",
    "sig",
    "signature",
    "credential",
    "credentials",
    "session",
    "sessionid",
    "sid",
    "code",
    "jwt",
    "bearer",
    "authorization",
}
# ... or containing one of these.
_SECRET_KEY_PARTS = (
    "pass",
    "pwd",
    "token",
    "secret",
    "auth",
    "apikey",
    "credential",
    "signature",
    "privatekey",
    "accesskey",
    "sessionkey",
    "secretkey",
)

_SCHEME_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*)://")
# A URL in free text: scheme:// then anything up to whitespace or a quote/bracket.
URL_IN_TEXT_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]*://[^\s'\"<>`]+")


def _is_secret_key(key: str) -> bool:
    norm = re.sub(r"[^a-z0-9]", "", key.lower())
    if not norm:
        return False
    return norm in _SECRET_KEYS_EXACT or any(part in norm for part in _SECRET_KEY_PARTS)


def _redact_query(query: str) -> str:
    out = []
    for item in re.split(r"([&;])", query):
        if item in ("&", ";") or "=" not in item:
            out.append(item)
            continue
        k, _, v = item.partition("=")
        out.append(f"{k}={REDACTED}" if v and _is_secret_key(k) else item)
    return "".join(out)


def redact_url(url: Any) -> str:
    """Return ``url`` with its password and query-string credentials replaced by ``***``.

    Robust to passwords holding ``@``, ``:``, ``/``, ``%40``: the userinfo ends at the LAST ``@``
    before the path. A user name without a password is redacted whole (it is often a token).
    Strings that are not ``scheme://`` URLs (file paths) are returned unchanged.
    """
    if url is None:
        return ""
    url = str(url)
    m = _SCHEME_RE.match(url)
    if not m:
        return url
    head = m.group(0)
    rest = url[len(head) :]

    # authority = up to the first / ? # ; but a password may itself contain those characters, so
    # when an '@' appears only later we take the last '@' (over-redacting an odd path is the safe side).
    first_sep = min(
        (i for i in (rest.find("/"), rest.find("?"), rest.find("#")) if i >= 0), default=len(rest)
    )
    at = rest.rfind("@", 0, first_sep)
    if at < 0:
        at = rest.rfind("@")
    if at >= 0:
        userinfo, hostpart = rest[:at], rest[at + 1 :]
        user, colon, password = userinfo.partition(":")
        if colon and password:
            userinfo = f"{user}:{REDACTED}"
        elif not colon and user:  # a lone user field is often a token (rtsp://TOKEN@host/...)
            userinfo = REDACTED
        rest_out = f"{userinfo}@"
        rest = hostpart
    else:
        rest_out = ""

    # query string (fragment kept as is)
    q = rest.find("?")
    if q >= 0:
        before, query = rest[:q], rest[q + 1 :]
        frag = ""
        h = query.find("#")
        if h >= 0:
            query, frag = query[:h], query[h:]
        rest = f"{before}?{_redact_query(query)}{frag}"
    return head + rest_out + rest


def error_words(exc: BaseException) -> str:
    """What an error says, in words: an OS/PyAV error's ``strerror`` (its URL or file name apart, not
    ``[Errno 1094995529] ...: 'rtsp://...'``), else its first line. Redact it before showing it."""
    text = getattr(exc, "strerror", None) or (str(exc).splitlines() or [""])[0]
    return text.strip(" :'")[:300]


def redact_text(text: Any) -> str:
    """Redact every URL (``scheme://...``) found in free text."""
    text = str(text)
    if "://" not in text:
        return text

    def sub(m: re.Match) -> str:
        url = m.group(0)
        core = url.rstrip(".,;:!?)]}")  # sentence punctuation after a URL is not part of it
        return redact_url(core) + url[len(core) :]

    return URL_IN_TEXT_RE.sub(sub, text)


class RedactingFilter(logging.Filter):
    """Rewrites record.msg/args so no URL credentials reach any handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # a broken %-format: leave it to the handler to report
            return True
        red = redact_text(msg)
        if red != msg or record.args:
            record.msg, record.args = red, None
        return True


# Attributes every LogRecord has; anything else came in through `extra=`.
_STD_ATTRS = set(vars(logging.LogRecord("x", 0, "x", 0, "x", None, None))) | {
    "message",
    "asctime",
    "taskName",
}


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    out = {}
    for k, v in vars(record).items():
        if k in _STD_ATTRS or k.startswith("_"):
            continue
        out[k] = redact_text(v) if isinstance(v, str) else v
    return out


def _ts(record: logging.LogRecord) -> str:
    t = time.gmtime(record.created)
    return time.strftime("%Y-%m-%dT%H:%M:%S", t) + f".{int(record.msecs):03d}Z"


class JsonFormatter(logging.Formatter):
    """One JSON object a line: ts, level, logger, msg, extras, exc."""

    def format(self, record: logging.LogRecord) -> str:
        obj: dict[str, Any] = {
            "ts": _ts(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        obj.update(_extras(record))
        if record.exc_info:
            obj["exc"] = redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            obj["stack"] = redact_text(record.stack_info)
        return json.dumps(obj, default=str, ensure_ascii=False)


def _kv_value(v: Any) -> str:
    s = v if isinstance(v, str) else json.dumps(v, default=str, ensure_ascii=False)
    if s == "" or any(c in s for c in ' ="\n\t'):
        return json.dumps(s, ensure_ascii=False)
    return s


class TextFormatter(logging.Formatter):
    """``ts level logger msg key=value ...`` (values quoted when they hold spaces)."""

    def format(self, record: logging.LogRecord) -> str:
        parts = [_ts(record), f"{record.levelname:<7}", record.name, redact_text(record.getMessage())]
        parts += [f"{k}={_kv_value(v)}" for k, v in _extras(record).items()]
        line = " ".join(parts)
        if record.exc_info:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + redact_text(record.stack_info)
        return line


_HANDLER_FLAG = "_facestream_handler"


class _Stderr:
    """sys.stderr looked up at write time (it may be swapped, e.g. by click's CliRunner or pytest)."""

    def write(self, s: str) -> int:
        return sys.stderr.write(s)

    def flush(self) -> None:
        sys.stderr.flush()


def setup_logging(
    settings: Any = None, *, level: str | None = None, fmt: str | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Install (or replace) facestream's handler on the root logger.

    ``settings`` is a ``LogSettings`` (``settings.log``); ``level``/``fmt`` override it. Idempotent:
    calling it again replaces the previous facestream handler. Returns the handler.
    """
    level = (level or getattr(settings, "level", None) or "INFO").upper()
    fmt = (fmt or getattr(settings, "format", None) or "text").lower()
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_FLAG, False):
            root.removeHandler(h)
    handler = logging.StreamHandler(stream or _Stderr())
    setattr(handler, _HANDLER_FLAG, True)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    root.setLevel(level)
    for noisy in ("urllib3", "matplotlib", "PIL"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
    return handler
