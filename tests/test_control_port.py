"""The control port end to end: a real TCP connection to 127.0.0.1 next to a real TLS SMP
server (the in-process server of conftest), clients of the project's own library.

Each exchange sends a command followed by ``help`` and reads up to the help line, so an
answer's end is known without waiting for silence.
"""

from __future__ import annotations

import base64
import os
import re

import pytest
import trio

import smpfast.client as sc
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.protocol import commands as C
from smpfast.protocol import errors as E
from smpfast.server.admin import HELP
from smpfast.store import LMDBStore

from control_support import ADMIN, USER, ControlClient, control, settings

def b64(b: bytes) -> str:
    return base64.urlsafe_b64encode(b).decode().rstrip("=")


# ---------------------------------------------------------------------------- the line protocol


def test_greeting_help_errors_and_quit(smp_server, trio_run):
    async def main():
        async with smp_server(**settings()) as srv:
            sock = srv.server.control.port
            c = await control(srv)
            assert c.stream.socket.getpeername()[0] == "127.0.0.1"
            assert await c.cmd("") == []
            assert await c.one("stats x") == "error: endOfInput"
            assert await c.one("nonsense") == "error: Failed reading: bad ControlProtocol command"
            assert await c.one("delete") == "error: space: not enough input"
            assert await c.one("block AAAA reason=maybe") == "error: string"
            assert await c.one("auth a b") == "error: Failed reading: invalid character in BasicAuth"
            assert await c.one(b"\xff\xfe") == "error: Failed reading: bad ControlProtocol command"
            assert await c.one("stats\r") == "AUTH"  # a CR before the newline is dropped
            await c.stream.send_all(b"quit\n")
            assert await c.read_line() is None  # closed, nothing written
            # a line that never ends is cut off; the port keeps serving others
            c2 = await ControlClient.open(sock)
            await c2.stream.send_all(b"x" * 70000)
            assert await c2.read_line() is None
            c3 = await control(srv)
            assert await c3.one("suspend") == "AUTH"
            await c3.aclose()

    trio_run(main)


def test_listens_on_loopback_only(smp_server, trio_run):
    async def main():
        async with smp_server(**settings()) as srv:
            port = srv.server.control.port
            assert port not in srv.server.ports
            # the listener is bound to 127.0.0.1: another local address is refused
            with pytest.raises(OSError):
                await trio.open_tcp_stream("127.0.0.2", port)
        async with smp_server() as srv:
            assert srv.server.control is None

    trio_run(main)


def test_auth_roles(smp_server, trio_run):
    async def main():
        async with smp_server(**settings()) as srv:
            c = await control(srv)
            assert await c.one("auth wrong") == "Current role is CPRNone"
            assert await c.one(f"auth {USER}") == "Current role is CPRUser"
            assert await c.one(f"auth {ADMIN}") == "Current role is CPRUser, start new session to change."
            assert await c.one(f"auth {USER}") == "Current role is CPRUser"
            a = await control(srv)
            assert await a.one(f"auth {ADMIN}") == "Current role is CPRAdmin"
            assert await a.one("auth wrong") == "Current role is CPRAdmin, start new session to change."
        # no passwords configured: nobody gets a role; equal passwords: admin wins
        async with smp_server(**settings(admin=None, user=None)) as srv:
            c = await control(srv)
            assert await c.one("auth anything") == "Current role is CPRNone"
            assert await c.one("stats") == "AUTH"
        async with smp_server(**settings(admin="same", user="same")) as srv:
            c = await control(srv)
            assert await c.one("auth same") == "Current role is CPRAdmin"

    trio_run(main)


# command -> the lowest role the reference requires (None: any session)
ROLES = {
    "stats": "user", "sockets": "user", "server-info": "user",
    "status AAAA": "user", "block AAAA reason=spam": "user", "unblock AAAA": "user",
    "clients": "admin", "threads": "admin", "socket-threads": "admin", "delete AAAA": "admin",
    "save": "admin", "suspend": "admin", "resume": "admin",
    "stats-rts": None, "help": None,
}


