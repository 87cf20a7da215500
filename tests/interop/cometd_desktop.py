#!/usr/bin/env python3
"""A desktop built on a real CometD client library (aiocometd-ng, from PyPI) against gws-mock.

Logs in with Basic auth (GET /api/v2/me), handshakes and subscribes to /v2/me/devices over
CometD long-polling with the session cookie, starts a contact-center session, and prints every
notification as one JSON line. Exits 0 once a DeviceStateChangeMessage shows the agent Ready,
1 when that does not happen within the timeout.

    cometd_desktop.py http://127.0.0.1:8090 agent7001 password [timeout_s]
"""
import asyncio
import json
import sys

import aiohttp
from aiocometd_ng import Client, ConnectionType
from aiocometd_ng.extensions import Extension


class SessionCookie(Extension):
    """Sends the GWS session cookie with every Bayeux request (WWE's browser does the same)."""

    def __init__(self, session_id):
        self.session_id = session_id

    async def outgoing(self, payload, headers):
        headers["Cookie"] = f"JSESSIONID={self.session_id}"

    async def incoming(self, payload, headers=None):
        pass


async def main(base, user, password, timeout):
    async with aiohttp.ClientSession() as http:
        auth = aiohttp.BasicAuth(user, password)
        async with http.get(f"{base}/api/v2/me?subresources=devices", auth=auth) as r:
            r.raise_for_status()
            session_id = r.cookies["JSESSIONID"].value
        cookie = {"Cookie": f"JSESSIONID={session_id}"}
        client = Client(
            f"{base}/api/v2/notifications",
            ConnectionType.LONG_POLLING,
            extensions=[SessionCookie(session_id)],
        )
        async with client:
            await client.subscribe("/v2/me/devices")
            print("SUBSCRIBED", flush=True)
            start = {"operationName": "StartContactCenterSession", "channels": ["voice"]}
            async with http.post(f"{base}/api/v2/me", json=start, headers=cookie) as r:
                print("START", r.status, json.dumps(await r.json()), flush=True)

            async def ready():
                async for message in client:
                    print("MESSAGE", json.dumps(message), flush=True)
                    data = message.get("data", {})
                    devices = data.get("devices") or [{}]
                    state = devices[0].get("userState", {}).get("state")
                    if data.get("messageType") == "DeviceStateChangeMessage" and state == "Ready":
                        return

            await asyncio.wait_for(ready(), timeout)
    print("READY", flush=True)


if __name__ == "__main__":
    base, user, password = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 10.0
    try:
        asyncio.run(main(base, user, password, timeout))
    except asyncio.TimeoutError:
        print("TIMEOUT", flush=True)
        sys.exit(1)
