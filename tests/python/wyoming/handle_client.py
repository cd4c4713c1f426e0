"""Talk to pistil's Wyoming handle service with the `wyoming` package's own
client (what Home Assistant uses): describe, ping, transcripts in one and in
two conversations. Prints one JSON object with what came back; the Rust test
(iot/tests/wyoming_python.rs) checks it.

Usage: python3 handle_client.py PORT
"""

import asyncio
import json
import sys

from wyoming.asr import Transcript
from wyoming.client import AsyncTcpClient
from wyoming.error import Error
from wyoming.handle import Handled, NotHandled
from wyoming.info import Describe, Info
from wyoming.ping import Ping, Pong


async def next_event(client):
    event = await client.read_event()
    if event is None:
        raise RuntimeError("connection closed")
    return event


async def ask(port, text, context):
    # One connection per transcript, like Home Assistant's conversation agent.
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=60) as client:
        await client.write_event(Transcript(text, context=context, language="en").event())
        while True:
            event = await next_event(client)
            if Handled.is_type(event.type):
                h = Handled.from_event(event)
                return {"type": "handled", "text": h.text, "context": h.context}
            if NotHandled.is_type(event.type):
                n = NotHandled.from_event(event)
                return {"type": "not-handled", "text": n.text, "context": n.context}
            if Error.is_type(event.type):
                e = Error.from_event(event)
                return {"type": "error", "text": e.text, "code": e.code}


async def main(port):
    out = {}
    async with AsyncTcpClient("127.0.0.1", port, read_timeout=60) as client:
        await client.write_event(Describe().event())
        info = Info.from_event(await next_event(client))
        h = info.handle[0]
        out["info"] = {
            "name": h.name,
            "description": h.description,
            "installed": h.installed,
            "version": h.version,
            "attribution": [h.attribution.name, h.attribution.url],
            "supports_handled_streaming": h.supports_handled_streaming,
            "models": [
                {"name": m.name, "installed": m.installed, "languages": m.languages}
                for m in h.models
            ],
            "asr": len(info.asr),
        }
        await client.write_event(Ping(text="hi").event())
        pong = Pong.from_event(await next_event(client))
        out["pong"] = pong.text

    a = {"conversation_id": "conv-A", "device_id": "kitchen"}
    b = {"conversation_id": "conv-B"}
    out["answers"] = [
        await ask(port, "What is two plus two?", a),
        await ask(port, "And times three?", a),
        await ask(port, "Héllo from B", b),
        await ask(port, "", a),
    ]
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
