"""HAProxy's runtime API over its unix socket: the one way the agent talks to either of its site's
HAProxy doors (the database door, control/dbdoor.py, and the front door on HAProxy,
control/door_haproxy.py)."""

from __future__ import annotations

import asyncio


async def send(socket_path: str, command: str) -> str:
    """One command per connection (HAProxy's non-interactive mode): the answer is what it prints
    before closing, empty when the command succeeded. OSError when the socket cannot be opened or
    answers nothing within 2 s."""
    reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(socket_path), 1.0)
    try:
        writer.write(command.encode() + b"\n")
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), 2.0)
    except asyncio.TimeoutError as e:
        raise OSError(f"no answer to '{command}' within 2 s") from e
    finally:
        writer.close()
    return raw.decode(errors="replace").strip()


async def send_all(socket_path: str, commands: list[str], what: str) -> str:
    """Send `commands` in order; "" when HAProxy took every one, else what went wrong, naming
    `what` (the door): the socket unreachable, or the first commands it refused."""
    try:
        answers = [await send(socket_path, c) for c in commands]
    except OSError as e:
        return f"{what} not reachable at {socket_path}: {e}"
    bad = [f"{c}: {a}" for c, a in zip(commands, answers) if a]
    return f"{what} refused: " + "; ".join(bad[:3]) if bad else ""
