"""Drives MCP servers over stdio with the official MCP Python SDK and measures each question:
wall time per call (ms), Tailscale API calls made (from the simulated tailnet's counter) and the
server process's peak resident memory (max RSS, from /usr/bin/time wrapped around it: one fresh
server process per question, so the peak is that question's).

Used by scripts/bench-mcp-peers, which starts the simulated tailnet and installs the peers.

    mcp_peers.py --sim-url URL --sim-key KEY --servers servers.json [--list-tools]

servers.json: [{"name", "command": [...], "env": {...}, "questions": {QUESTION: [TOOL, ARGS] | null}}]
Prints one JSON document: {"results": [{"server", "question", "ms": [...], "apiCalls",
"peakRssKiB", "error", "bytes"}]}.
"""

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import urllib.request

from mcp import Client
from mcp.client.stdio import StdioServerParameters

BURST = 12


def sim_calls(url, key, reset=False):
    request = urllib.request.Request(
        f"{url}/sim/calls" + ("/reset" if reset else ""),
        method="POST" if reset else "GET",
        headers={"Authorization": f"Bearer {key}"},
    )
    with urllib.request.urlopen(request) as response:
        body = response.read()
    return None if reset else json.loads(body)["total"]


def text_of(result):
    return "".join(getattr(c, "text", "") for c in result.content)


async def session(server, calls, list_tools=False):
    """Runs `calls` ([(tool, args)]) in one server process; returns per-call (ms, bytes, error)
    and the process's peak RSS in KiB."""
    rss_file = tempfile.NamedTemporaryFile(delete=False)
    rss_file.close()
    env = {"PATH": os.environ["PATH"], "HOME": os.environ.get("HOME", "/tmp")}
    env.update(server["env"])
    params = StdioServerParameters(
        command="/usr/bin/time",
        args=["-f", "%M", "-o", rss_file.name] + server["command"],
        env=env,
    )
    out = []
    tools = None
    async with Client(params) as client:
        if list_tools:
            tools = [t.name for t in (await client.list_tools()).tools]
        for tool, args in calls:
            started = time.perf_counter()
            try:
                result = await client.call_tool(tool, args)
                text = text_of(result)
                error = text[:200] if result.is_error else None
            except Exception as err:  # a refusal at the protocol level
                text, error = "", str(err)[:200]
            out.append(((time.perf_counter() - started) * 1000, len(text), error))
    # /usr/bin/time writes once the server has exited.
    for _ in range(100):
        with open(rss_file.name) as f:
            lines = [l for l in f.read().splitlines() if l.strip()]
        if lines:
            break
        await asyncio.sleep(0.05)
    os.unlink(rss_file.name)
    peak = int(lines[-1]) if lines and lines[-1].strip().isdigit() else None
    return out, peak, tools


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--sim-url", required=True)
    parser.add_argument("--sim-key", required=True)
    parser.add_argument("--servers", required=True)
    parser.add_argument("--list-tools", action="store_true")
    args = parser.parse_args()
    with open(args.servers) as f:
        servers = json.load(f)
    if args.list_tools:
        for server in servers:
            _, _, tools = await session(server, [], list_tools=True)
            print(server["name"], tools)
        return
    results = []
    for server in servers:
        for question, call in server["questions"].items():
            row = {"server": server["name"], "question": question}
            if call is None:
                row["error"] = "no such tool"
                results.append(row)
                continue
            tool, tool_args = call
            repeat = BURST if question == "burst" else 1
            sim_calls(args.sim_url, args.sim_key, reset=True)
            try:
                calls, peak, _ = await session(server, [(tool, tool_args)] * repeat)
            except Exception as err:
                row["error"] = f"server failed: {err}"[:300]
                results.append(row)
                continue
            row["ms"] = [round(ms, 1) for ms, _, _ in calls]
            row["bytes"] = calls[0][1]
            row["error"] = next((e for _, _, e in calls if e), None)
            row["apiCalls"] = sim_calls(args.sim_url, args.sim_key)
            row["peakRssKiB"] = peak
            print(
                f"  {server['name']:<28} {question:<13} median {statistics.median(row['ms']):8.1f} ms"
                f"  {row['apiCalls']:>3} API calls  {(peak or 0) / 1024:7.1f} MiB"
                + (f"  error: {row['error']}" if row["error"] else ""),
                file=sys.stderr,
            )
            results.append(row)
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    asyncio.run(main())
