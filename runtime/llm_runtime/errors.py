"""Download failures: what went wrong, said in one actionable line. Pure.

`classify()` looks at an exception raised by either hub SDK (and what it wraps) by class name,
HTTP status and errno only, so it needs neither SDK imported and is tested on plain objects.
The line is what a user reads in `kubectl describe pod` (termination message) and what the
operator copies into the LLMDeployment's status.
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Mapping, Sequence
from urllib.parse import quote, quote_plus

from .contract import ENDPOINT_ENV, TOKEN_ENV
from .progress import human_bytes

log = logging.getLogger("llm_runtime")

TERMINATION_MESSAGE_LIMIT = 4000  # the kubelet keeps at most 4096 bytes

# Exit codes of `llm-runtime download` (0 is success, 2 is a usage error from argparse).
EXIT_FAILED = 1
EXIT_AUTH = 3
EXIT_NOT_FOUND = 4
EXIT_NO_SPACE = 5
EXIT_CORRUPT = 6
EXIT_NETWORK = 7
EXIT_NO_MODEL = 8



class DownloadError(Exception):
    """A failure with its one-line, actionable message and exit code."""

    kind = "failed"
    exit_code = EXIT_FAILED
    retryable = False

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())  # one line, always


class AuthError(DownloadError):
    kind, exit_code = "auth", EXIT_AUTH


class NotFoundError(DownloadError):
    kind, exit_code = "not-found", EXIT_NOT_FOUND


class NoSpaceError(DownloadError):
    kind, exit_code = "no-space", EXIT_NO_SPACE


class CorruptError(DownloadError):
    kind, exit_code = "corrupt", EXIT_CORRUPT


class NetworkError(DownloadError):
    kind, exit_code, retryable = "network", EXIT_NETWORK, True


class NoModelError(DownloadError):
    kind, exit_code = "no-model", EXIT_NO_MODEL


_NOT_FOUND_NAMES = {
    "NotExistError", "RevisionNotFoundError", "EntryNotFoundError", "RemoteEntryNotFoundError",
    "RepositoryNotFoundError", "NotFoundError",
}
_AUTH_NAMES = {"AuthenticationError", "PermissionDeniedError", "GatedRepoError", "UnauthorizedError"}
_INTEGRITY_NAMES = {"FileIntegrityError", "FileSizeMismatchError"}
_NETWORK_NAMES = {
    "ConnectionError", "ConnectError", "ConnectTimeout", "ReadTimeout", "Timeout", "TimeoutException",
    "ReadError", "WriteError", "RemoteProtocolError", "ChunkedEncodingError", "NetworkError",
    "RequestTimeoutError", "ServerError", "ProtocolError", "IncompleteRead", "_IncompleteBodyError",
    "TimeoutError", "ConnectionResetError", "ConnectionRefusedError", "MaxRetryError", "RetryError",
}


def _chain(exc: BaseException) -> list[BaseException]:
    """exc, what it wraps (cause/context) and, for ModelScope's FileDownloadError, each file's error."""
    seen: list[BaseException] = []
    todo = [exc]
    while todo:
        e = todo.pop(0)
        if e is None or any(e is s for s in seen) or len(seen) > 50:
            continue
        seen.append(e)
        todo += [cause for cause in (e.__cause__, e.__context__) if cause is not None]
        failed = getattr(e, "failed_files", None)
        if isinstance(failed, dict):
            todo += [v for v in failed.values() if isinstance(v, BaseException)]
    return seen


def http_status(exc: BaseException) -> int | None:
    for attr in ("status_code", "status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int) and 100 <= value < 600:
            return value
    response = getattr(exc, "response", None)
    value = getattr(response, "status_code", None)
    return value if isinstance(value, int) else None


def _names(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def _short(exc: BaseException, limit: int = 200, secrets: Sequence[str] = ()) -> str:
    """The exception's text on one line, at most `limit` characters. Redacted before it is cut:
    a token cut in half would no longer be recognised, and half a token is still a leak."""
    text = redact(" ".join(str(exc).split()), secrets) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def hub_words(exc: BaseException, limit: int = 200, secrets: Sequence[str] = ()) -> str:
    """What the hub itself said: the server's message where the SDK keeps it apart (Hugging Face's
    `server_message`), else the exception text, which for ModelScope is the hub's Message."""
    server_message = getattr(exc, "server_message", None)
    if isinstance(server_message, str) and server_message.strip():
        return _short(ValueError(server_message), limit, secrets)
    return _short(exc, limit, secrets)


def auth_message(source: str, status: int | None, scheme: str, token_given: bool, detail: str = "",
                 credentials_secret: str = "") -> str:
    """`credentials_secret`: the Secret spec.credentialsSecretRef names, if any."""
    env = TOKEN_ENV.get(scheme, "the hub token")
    code = f" (HTTP {status})" if status else ""
    hub_said = f"; the hub said: {detail}" if detail else ""
    if credentials_secret and not token_given:
        return (
            f"private or gated model: the Secret {credentials_secret} of spec.credentialsSecretRef is missing or "
            f"has no key {env}, so no token was sent for {source}{code}; create it with a token that can read "
            f"the model{hub_said}"
        )
    given = "the token given was refused" if token_given else "no token was given"
    return (
        f"private or gated model: set spec.credentialsSecretRef to a Secret with {env} that can read {source}"
        f"{code}; {given}; for a gated model accept its license on the hub first{hub_said}"
    )