def test_every_command_by_role(smp_server, trio_run):
    async def main():
        async with smp_server(**settings()) as srv:
            for role, password in (("none", None), ("user", USER), ("admin", ADMIN)):
                c = await control(srv, password)
                for line, needed in ROLES.items():
                    if line == "help":
                        await c.stream.send_all(b"help\n")
                        assert await c.read_line() == HELP
                        continue
                    answer = await c.cmd(line)
                    allowed = needed is None or role == "admin" or (role == "user" and needed == "user")
                    if allowed:
                        assert answer != ["AUTH"], (role, line, answer)
                        assert answer or line == "socket-threads", (role, line)  # no SMP connection here
                    else:
                        assert answer == ["AUTH"], (role, line, answer)
                await c.aclose()

    trio_run(main)


def test_not_implemented_commands(smp_server, trio_run):
    async def main():
        async with smp_server(**settings()) as srv:
            c = await control(srv, ADMIN)
            assert await c.one("suspend") == "suspend not implemented"
            assert await c.one("resume") == "resume not implemented"

    trio_run(main)


# ---------------------------------------------------------------------------- block / unblock / status / delete


def test_block_v18_notice_on_every_command_and_unblock(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=18, **settings()) as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                assert rcv.version == 18
                q = await rcv.create_queue(sender_can_secure=True)
                c = await control(srv, USER)
                assert await c.one(f"status {b64(q.snd_id)}") == (
                    "status: EntityActive, updatedAt: Just (RoundedSystemTime {roundedSeconds = "
                    f"{int(srv.server.broker.clock()) // 86400 * 86400}}}), queueMode: Just QMMessaging"
                )
                answer = await c.one(f'block {b64(q.snd_id)} reason=content,notice={{"ttl": 3600}}')
                assert answer == ("ok, queue blocked: EntityBlocked (BlockingInfo {reason = BRContent, "
                                  "notice = Just (ClientNotice {ttl = Just 3600})})")
                blocked = E.ErrorType("BLOCKED", E.BlockingInfo("content", E.ClientNotice(3600)))
                # the subscribed recipient is told at once
                assert await rcv.next_event(5) == (q.rcv_id, C.Err(blocked))
                sender_key = generate_private_key(Alg.ED25519)
                requests = {
                    "SEND": (snd, q.snd_id, C.Send(C.MsgFlags(False), b"hi"), None),
                    "SKEY": (snd, q.snd_id, C.Skey(sender_key.public.der), sender_key),
                    "SUB": (rcv, q.rcv_id, C.SUB, q.rcv_auth_key),
                    "GET": (rcv, q.rcv_id, C.Get(), q.rcv_auth_key),
                    "ACK": (rcv, q.rcv_id, C.Ack(b"x" * 24), q.rcv_auth_key),
                    "KEY": (rcv, q.rcv_id, C.Key(sender_key.public.der), q.rcv_auth_key),
                    "NKEY": (rcv, q.rcv_id, C.Nkey(sender_key.public.der,
                                                   generate_private_key(Alg.X25519).public.der), q.rcv_auth_key),
                    "QUE": (rcv, q.rcv_id, C.Que(), q.rcv_auth_key),
                }
                for name, (client, entity, cmd, key) in requests.items():
                    assert await client.request(entity, cmd, key) == C.Err(blocked), name
                assert (await c.one(f"status {b64(q.snd_id)}")).startswith(
                    "status: EntityBlocked (BlockingInfo {reason = BRContent, notice = Just (ClientNotice {ttl = Just 3600})})")
                # blocking again the same way changes nothing and tells nobody
                assert (await c.one(f'block {b64(q.snd_id)} reason=content,notice={{"ttl":3600}}')).startswith(
                    "ok, already inactive: EntityBlocked")
                with trio.move_on_after(0.2):
                    ev = await rcv.next_event()
                    raise AssertionError(f"unexpected event {ev}")
                assert await c.one(f"unblock {b64(q.snd_id)}") == (
                    "ok, queue unblocked, reason to block was: BlockingInfo {reason = BRContent, "
                    "notice = Just (ClientNotice {ttl = Just 3600})}")
                assert await c.one(f"unblock {b64(q.snd_id)}") == "ok, queue was active"
                await snd.send(q.snd_id, b"after unblock")
                entity, msg = await rcv.next_event(5)
                assert entity == q.rcv_id and sc.decrypt_msg(q, msg).body == b"after unblock"

    trio_run(main)


