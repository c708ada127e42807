"""Ending a call through Twilio's REST API — the one way to hang up when our TwiML goes on after the stream.

Our TwiML is ``<Connect><Stream/></Connect><Redirect>webhook</Redirect>``: when a process closes the stream (it is
draining, or it died), Twilio follows the ``<Redirect>`` and the call re-enters on another process. Closing the stream
therefore no longer hangs up; an agent's ``hangup()`` completes the call instead, as Twilio documents
(``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json`` with ``Status=completed``, HTTP basic auth with the
account SID and its auth token).
"""

from __future__ import annotations

import base64
import logging
from urllib.parse import quote

import aiohttp

log = logging.getLogger("voice.twilio")

API_URL = "https://api.twilio.com"
TIMEOUT_SECONDS = 5.0


def call_url(api_url: str, account_sid: str, call_sid: str) -> str:
    """The REST resource of one call."""
    account, call = quote(account_sid, safe=""), quote(call_sid, safe="")
    return f"{api_url.rstrip('/')}/2010-04-01/Accounts/{account}/Calls/{call}.json"


def basic_auth(user: str, password: str) -> str:
    """An HTTP basic ``Authorization`` header value."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


async def end_call(api_url: str, account_sid: str, auth_token: str, call_sid: str) -> bool:
    """Complete the call (Twilio hangs up, then stops its stream); whether Twilio accepted it. Failures are logged."""
    url = call_url(api_url, account_sid, call_sid)
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT_SECONDS)) as session, session.post(
            url, data={"Status": "completed"}, headers={"Authorization": basic_auth(account_sid, auth_token)}
        ) as response:
            if response.status < 300:
                return True
            body = (await response.text())[:300]
            log.error("Twilio did not end call %s: HTTP %d %s", call_sid, response.status, body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        log.error("could not reach Twilio to end call %s: %r", call_sid, exc)
    return False
