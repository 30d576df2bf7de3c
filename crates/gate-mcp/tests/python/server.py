"""An MCP server built with the official Python SDK, used as the gate's upstream in tests.

Run with no argument for stdio, or `http PORT` for Streamable HTTP on 127.0.0.1:PORT/mcp.
"""

import sys

from mcp.server.mcpserver import MCPServer
from mcp_types import ToolAnnotations

server = MCPServer("python-upstream")


@server.tool(annotations=ToolAnnotations(readOnlyHint=True))
def lookup(key: str) -> str:
    """Reads a value."""
    return f"value of {key}"


@server.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
def drop_table(table: str) -> str:
    """Drops a table."""
    return f"dropped {table}"


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "http":
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[2]))
    else:
        server.run()