def test_block_by_link_id_and_del_of_a_blocked_queue(smp_server, trio_run):
    async def main():
        async with smp_server(max_version=18, **settings()) as srv:
            async with sc.connect(srv.address) as rcv:
                q = await rcv.create_queue(subscribe=False)
                link_id = os.urandom(24)
                data = C.QueueLinkData(b"fixed", b"user")
                assert await rcv.request(q.rcv_id, C.Lset(link_id, data), q.rcv_auth_key) == C.OK
                c = await control(srv, ADMIN)
                assert (await c.one(f"block {b64(link_id)} reason=spam")).startswith("ok, queue blocked")
                # LGET (a contact queue's link) answers BLOCKED, without the notice there is none
                assert await rcv.request(link_id, C.Lget()) == C.Err(E.BLOCKED_SPAM)
                assert (await c.one(f"status {b64(q.snd_id)}")).startswith(
                    "status: EntityBlocked (BlockingInfo {reason = BRSpam, notice = Nothing})")
                # the recipient may still delete it (and OFF it: not tried here)
                await rcv.delete(q)
                assert await c.one(f"status {b64(q.snd_id)}") == "error: AUTH"
                assert await c.one(f"block {b64(q.snd_id)} reason=spam") == "error: AUTH"
                assert await c.one("unblock AAAA") == "error: AUTH"

    trio_run(main)


def test_block_an_off_queue_and_unblock_it(smp_server, trio_run):
    """As the reference: a suspended queue can be blocked (and is then active once unblocked);
    unblocking a suspended queue is refused."""

    async def main():
        async with smp_server(**settings()) as srv:
            async with sc.connect(srv.address) as rcv:
                q = await rcv.create_queue()
                await rcv.suspend(q)
                c = await control(srv, USER)
                assert await c.one(f"unblock {b64(q.snd_id)}") == "error, queue is inactive"
                assert (await c.one(f"block {b64(q.snd_id)} reason=spam")).startswith("ok, already inactive: EntityBlocked")
                assert (await c.one(f"unblock {b64(q.snd_id)}")).startswith("ok, queue unblocked")
                assert (await c.one(f"status {b64(q.snd_id)}")).startswith("status: EntityActive,")

    trio_run(main)


# version the client speaks -> what ERR BLOCKED becomes on its wire
BLOCKED_BY_VERSION = [
    (7, E.AUTH), (11, E.AUTH),
    (12, E.ErrorType("BLOCKED", E.BlockingInfo("spam"))),
    (17, E.ErrorType("BLOCKED", E.BlockingInfo("spam"))),
    (18, E.ErrorType("BLOCKED", E.BlockingInfo("spam", E.ClientNotice(None)))),
]


@pytest.mark.parametrize("version, expected", BLOCKED_BY_VERSION, ids=[f"v{v}" for v, _ in BLOCKED_BY_VERSION])
def test_blocked_by_version(smp_server, trio_run, version, expected):
    """BLOCKED is v12 (ERR AUTH below), its notice v18: as event and as answer."""

    async def main():
        async with smp_server(max_version=18, **settings()) as srv:
            async with sc.connect(srv.address, max_version=version) as rcv, \
                    sc.connect(srv.address, max_version=version) as snd:
                assert rcv.version == version
                q = await rcv.create_queue()
                c = await control(srv, USER)
                assert (await c.one(f"block {b64(q.snd_id)} reason=spam,notice={{}}")).startswith("ok, queue blocked")
                assert await rcv.next_event(5) == (q.rcv_id, C.Err(expected))
                assert await snd.request(q.snd_id, C.Send(C.MsgFlags(False), b"x")) == C.Err(expected)
                assert await rcv.request(q.rcv_id, C.SUB, q.rcv_auth_key) == C.Err(expected)

    trio_run(main)


