"""The official Python SDK as a client of the gate, over Streamable HTTP.

Usage: client.py URL TOKEN MODE   (MODE: legacy, auto or 2026-07-28)
Lists the tools, calls the read-only `echo`, then the destructive `delete_file`, which the
gate holds until the test approves it. Prints one JSON line with what it saw.
"""

import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


async def main(url: str, token: str, mode: str) -> None:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=httpx2.Timeout(60.0))
    progress: list[str] = []

    async def on_progress(value: float, total: float | None, message: str | None) -> None:
        progress.append(message or "")

    async with http:
        async with Client(streamable_http_client(url, http_client=http), mode=mode) as client:
            tools = await client.list_tools()
            echo = await client.call_tool("echo", {"message": "from python"})
            held = await client.call_tool("delete_file", {"path": "/tmp/py"}, progress_callback=on_progress)
            print(json.dumps({
                "tools": sorted(t.name for t in tools.tools),
                "echo": echo.content[0].text,
                "echo_error": echo.is_error,
                "held": held.content[0].text,
                "held_error": held.is_error,
                "progress": progress,
            }), flush=True)


asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3]))
