"""The thinnest chat relay Daphne can serve: the floor under r1chat's figures (bench/bursts.py
--floor).

A raw ASGI application, no Django, no Channels: a socket's question (a `send` frame) becomes
one request to the model server over a connection opened when the socket opened (as r1chat's
`catalog.tab_opened` does), and the model's text goes back as `generation.delta` frames,
the first at once and then at most one per 40 ms, then `generation.done`. With
BENCH_FLOOR_ANNOUNCE=1 three frames go to the socket before the first token, as r1chat's
`conversation.created` and two `message.created` do. Nothing is checked, stored, rendered or
shared between tabs: what it costs is what Daphne, the sockets and the model's stream cost.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson

MODEL_SERVER = os.environ.get("BENCH_FLOOR_MODEL_SERVER", "127.0.0.1:11434")
ANNOUNCE = os.environ.get("BENCH_FLOOR_ANNOUNCE") == "1"
FRAME_INTERVAL = 0.04


def _request(question: dict[str, Any]) -> bytes:
    settings = question.get("settings") or {}
    body = orjson.dumps(
        {
            "model": "deepseek-v4-flash",
            "messages": [{"role": "user", "content": str(question.get("content", ""))}],
            "stream": True,
            "stream_options": {"include_usage": True},
            "thinking": {"type": "enabled"},
            "max_tokens": settings.get("max_tokens") or 2048,
        }
    )
    head = (
        b"POST /chat/completions HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % (MODEL_SERVER.encode(), len(body))
    )
    return head + body


async def _connect() -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = MODEL_SERVER.rsplit(":", 1)
    return await asyncio.open_connection(host, int(port))


async def _relay(
    send: Any, question: dict[str, Any], connection: asyncio.Task[Any], number: int
) -> None:
    reader, writer = await connection
    writer.write(_request(question))
    if ANNOUNCE:
        for kind in ("conversation.created", "message.created", "message.created"):
            frame = {"type": kind, "message": {"id": str(number), "content": question["content"]}}
            await send({"type": "websocket.send", "text": orjson.dumps(frame).decode()})
    await reader.readuntil(b"\r\n\r\n")  # the status line and headers (chunked, as the simulator)
    loop = asyncio.get_running_loop()
    seq, last, pending = 0, 0.0, b""
    reasoning: list[str] = []
    answer: list[str] = []

    async def flush() -> None:
        nonlocal seq, last
        if not (reasoning or answer):
            return
        seq += 1
        frame: dict[str, Any] = {"type": "generation.delta", "message": str(number), "seq": seq}
        if reasoning:
            frame["reasoning"] = "".join(reasoning)
        if answer:
            frame["answer"] = "".join(answer)
        reasoning.clear()
        answer.clear()
        last = loop.time()
        await send({"type": "websocket.send", "text": orjson.dumps(frame).decode()})

    done = False
    while not done:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
        if size == 0:
            break
        *lines, pending = (pending + (await reader.readexactly(size + 2))[:-2]).split(b"\n")
        for line in lines:
            if line.startswith(b"data: [DONE]"):
                done = True
            elif line.startswith(b"data: "):
                chunk = orjson.loads(line[6:])
                delta = (chunk.get("choices") or [{}])[0].get("delta") or {}
                if delta.get("reasoning_content"):
                    reasoning.append(delta["reasoning_content"])
                if delta.get("content"):
                    answer.append(delta["content"])
        if loop.time() - last >= FRAME_INTERVAL:
            await flush()
    await flush()
    writer.close()
    frame = {"type": "generation.done", "message": str(number), "status": "complete"}
    await send({"type": "websocket.send", "text": orjson.dumps(frame).decode()})


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] == "http":  # the bench's readiness check
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    running: set[asyncio.Task[None]] = set()
    connection: asyncio.Task[Any] | None = None
    questions = 0
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
            connection = asyncio.ensure_future(_connect())  # ready before the question
        elif message["type"] == "websocket.receive":
            question = orjson.loads(message.get("text") or "{}")
            questions += 1
            if connection is None or questions > 1:
                connection = asyncio.ensure_future(_connect())
            task = asyncio.ensure_future(_relay(send, question, connection, questions))
            running.add(task)
            task.add_done_callback(running.discard)
        else:
            return