def test_daily_block_quota(smp_server, trio_run):
    async def main():
        async with smp_server(**settings(quota=2)) as srv:
            async with sc.connect(srv.address) as rcv:
                queues = await rcv.create_queues(3)
                c = await control(srv, USER)
                for q in queues[:2]:
                    assert (await c.one(f"block {b64(q.snd_id)} reason=spam")).startswith("ok, queue blocked")
                # re-blocking an already blocked queue does not count, but the limit is reached
                assert await c.one(f"block {b64(queues[2].snd_id)} reason=spam") == \
                    "error: reached limit of 2 queues blocked daily"
                # shared by all sessions, and reset on the next UTC day
                c2 = await control(srv, ADMIN)
                assert (await c2.one(f"block {b64(queues[2].snd_id)} reason=spam")).startswith("error: reached limit")
                broker = srv.server.broker
                real_clock = broker.clock
                broker.clock = lambda: real_clock() + 86400
                assert (await c2.one(f"block {b64(queues[2].snd_id)} reason=spam")).startswith("ok, queue blocked")
                broker.clock = real_clock
        async with smp_server(**settings(quota=-1)) as srv:
            c = await control(srv, USER)
            assert await c.one("block AAAA reason=spam") == "error: reached limit of -1 queues blocked daily"
        async with smp_server(**settings(quota=0)) as srv:
            async with sc.connect(srv.address) as rcv:
                queues = await rcv.create_queues(25)
                c = await control(srv, USER)
                for q in queues:  # 0: no limit (more than the default 20)
                    assert (await c.one(f"block {b64(q.snd_id)} reason=spam")).startswith("ok, queue blocked")

    trio_run(main)


def test_blocked_queue_stays_blocked_across_a_restart(smp_server, trio_run, tmp_path):
    async def main():
        store = LMDBStore(str(tmp_path / "store"), map_size=1 << 26, durability="none")
        try:
            async with smp_server(store, max_version=18, **settings()) as srv:
                async with sc.connect(srv.address) as rcv:
                    q = await rcv.create_queue()
                    c = await control(srv, USER)
                    assert (await c.one(f'block {b64(q.snd_id)} reason=content,notice={{"ttl":60}}')).startswith("ok")
        finally:
            store.close()
        store = LMDBStore(str(tmp_path / "store"), map_size=1 << 26, durability="none")
        try:
            async with smp_server(store, max_version=18, **settings()) as srv:
                c = await control(srv, USER)
                assert (await c.one(f"status {b64(q.snd_id)}")).startswith(
                    "status: EntityBlocked (BlockingInfo {reason = BRContent, notice = Just (ClientNotice {ttl = Just 60})})")
                blocked = C.Err(E.ErrorType("BLOCKED", E.BlockingInfo("content", E.ClientNotice(60))))
                async with sc.connect(srv.address) as snd:
                    assert await snd.request(q.snd_id, C.Send(C.MsgFlags(False), b"x")) == blocked
                    assert await snd.request(q.rcv_id, C.SUB, q.rcv_auth_key) == blocked
        finally:
            store.close()

    trio_run(main)


def test_delete(smp_server, trio_run):
    async def main():
        async with smp_server(**settings()) as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                q = await rcv.create_queue(subscribe=False)
                for i in range(3):
                    await snd.send(q.snd_id, b"m%d" % i)
                user = await control(srv, USER)
                assert await user.one(f"delete {b64(q.snd_id)}") == "AUTH"
                admin = await control(srv, ADMIN)
                assert await admin.one(f"delete {b64(q.snd_id)}") == "ok, 3 messages deleted"
                assert await admin.one(f"delete {b64(q.snd_id)}") == "error: AUTH"
                assert await snd.request(q.snd_id, C.Send(C.MsgFlags(False), b"x")) == C.Err(E.AUTH)
                assert await rcv.request(q.rcv_id, C.Get(), q.rcv_auth_key) == C.Err(E.AUTH)

    trio_run(main)


# ---------------------------------------------------------------------------- information commands


