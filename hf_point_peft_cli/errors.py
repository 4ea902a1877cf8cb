"""One line for each failure a user can meet: what failed, why, and what to do, with the exit status that says whose
side it is on (2: the command or its inputs, 1: the network, the Hub, credentials, memory or disk). Failures that are
none of these are bugs and keep their traceback."""

from __future__ import annotations

import errno
from collections.abc import Callable

from .parser import CommandError

__all__ = ["describe", "describe_hub_error"]

_LOGIN = "set HF_TOKEN or run `hf auth login`"
_GO_LOCAL = "or set HF_HUB_OFFLINE=1 and pass a local folder"


def _has_token() -> bool:
    from huggingface_hub import get_token

    return get_token() is not None


def _network_error(err: BaseException) -> bool:
    """httpx (huggingface_hub < 2) or httpx2 transport errors: no connection, DNS, timeouts."""
    for module in ("httpx2", "httpx"):
        try:
            transport = __import__(module).TransportError
        except (ImportError, AttributeError):
            continue
        if isinstance(err, transport):
            return True
    return False


def describe_hub_error(err: BaseException, what: str, upload: bool = False) -> tuple[int, str] | None:
    """(exit status, message) for an error of huggingface_hub or of the network beneath it, else None. `upload`:
    the command writes to the Hub, so a local folder is no way around a failure."""
    from huggingface_hub import constants
    from huggingface_hub import errors as hub

    if isinstance(err, hub.OfflineModeIsEnabled):
        todo = "unset it to upload" if upload else "pass a local folder, or unset it"
        return 1, f"{what}: HF_HUB_OFFLINE=1 is set, so the Hub cannot be reached: {todo}"
    if isinstance(err, hub.GatedRepoError):
        who = "your token is not on its access list" if _has_token() else "no Hugging Face token is set"
        return 1, f"{what}: the repository is gated and {who}: ask for access on its Hub page, then {_LOGIN}"
    if isinstance(err, hub.RepositoryNotFoundError):
        if _has_token():
            return 2, f"{what}: no such repository on the Hub, or your token cannot read it: check the id"
        return (
            2,
            f"{what}: no such repository on the Hub, or it is private and no token is set: check the id, or {_LOGIN}",
        )
    if isinstance(err, hub.RevisionNotFoundError):
        return 2, f"{what}: the repository has no such revision (branch, tag or commit)"
    if isinstance(err, hub.LocalTokenNotFoundError):
        return 1, f"{what}: no Hugging Face token found: {_LOGIN}"
    if isinstance(err, hub.LocalEntryNotFoundError):
        return 1, (
            f"{what}: not in the local cache, and the Hub ({constants.ENDPOINT}) could not be reached: check the "
            f"network, {_GO_LOCAL}"
        )
    if isinstance(err, hub.HfHubHTTPError):
        status = getattr(getattr(err, "response", None), "status_code", None)
        if isinstance(err, hub.EntryNotFoundError):
            return 2, f"{what}: the repository has no such file"
        if status == 401:
            if _has_token():
                return 1, f"{what}: the Hub refused the token (401 Unauthorized): {_LOGIN} with a valid token"
            return 1, f"{what}: the Hub asks for a token (401 Unauthorized) and none is set: {_LOGIN}"
        if status == 403:
            return 1, (
                f"{what}: no permission (403 Forbidden): the token cannot do this (a read-only token, or another "
                f"user's namespace); {_LOGIN} with a token that has write access to it"
            )
        if status == 429:
            return 1, f"{what}: the Hub rate-limits these requests (429): wait and retry"
        return 1, f"{what}: the Hub answered {status or 'an error'}: retry later"
    if _network_error(err):
        reason = " ".join(str(err).split()) or type(err).__name__
        todo = "check the network and retry" if upload else f"check the network, {_GO_LOCAL}"
        return 1, f"{what}: cannot reach the Hub at {constants.ENDPOINT} ({reason}): {todo}"
    return None


def _chain(err: BaseException):
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        yield err
        err = err.__cause__ or err.__context__


def describe(err: BaseException, what: str, flag: Callable[[str], str], upload: bool = False) -> tuple[int, str] | None:
    """(exit status, one-line message) for a failure the user can act on, else None (a bug: keep the traceback).
    `what` names the object of the command (`--backbone user/x`, `push to user/y`); `flag` renders a setting name
    the way the user typed it."""
    code, message = _describe(err, what, flag, upload) or (None, None)
    if code is None:
        return None
    return code, " ".join(str(message).split())


def _describe(err: BaseException, what: str, flag: Callable[[str], str], upload: bool) -> tuple[int, str] | None:
    if isinstance(err, CommandError):
        return err.code, str(err)
    for link in _chain(err):  # transformers and peft wrap Hub errors in OSError / ValueError
        found = describe_hub_error(link, what, upload)
        if found is not None:
            return found
    if hasattr(err, "cli_message"):
        return 2, err.cli_message(flag)
    if isinstance(err, (FileNotFoundError, NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError)):
        if err.filename is not None and err.strerror:
            return 2, f"{err.strerror}: {err.filename}"
        return 2, str(err)
    if isinstance(err, (ValueError, TypeError)):
        return 2, str(err)
    if isinstance(err, MemoryError) or type(err).__name__ == "OutOfMemoryError":
        return 1, f"out of memory ({str(err).splitlines()[0] if str(err) else type(err).__name__}): lower --batch-size"
    if isinstance(err, ImportError):
        return 1, str(err)
    if isinstance(err, OSError):
        if err.errno == errno.ENOSPC:
            return 1, f"no space left on the device: {err.filename or ''} (free some space or choose another folder)"
        return 1, str(err)
    return None