def not_found_message(source: str, revision: str, detail: str = "") -> str:
    extra = f": {detail}" if detail else ""
    return (
        f"model or revision not found: {source} at revision {revision!r} (HTTP 404){extra}; "
        f"check the model source and revision in the LLMDeployment"
    )


def no_space_message(need: int, have: int, where: str) -> str:
    return (
        f"cache volume full: need {human_bytes(need)}, have {human_bytes(have)} free at {where}; "
        f"raise spec.cache.size or free the volume"
    )


def classify(exc: BaseException, *, source: str, revision: str, scheme: str, token_given: bool,
             endpoint: str = "", secrets: Sequence[str] = (), credentials_secret: str = "") -> DownloadError:
    """Map any exception from a download attempt to the DownloadError a user can act on.

    Every quoted exception text has `secrets` redacted before it is shortened."""
    if isinstance(exc, DownloadError):
        return exc
    chain = _chain(exc)
    statuses = [s for s in (http_status(e) for e in chain) if s is not None]
    names = set().union(*(_names(e) for e in chain))

    if any(s in (401, 403) for s in statuses) or names & _AUTH_NAMES:
        status = next((s for s in statuses if s in (401, 403)), 403 if "GatedRepoError" in names else 401)
        culprit = next((e for e in chain if _names(e) & _AUTH_NAMES or http_status(e) in (401, 403)), exc)
        return AuthError(auth_message(source, status, scheme, token_given, hub_words(culprit, secrets=secrets),
                                      credentials_secret))
    if 404 in statuses or names & _NOT_FOUND_NAMES:
        culprit = next((e for e in chain if _names(e) & _NOT_FOUND_NAMES or http_status(e) == 404), exc)
        return NotFoundError(not_found_message(source, revision, hub_words(culprit, secrets=secrets)))
    for e in chain:
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            return NoSpaceError(f"cache volume full: {_short(e, secrets=secrets)}; raise spec.cache.size or free "
                                f"the volume")
    if names & _INTEGRITY_NAMES:
        culprit = next(e for e in chain if _names(e) & _INTEGRITY_NAMES)
        return CorruptError(
            f"corrupted download of {source}: {_short(culprit, secrets=secrets)}; the hub or a proxy served bad bytes, "
            f"the download was discarded: retry, or check {ENDPOINT_ENV.get(scheme, 'the endpoint')}"
        )
    if any(s >= 500 or s == 429 for s in statuses) or names & _NETWORK_NAMES:
        where = endpoint or ENDPOINT_ENV.get(scheme, "the hub")
        culprit = next((e for e in chain if _names(e) & _NETWORK_NAMES), exc)
        return NetworkError(
            f"could not download {source} from {where}: {_short(culprit, 160, secrets)}; "
            f"check the network policy, proxy and {ENDPOINT_ENV.get(scheme, 'endpoint')}"
        )
    return DownloadError(f"download of {source} failed: {type(exc).__name__}: {_short(exc, secrets=secrets)}")


_CUT_RUN = re.compile(r"(\S+?)(?:\.\.\.|\u2026)")  # a word cut short, as a truncating logger marks it
_MIN_CUT_PREFIX = 6


def redact(text: str, secrets: Sequence[str]) -> str:
    """Never let a token reach a log line or the termination message: as it is, as it appears
    inside a URL (percent-encoded), and cut short by someone else's truncation ('hf_abc12...', as
    an SDK shortens a response body it logs). Our own code redacts before it cuts, never after."""
    forms = {form for s in secrets if s and len(s) >= 4 for form in (s, quote(s, safe=""), quote_plus(s))}
    for form in sorted(forms, key=len, reverse=True):
        text = text.replace(form, "***")

    def cut_prefix(m: re.Match[str]) -> str:
        word = m.group(1)
        for form in forms:
            for n in range(min(len(form) - 1, len(word)), _MIN_CUT_PREFIX - 1, -1):
                if word.endswith(form[:n]):
                    return word[:-n] + "***" + m.group(0)[len(word):]
        return m.group(0)

    return _CUT_RUN.sub(cut_prefix, text) if forms else text


def env_secrets(environ: Mapping[str, str]) -> list[str]:
    """The hub tokens present in `environ`: what `redact` must hide."""
    return [environ[k] for k in TOKEN_ENV.values() if environ.get(k)]


def write_termination_message(path: str | None, message: str, secrets: Sequence[str] = ()) -> None:
    """Redacted, then cut to the size the kubelet keeps (in that order: a cut token is not found)."""
    if not path:
        return
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(redact(message, secrets)[:TERMINATION_MESSAGE_LIMIT] + "\n")
    except OSError as exc:
        log.warning("Failed to write the termination message to %s: %s", path, exc)