def test_stats_clients_sockets_threads_server_info(smp_server, trio_run):
    async def main():
        async with smp_server(**settings()) as srv:
            async with sc.connect(srv.address) as rcv, sc.connect(srv.address) as snd:
                q1 = await rcv.create_queue()
                q2 = await rcv.create_queue(subscribe=False)
                assert await rcv.request(q2.rcv_id, C.Get(), q2.rcv_auth_key) == C.OK  # a GET relation
                await snd.send(q1.snd_id, b"one")
                await rcv.next_event(5)
                creds = await rcv.enable_notifications(q1)
                await snd.notifications_subscribe(creds)
                admin = await control(srv, ADMIN)
                stats = await admin.cmd("stats")
                values = dict(line.split(": ", 1) for line in stats)
                assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)? UTC", values["fromTime"])
                assert (values["qCreated"], values["qCount"], values["qCount 2"], values["notifiers"]) == ("2", "2", "2", "1")
                assert (values["msgSent"], values["msgCount"], values["qDeletedAll"]) == ("1", "1", "0")
                assert values["ntfCount 2"] == values["ntfCount"]
                user = await control(srv, USER)
                assert "ntfCount 2" not in dict(line.split(": ", 1) for line in await user.cmd("stats"))

                clients = await admin.cmd("clients")
                assert clients[0] == "clientId,sessionId,connected,createdAt,rcvActiveAt,sndActiveAt,age,subscriptions"
                rows = {r.split(",")[1]: r.split(",") for r in clients[1:]}
                assert len(rows) == 2
                row = rows[base64.b64encode(rcv.session_id).decode()]
                assert row[2] == "True" and row[7] == "2"  # SUB q1 and GET q2
                assert int(row[3]) <= int(row[4]) and int(row[6]) >= 0
                snd_row = rows[base64.b64encode(snd.session_id).decode()]
                assert snd_row[7] == "0"

                sockets = await user.cmd("sockets")
                at = sockets.index(f"Sockets for port {srv.port}:")  # (2 workers in tests: each has a port of its own too)
                assert sockets[at:at + 5] == [f"Sockets for port {srv.port}:", "accepted: 2", "closed: 0", "active: 2", "leaked: 0"]

                threads = await admin.cmd("threads")
                n = int(threads[0].removeprefix("Threads: "))
                assert n == len(threads) - 1 and n > 4
                running = [line for line in threads[1:] if "(running)" in line]
                # this session's own task (and with several workers, each other one's task answering it)
                assert len(running) == len(srv.workers)
                socket_threads = await admin.cmd("socket-threads")
                assert len(socket_threads) == 2
                for line in socket_threads:
                    port, sid, tid, state, name = line.split(",", 4)
                    assert int(port) == srv.port and sid.isdigit() and tid.isdigit() and state == "suspended"
                    assert f"({state}) {name}" in "\n".join(threads)
                info = await admin.cmd("server-info")
                assert info[1] == "Clients: 2"
                assert "SMP subscriptions (via clients): 2" in info
                assert "SMP subscriptions (by group: NoSub, SubPending, SubThread, ProhibitSub): (1,0,0,1)" in info
                assert "SMP subscriptions: 1" in info and "SMP subscribed clients: 1" in info
                rcv_id, snd_id = int(row[0]), int(snd_row[0])
                assert f"Ntf subscribed clients: 1 [{snd_id}]" in info
                assert f"Ntf subscribed clients count 2: 1 fromList [{snd_id}]" in info
                assert rcv_id != snd_id
                user_info = await user.cmd("server-info")
                assert not any(line.startswith("Client queues") for line in user_info)
                assert user_info[2:] == info[-6:]
            # both clients gone (the server sees their close asynchronously: a control command
            # sent at once may be answered before it has read both connections' ends)
            with trio.fail_after(10):
                while True:
                    sockets = await user.cmd("sockets")
                    at = sockets.index(f"Sockets for port {srv.port}:")
                    if sockets[at + 2:at + 4] == ["closed: 2", "active: 0"]:
                        break
                    await trio.sleep(0.01)
            assert await admin.cmd("clients") == [clients[0]]

    trio_run(main)


def test_stats_rts_and_save(smp_server, trio_run, tmp_path):
    async def main():
        store = LMDBStore(str(tmp_path / "store"), map_size=1 << 26, durability="fsync")
        try:
            async with smp_server(store, **settings()) as srv:
                c = await control(srv)  # stats-rts needs no role, as the reference
                rts = await c.cmd("stats-rts")
                assert rts[0].startswith("runtime: ") and any(line.startswith("max RSS (KiB): ") for line in rts)
                admin = await control(srv, ADMIN)
                async with sc.connect(srv.address) as rcv:
                    await rcv.create_queue()
                    syncs = srv.server.committer.commits
                    assert await admin.cmd("save") == ["saving server state...", "server state saved!"]
                    assert srv.server.committer.durable >= 1 and srv.server.committer.commits >= syncs
        finally:
            store.close()

    trio_run(main)


def test_commands_wait_for_the_commit(smp_server, trio_run):
    """``ok, queue blocked`` is written only once the block is durable."""

    async def main():
        async with smp_server(commit_interval=0.3, **settings()) as srv:
            async with sc.connect(srv.address) as rcv:
                q = await rcv.create_queue()
                committer = srv.server.committer
                c = await control(srv, USER)
                await c.stream.send_all(f"block {b64(q.snd_id)} reason=spam\n".encode())
                with trio.move_on_after(0.1):
                    await c.read_line()
                    raise AssertionError("answered before the commit")
                generation = committer.current()
                assert generation > committer.durable
                assert (await c.read_line()).startswith("ok, queue blocked")
                assert committer.durable >= generation

    trio_run(main)


