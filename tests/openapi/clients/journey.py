"""A visitor's journey through the API with a client generated from its OpenAPI document.

scripts/clients.sh generates the package `fleety_client` from the served `/v1/openapi.json`
with openapi-python-client, type-checks this file against it with mypy (strict) and runs it:

    PYTHONPATH=<generated> python journey.py http://127.0.0.1:PORT

It exits non-zero, saying which step failed, when the server answers anything unexpected.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from http import HTTPStatus
from typing import TypeVar

import httpx

from fleety_client import AuthenticatedClient, Client
from fleety_client.api.sessions import init_session
from fleety_client.api.tickets import create_ticket, get_ticket, mark_read, post_message
from fleety_client.models import (
    CreateTicket,
    Error,
    InitSession,
    MarkRead,
    Participant,
    PostMessage,
    PromptEvent,
    PromptEventDataType0,
    PromptRequest,
    Speaker,
    TicketStatus,
)
from fleety_client.types import Response

PROJECT = "demo"

T = TypeVar("T")


class JourneyFailed(Exception):
    pass


def check(condition: bool, what: str) -> None:
    if not condition:
        raise JourneyFailed(f"failed: {what}")


def ok(step: str, answer: Response[Error | T], status: HTTPStatus) -> T:
    """The parsed answer of a successful call, or the step's failure with the server's error."""
    parsed = answer.parsed
    if answer.status_code != status or parsed is None or isinstance(parsed, Error):
        said = parsed.error if isinstance(parsed, Error) else answer.content.decode(errors="replace")
        raise JourneyFailed(f"{step}: {int(answer.status_code)} {said} (expected {int(status)})")
    return parsed


def events(lines: Iterator[str]) -> Iterator[PromptEvent]:
    """The events of a `text/event-stream` body, each as the document's `PromptEvent`."""
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield PromptEvent.from_dict({"data": "\n".join(data)})
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].lstrip())
    if data:
        yield PromptEvent.from_dict({"data": "\n".join(data)})


def chat(visitor: AuthenticatedClient, prompt: str) -> tuple[int, str]:
    """Asks the assistant; returns how many pieces the answer came in, and the answer.

    The generated `chat.sync` would parse the whole streamed body as one event, so the request
    goes through the generated client's own httpx client (base URL, bearer token) and the
    events are read as they come, each typed by the generated `PromptEvent`.
    """
    body = PromptRequest(prompt=prompt).to_dict()
    with visitor.get_httpx_client().stream("POST", "/v1/chat", json=body) as response:
        check(response.status_code == 200, f"chat answers 200 (got {response.status_code})")
        kind = response.headers.get("content-type", "")
        check(kind.startswith("text/event-stream"), f"chat streams events (got {kind})")
        answer = ""
        pieces = 0
        finished = False
        for event in events(response.iter_lines()):
            check(not finished, "nothing follows [DONE]")
            if isinstance(event.data, PromptEventDataType0):
                finished = True
                continue
            frame = json.loads(event.data)
            if "error" in frame:
                raise JourneyFailed(f"chat: the stream failed: {Error.from_dict(frame).error}")
            content = frame["content"]
            check(isinstance(content, str), "each event carries text")
            answer += content
            pieces += 1
        check(finished, "the stream ends with [DONE]")
    return pieces, answer


def journey(base_url: str) -> None:
    timeout = httpx.Timeout(30.0)
    api = Client(base_url=base_url, timeout=timeout, raise_on_unexpected_status=True)

    # A visitor's session.
    session = ok(
        "init-session",
        init_session.sync_detailed(client=api, body=InitSession(project_id=PROJECT)),
        HTTPStatus.OK,
    )
    check(session.project_id == PROJECT and session.token != "", "the session is for the project")
    print(f"session for {session.project_id}, until {session.expires_at.isoformat()}")

    # The visitor's session token as the bearer: the ticket remembers the session, and the chat
    # needs it. The other ticket endpoints take no credentials from a visitor, but the generator
    # asks for an AuthenticatedClient wherever an operation lists any security scheme, even
    # beside the anonymous `{}` one, so the journey uses this client for them too.
    visitor = AuthenticatedClient(
        base_url=base_url, token=session.token, timeout=timeout, raise_on_unexpected_status=True
    )
    with visitor:
        ticket = ok(
            "create ticket",
            create_ticket.sync_detailed(
                PROJECT,
                client=visitor,
                body=CreateTicket(
                    title="The export button does nothing",
                    description="From the generated Python client.",
                ),
            ),
            HTTPStatus.CREATED,
        )
        check(ticket.status == TicketStatus.OPEN and ticket.messages == [], "a new ticket is open and empty")
        print(f"ticket {ticket.slug}")

        content = "Clicking Export shows nothing at all."
        posted = ok(
            "post message",
            post_message.sync_detailed(
                PROJECT,
                ticket.slug,
                client=visitor,
                body=PostMessage(content=content, author=Speaker.USER),
                idempotency_key=f"py-journey-{ticket.id}",
            ),
            HTTPStatus.CREATED,
        )
        message = posted.data
        check(message.author == Participant.USER and message.content == content, "the message as stored")

        read = ok(
            "mark read",
            mark_read.sync_detailed(PROJECT, ticket.slug, client=visitor, body=MarkRead(reader=Speaker.USER)),
            HTTPStatus.OK,
        )
        check(read.last_read_message_id == message.id, "read up to the message")

        got = ok("get ticket", get_ticket.sync_detailed(PROJECT, ticket.slug, client=visitor), HTTPStatus.OK)
        stored = next((m for m in got.messages if m.id == message.id), None)
        check(stored is not None, "the ticket has the message")
        assert stored is not None
        check(Participant.USER in stored.read_by, "read_by includes user")
        print(f"message {stored.id} read by {', '.join(r.value for r in stored.read_by)}")

        # A refusal comes back typed as the document's `Error`.
        missing = get_ticket.sync_detailed(PROJECT, "nosuch-ticket-000", client=visitor)
        check(
            missing.status_code == HTTPStatus.NOT_FOUND and isinstance(missing.parsed, Error),
            "an unknown ticket is a 404 with an error",
        )

        # The assistant's answer, streamed as server-sent events.
        pieces, answer = chat(visitor, "How do I reset my password?")
        check(pieces > 0 and answer.strip() != "", "the assistant said something")
        print(f"chat: {pieces} events, {len(answer)} characters")


def main() -> int:
    if len(sys.argv) != 2:
        print("usage: journey.py BASE_URL", file=sys.stderr)
        return 2
    try:
        journey(sys.argv[1])
    except JourneyFailed as e:
        print(f"python journey: {e}", file=sys.stderr)
        return 1
    print("python journey: passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
