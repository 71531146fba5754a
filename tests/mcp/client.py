"""A real MCP client (the official Python SDK) driving `tailnet-operator mcp` for the tests.

Usage:
    client.py --stdio -- COMMAND ARGS...          # launch the server, talk over stdin/stdout
    client.py --http URL --token TOKEN            # streamable HTTP with a bearer token

Reads a JSON list of steps on stdin and prints one JSON document on stdout:
    {"steps": [<one result per step>]}
Steps:
    {"op": "list_tools"}                      -> {"tools": [{name, readOnly, hasOutputSchema}]}
    {"op": "call", "tool": T, "args": {...}}  -> {"isError", "structured", "text"}
    {"op": "list_resources"}                  -> {"resources": [uri, ...]}
    {"op": "read_resources"}                  -> {"contents": {uri: text}} (every listed resource)
    {"op": "list_prompts"}                    -> {"prompts": [{name, arguments: [name, ...]}]}
    {"op": "get_prompt", "name": N, "args": {...}} -> {"text": ...} or {"protocolError": ...}
Protocol errors of a call (e.g. an unknown or disabled tool) are results too:
    {"protocolError": "..."}
"""

import argparse
import asyncio
import json
import sys

import httpx2
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client


def dump(model):
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


async def run_step(client, step):
    op = step["op"]
    if op == "list_tools":
        tools = (await client.list_tools()).tools
        return {
            "tools": [
                {
                    "name": t.name,
                    "readOnly": bool(t.annotations and t.annotations.read_only_hint),
                    "hasOutputSchema": t.output_schema is not None,
                }
                for t in tools
            ]
        }
    if op == "call":
        try:
            result = await client.call_tool(step["tool"], step.get("args", {}))
        except Exception as err:  # a protocol-level refusal, e.g. an unknown tool
            return {"protocolError": str(err)}
        text = "".join(getattr(c, "text", "") for c in result.content)
        return {
            "isError": bool(result.is_error),
            "structured": result.structured_content,
            "text": text,
        }
    if op == "list_resources":
        resources = (await client.list_resources()).resources
        return {"resources": [str(r.uri) for r in resources]}
    if op == "read_resources":
        contents = {}
        for r in (await client.list_resources()).resources:
            read = await client.read_resource(str(r.uri))
            contents[str(r.uri)] = "".join(getattr(c, "text", "") for c in read.contents)
        return {"contents": contents}
    if op == "list_prompts":
        prompts = (await client.list_prompts()).prompts
        return {
            "prompts": [
                {"name": p.name, "arguments": [a.name for a in (p.arguments or [])]}
                for p in prompts
            ]
        }
    if op == "get_prompt":
        try:
            result = await client.get_prompt(step["name"], step.get("args", {}))
        except Exception as err:
            return {"protocolError": str(err)}
        return {"text": "".join(getattr(m.content, "text", "") for m in result.messages)}
    raise SystemExit(f"unknown op {op!r}")


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--stdio", action="store_true")
    parser.add_argument("--http")
    parser.add_argument("--token", default="")
    parser.add_argument("command", nargs="*")
    args = parser.parse_args()
    steps = json.load(sys.stdin)
    if args.stdio:
        server = StdioServerParameters(command=args.command[0], args=args.command[1:])
        async with Client(server) as client:
            results = [await run_step(client, s) for s in steps]
    else:
        headers = {"Authorization": f"Bearer {args.token}"}
        async with httpx2.AsyncClient(headers=headers, timeout=60) as http:
            async with Client(streamable_http_client(args.http, http_client=http)) as client:
                results = [await run_step(client, s) for s in steps]
    json.dump({"steps": results}, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main())