def test_block_quota_limit_not_spent_by_errors(smp_server, trio_run):
    async def main():
        async with smp_server(**settings(quota=1)) as srv:
            async with sc.connect(srv.address) as rcv:
                q = await rcv.create_queue()
                c = await control(srv, USER)
                assert await c.one("block AAAA reason=spam") == "error: AUTH"
                assert (await c.one(f"block {b64(q.snd_id)} reason=spam")).startswith("ok, queue blocked")

    trio_run(main)


def test_smpfast_start_serves_the_control_port_of_its_ini(tmp_path, trio_run):
    """`init --control-port PORT` then `smpfast start`: the INI keys reach the listener."""
    import subprocess

    from smpfast.config import load_config
    from smpfast.testing.process import ServerProcess, free_port, smpfast_command

    data, port, cport = tmp_path / "srv", free_port(), free_port()
    subprocess.run(smpfast_command("init", "--dir", str(data), "--port", str(port), "--password", "none",
                                   "--control-port", str(cport), "--yes"), check=True, capture_output=True, timeout=60)
    admin = load_config(data).auth.control_port_admin_password
    with ServerProcess(data) as server:
        async def main():
            async with sc.connect(server.address) as rcv:
                q = await rcv.create_queue()
                c = await ControlClient.open(cport)
                assert await c.one(f"auth {admin}") == "Current role is CPRAdmin"
                assert (await c.one(f"block {b64(q.snd_id)} reason=spam")).startswith("ok, queue blocked")
                # v18: BLOCKED as an event, without a notice (none was given)
                assert await rcv.next_event(5) == (q.rcv_id, C.Err(E.ErrorType("BLOCKED", E.BlockingInfo("spam"))))
                values = dict(line.split(": ", 1) for line in await c.cmd("stats"))
                assert values["qCreated"] == "1"

        trio_run(main)
    assert "ControlPort: b'block" in server.log()


def test_blocked_queue_command_table(smp_server, trio_run):
    """The rest of the reference's table for a blocked queue: every recipient command
    through its withQueue answers BLOCKED (RKEY, LSET, LDEL, NDEL, LKEY too), NSUB still
    subscribes, a too large SEND is LARGE_MSG first, OFF works (then SEND gets AUTH)."""

    async def main():
        async with smp_server(max_version=18, **settings()) as srv:
            async with sc.connect(srv.address) as c:
                q = await c.create_queue(subscribe=False, sender_can_secure=True)
                creds = await c.enable_notifications(q)
                link_id = os.urandom(24)
                contact = await c.create_queue(subscribe=False)
                cc = await control(srv, USER)
                for queue in (q, contact):
                    assert (await cc.one(f"block {b64(queue.snd_id)} reason=spam")).startswith("ok, queue blocked")
                blocked = C.Err(E.ErrorType("BLOCKED", E.BlockingInfo("spam")))
                key = generate_private_key(Alg.ED25519)
                data = C.QueueLinkData(b"f", b"u")
                assert await c.request(q.rcv_id, C.Lset(link_id, data), q.rcv_auth_key) == blocked
                assert await c.request(q.rcv_id, C.Ldel(), q.rcv_auth_key) == blocked
                assert await c.request(q.rcv_id, C.Ndel(), q.rcv_auth_key) == blocked
                assert await c.request(contact.rcv_id, C.Rkey([key.public.der]), contact.rcv_auth_key) == blocked
                assert await c.request(creds.notifier_id, C.Nsub(), creds.notifier_key) == C.Sok(None)
                too_large = C.Send(C.MsgFlags(False), b"x" * 16049)
                assert await c.request(q.snd_id, too_large) == C.Err(E.LARGE_MSG)
                assert await c.request(q.rcv_id, C.Off(), q.rcv_auth_key) == C.OK
                assert await c.request(q.snd_id, C.Send(C.MsgFlags(False), b"x")) == C.Err(E.AUTH)
                assert (await cc.one(f"status {b64(q.snd_id)}")).startswith("status: EntityOff,")

    trio_run(main)
