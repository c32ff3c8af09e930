"""The control port's test client: a line-protocol client over TCP to 127.0.0.1, and the
settings of a server with a control port (admin and user passwords)."""

from __future__ import annotations

import trio

from smpfast.server.admin import GREETING, HELP
from smpfast.server.control import ControlSettings

ADMIN = "admin-pass"
USER = "user-pass"


def settings(quota: int = 20, admin: str | None = ADMIN, user: str | None = USER) -> dict:
    return {"control": ControlSettings(0, None if admin is None else admin.encode(),
                                       None if user is None else user.encode(), quota)}


class ControlClient:
    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buffer = b""

    @classmethod
    async def open(cls, port: int) -> "ControlClient":
        c = cls(await trio.open_tcp_stream("127.0.0.1", port))
        assert await c.read_lines(len(GREETING)) == list(GREETING)
        return c

    async def read_line(self) -> str | None:
        while b"\n" not in self.buffer:
            try:
                data = await self.stream.receive_some(65536)
            except trio.BrokenResourceError:  # closed with our bytes unread: a reset
                return None
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()

    async def read_lines(self, n: int) -> list[str]:
        return [await self.read_line() for _ in range(n)]  # type: ignore[misc]

    async def cmd(self, line: str | bytes) -> list[str]:
        raw = line.encode() if isinstance(line, str) else line
        await self.stream.send_all(raw + b"\nhelp\n")
        out = []
        while (got := await self.read_line()) != HELP:
            assert got is not None, f"connection closed after {out}"
            out.append(got)
        return out

    async def one(self, line: str | bytes) -> str:
        [answer] = await self.cmd(line)
        return answer

    async def aclose(self) -> None:
        await self.stream.aclose()


async def control(srv, password: str | None = None) -> ControlClient:
    c = await ControlClient.open(srv.server.control.port)
    if password is not None:
        assert (await c.one(f"auth {password}")).startswith("Current role is CPR")
    return c
