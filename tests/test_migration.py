"""`smpfast import` / `smpfast export` on files written in the reference server's formats.

The reference's directories are built here from the format description: credentials (the
same files smpfast uses), a small smp-server.ini, a store log and a message file."""

from __future__ import annotations

import base64
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

import smpfast.client as sc
from smpfast import cli
from smpfast.client.types import RecipientQueue, decrypt_msg
from smpfast.credentials import create_credentials, load_identity
from smpfast.crypto.certs import encode_fingerprint
from smpfast.crypto.keys import Alg, generate_private_key
from smpfast.crypto.message import precompute
from smpfast.testing.process import ServerProcess, free_port
from smpfast.store import LMDBStore, StoredMessage

PASSWORD = "s3cret-pass"


def b(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@dataclass
class Reference:
    config: Path
    logs: Path
    fingerprint: str
    port: int

    @property
    def store_log(self) -> Path:
        return self.logs / "smp-server-store.log"

    @property
    def messages(self) -> Path:
        return self.logs / "smp-server-messages.log"

    def args(self) -> list[str]:
        return ["--config-path", str(self.config), "--log-path", str(self.logs)]

    def address(self) -> str:
        return f"smp://{self.fingerprint}:{PASSWORD}@127.0.0.1:{self.port}"


def make_reference(root: Path, store_log: list[str], messages: list[str] | None) -> Reference:
    config, logs = root / "etc", root / "var"
    logs.mkdir(parents=True)
    create_credentials(config, "127.0.0.1")
    port = free_port()
    (config / "smp-server.ini").write_text(
        "[STORE_LOG]\nenable: on\nstore_queues: memory\n\n"
        f"[AUTH]\nnew_queues: on\ncreate_password: {PASSWORD}\n\n"
        f"[TRANSPORT]\n# host: smp.example.com\nhost: 127.0.0.1\nport: {port}\nwebsockets: off\n"
    )
    (logs / "smp-server-store.log").write_text("".join(line + "\n" for line in store_log))
    if messages is not None:
        (logs / "smp-server-messages.log").write_text("".join(line + "\n" for line in messages))
    return Reference(config, logs, encode_fingerprint(load_identity(config)), port)


@dataclass
class QueueKeys:
    rid: bytes
    sid: bytes
    nid: bytes
    rcv_key: object
    snd_key: object
    ntf_key: object
    dh_secret: bytes

    @classmethod
    def new(cls, n: int) -> QueueKeys:
        return cls(
            bytes([n]) * 24,
            bytes([n + 100]) * 24,
            bytes([n + 200]) * 24,
            generate_private_key(Alg.ED25519),
            generate_private_key(Alg.ED25519),
            generate_private_key(Alg.ED25519),
            os.urandom(32),
        )

    def create(self, extra: str = "") -> str:
        return (
            f"CREATE rid={b(self.rid)} rk={b(self.rcv_key.public.der)} rdh={b(self.dh_secret)}"
            f" sid={b(self.sid)} sk={b(self.snd_key.public.der)} queue_mode=M{extra}"
        )

    def recipient_queue(self) -> RecipientQueue:
        dh = generate_private_key(Alg.X25519)  # unused: the box key comes from the secret
        return RecipientQueue(self.rid, self.sid, self.rcv_key, dh, b"", precompute(self.dh_secret))


def every_record_kind(a: QueueKeys, c: QueueKeys, d: QueueKeys) -> list[str]:
    """A store log as a running reference server appends it: every record kind."""
    other = generate_private_key(Alg.ED25519).public.der
    return [
        f"NEW_SERVICE service_id={b(b'S' * 24)} role=N cert={b(b'leaf')},{b(b'ca')}"
        f" cert_hash={b(b'h' * 32)} created_at=1700006400",
        a.create(" updated_at=1699920000"),
        f"NOTIFIER {b(a.rid)} {b(a.nid)} {b(a.ntf_key.public.der)} {b(b'n' * 32)}",
        f"TIME {b(a.rid)} 1700006400",
        c.create().replace(f" sk={b(c.snd_key.public.der)}", " sk="),
        f"SECURE {b(c.rid)} {b(c.snd_key.public.der)}",
        f"KEYS {b(c.rid)} {b(c.rcv_key.public.der)},{b(other)}",
        f"LINK {b(c.rid)} {b(b'L' * 24)} {b(b'fixed')} {b(b'user')}",
        f"QUEUE_SERVICE {b(c.rid)} R {b(b'S' * 24)}",
        f"BLOCK {b(c.rid)} reason=spam",
        f"UNBLOCK {b(c.rid)}",
        f"SUSPEND {b(c.rid)}",
        f"NOTIFIER {b(c.rid)} {b(c.nid)} {b(c.ntf_key.public.der)} {b(b'm' * 32)}",
        f"QUEUE_SERVICE {b(c.rid)} N {b(b'S' * 24)}",
        f"NDELETE {b(c.rid)}",
        f"LDELETE {b(c.rid)}",
        d.create(),
        f"DELETE {b(d.rid)}",
    ]


MSG_IDS = [bytes([0x40 + i]) * 24 for i in range(3)]


# Recent timestamps: the server expires messages older than 21 days when it starts.
NOW = int(time.time())


def messages_for(q: QueueKeys) -> list[str]:
    return [
        f"v3 {b(q.rid)} {b(MSG_IDS[0])} {NOW - 100} flags=T {b(b'first imported message')}",
        f"v3 {b(q.rid)} {b(MSG_IDS[1])} {NOW - 99} flags=F {b(b'second one')}",
    ]


@pytest.fixture
def keys() -> tuple[QueueKeys, QueueKeys, QueueKeys]:
    return QueueKeys.new(1), QueueKeys.new(2), QueueKeys.new(3)


def test_import_keeps_address_queues_links_notifiers_and_messages(tmp_path, capsys, keys):
    a, c, d = keys
    ref = make_reference(tmp_path / "ref", every_record_kind(a, c, d), messages_for(a))
    target = tmp_path / "smpfast"
    code, out, err = run(capsys, "import", "--dir", str(target), *ref.args())
    assert code == 0, err
    assert err == ""
    assert out.splitlines()[-1] == ref.address()  # same fingerprint, password, host and port
    assert "2 queues" in out and "2 undelivered messages" in out
    for name in ("ca.crt", "server.crt", "server.key", "fingerprint", "ca.key"):
        assert (target / name).read_bytes() == (ref.config / name).read_bytes()
    assert (target / "server.key").stat().st_mode & 0o777 == 0o600
    store = LMDBStore(target / "store")
    try:
        qa, qc = store.get_queue(a.rid), store.get_queue(c.rid)
        assert store.get_queue(d.rid) is None and store.queue_count() == 2
        assert qa.updated_at == 1700006400 and qa.notifier.notifier_id == a.nid
        assert store.queue_by_notifier(a.nid) == qa and store.queue_by_sender(a.sid) == qa
        assert qc.sender_key == c.snd_key.public.der and len(qc.recipient_keys) == 2
        assert qc.status == "off" and qc.link_id is None and qc.notifier is None
        assert qc.rcv_service_id == b"S" * 24
        assert [m.body for m in store.queue_messages(a.rid)] == [b"first imported message", b"second one"]
        assert store.peek_message(a.rid).notification
        # the service record and the queue's association with it are in the store
        [service] = store.iter_services()
        assert service.service_id == b"S" * 24 and store.service_by_cert(service.cert_hash) == service
        assert store.service_queue_count(b"S" * 24, "R") == 1
    finally:
        store.close()
    assert not (target / "reference-services.log").exists()


@pytest.mark.slow
def test_imported_queue_delivers_through_a_real_server(tmp_path, capsys, keys):
    a, c, d = keys
    ref = make_reference(tmp_path / "ref", every_record_kind(a, c, d), messages_for(a))
    target = tmp_path / "smpfast"
    assert run(capsys, "import", "--dir", str(target), *ref.args())[0] == 0
    q = a.recipient_queue()

    async def main() -> None:
        async with sc.connect(ref.address()) as rcv, sc.connect(ref.address()) as snd:
            await rcv.subscribe(q)
            event = await rcv.next_event(timeout=10)
            assert event.entity_id == a.rid and event.message.msg_id == MSG_IDS[0]
            first = decrypt_msg(q, event.message)
            assert (first.body, first.notification, first.ts) == (b"first imported message", True, NOW - 100)
            second = await rcv.ack(q, MSG_IDS[0])
            assert decrypt_msg(q, second).body == b"second one"
            assert await rcv.ack(q, MSG_IDS[1]) is None
            # The imported sender key still authorizes SEND; the imported notifier key NSUB.
            await snd.send(a.sid, b"sent after the move", sender_key=a.snd_key)
            event = await rcv.next_event(timeout=10)
            assert decrypt_msg(q, event.message).body == b"sent after the move"
            await snd.notifications_subscribe(a.nid, a.ntf_key)

    with ServerProcess(target) as server:
        assert server.address == ref.address()
        trio.run(main)
        assert server.stop() == 0


def canonical_reference(tmp_path: Path) -> tuple[Reference, list[QueueKeys]]:
    """Files as the reference writes them on a clean stop: services, one CREATE per queue
    (here in recipient-id order), then each queue's messages, a quota marker last."""
    qs = [QueueKeys.new(n) for n in (1, 2, 3)]
    log = [
        f"NEW_SERVICE service_id={b(b'S' * 24)} role=M cert={b(b'leaf')} cert_hash={b(b'h' * 32)} created_at=5",
        qs[0].create(
            f" link_id={b(b'L' * 24)} queue_data={b(b'fixed')} {b(b'user')}"
            f" notifier={b(qs[0].nid)} {b(qs[0].ntf_key.public.der)} {b(b'n' * 32)} nsrv={b(b'S' * 24)}"
            " updated_at=1700006400"
        ),
        qs[1].create(' status=blocked,reason=content,notice={"ttl":86400}'),
        qs[2].create(f" status=off rsrv={b(b'S' * 24)}"),
    ]
    msgs = messages_for(qs[0]) + [f"v3 {b(qs[0].rid)} {b(MSG_IDS[2])} 1700000003 quota"]
    msgs.append(f"v3 {b(qs[2].rid)} {b(b'z' * 24)} 1700000009 flags=F {b(os.urandom(16088))}")
    return make_reference(tmp_path / "ref", log, msgs), qs


def test_export_then_import_round_trip_is_identical(tmp_path, capsys):
    ref, qs = canonical_reference(tmp_path)
    first = tmp_path / "first"
    assert run(capsys, "import", "--dir", str(first), *ref.args())[0] == 0
    out_cfg, out_logs = tmp_path / "out" / "etc", tmp_path / "out" / "var"
    code, out, err = run(capsys, "export", "--dir", str(first), "--config-path", str(out_cfg), "--log-path", str(out_logs))
    assert code == 0, err
    assert out.splitlines()[-1] == ref.address()
    # The reference's files come back byte for byte.
    for name in ("smp-server-store.log", "smp-server-messages.log"):
        assert (out_logs / name).read_bytes() == (ref.logs / name).read_bytes(), name
    for name in ("ca.crt", "server.crt", "server.key", "fingerprint", "ca.key"):
        assert (out_cfg / name).read_bytes() == (ref.config / name).read_bytes(), name
    ini = (out_cfg / "smp-server.ini").read_text()
    assert f"create_password = {PASSWORD}" in ini and f"port = {ref.port}" in ini and "enable = on" in ini
    # And the export imports again into the same state.
    second = tmp_path / "second"
    assert run(capsys, "import", "--dir", str(second), "--config-path", str(out_cfg), "--log-path", str(out_logs))[0] == 0
    stores = [LMDBStore(d / "store") for d in (first, second)]
    try:
        queues = [list(s.iter_queues()) for s in stores]
        assert queues[0] == queues[1] and len(queues[0]) == 3
        for q in queues[0]:
            assert stores[0].queue_messages(q.recipient_id) == stores[1].queue_messages(q.recipient_id)
        # The queue whose marker was last is over quota after both imports.
        for s in stores:
            assert s.write_message(qs[0].rid, StoredMessage(b"new", 1, False, b"x")).name == "FULL"
    finally:
        for s in stores:
            s.close()


def test_export_refuses_to_overwrite(tmp_path, capsys):
    ref, _ = canonical_reference(tmp_path)
    target = tmp_path / "smpfast"
    assert run(capsys, "import", "--dir", str(target), *ref.args())[0] == 0
    code, out, err = run(capsys, "export", "--dir", str(target), *ref.args())
    assert code == 1 and err.startswith("smpfast: error: refusing to overwrite ") and err.count("\n") == 1


def error_line(err: str) -> str:
    lines = err.splitlines()
    assert len(lines) == 1, err  # one clear line, no traceback
    assert lines[0].startswith("smpfast: error: ")
    return lines[0]


@pytest.mark.parametrize(
    "bad, expected",
    [
        (lambda line: line[: len(line) // 2], "smp-server-store.log line 3: "),  # truncated
        (lambda line: "RENAME " + line, "smp-server-store.log line 3: unknown record kind 'RENAME'"),
    ],
)
def test_bad_store_log_line_is_one_line_naming_it(tmp_path, capsys, keys, bad, expected):
    a, c, d = keys
    log = every_record_kind(a, c, d)
    log[2] = bad(log[2])
    ref = make_reference(tmp_path / "ref", log, [])
    target = tmp_path / "smpfast"
    code, out, err = run(capsys, "import", "--dir", str(target), *ref.args())
    assert code == 1 and expected in error_line(err)
    assert not target.exists()  # nothing half-imported is left


def test_bad_message_line_is_one_line_naming_it(tmp_path, capsys, keys):
    a, c, d = keys
    msgs = messages_for(a)
    msgs.insert(1, msgs[0][:20])
    ref = make_reference(tmp_path / "ref", every_record_kind(a, c, d), msgs)
    code, out, err = run(capsys, "import", "--dir", str(tmp_path / "t"), *ref.args())
    assert code == 1 and "smp-server-messages.log line 2: " in error_line(err)
    assert not (tmp_path / "t").exists()


def test_truncated_last_message_line_needs_skip_warnings(tmp_path, capsys, keys):
    a, c, d = keys
    msgs = messages_for(a)
    msgs[-1] = msgs[-1][:30]
    ref = make_reference(tmp_path / "ref", every_record_kind(a, c, d), msgs)
    code, out, err = run(capsys, "import", "--dir", str(tmp_path / "t1"), *ref.args())
    assert code == 1 and "line 2" in error_line(err) and "--skip-warnings" in err
    code, out, err = run(capsys, "import", "--dir", str(tmp_path / "t2"), *ref.args(), "--skip-warnings")
    assert code == 0 and "1 undelivered messages" in out
    assert "smpfast: warning: " in err and "line 2" in err


def test_missing_message_file_or_queue_needs_skip_warnings(tmp_path, capsys, keys):
    a, c, d = keys
    ref = make_reference(tmp_path / "ref", every_record_kind(a, c, d), None)
    code, out, err = run(capsys, "import", "--dir", str(tmp_path / "t1"), *ref.args())
    assert code == 1 and "smp-server-messages.log not found" in error_line(err)
    code, out, err = run(capsys, "import", "--dir", str(tmp_path / "t2"), *ref.args(), "--skip-warnings")
    assert code == 0 and "0 undelivered messages" in out
    ref.messages.write_text(messages_for(d)[0] + "\n")  # queue d was deleted
    code, out, err = run(capsys, "import", "--dir", str(tmp_path / "t3"), *ref.args())
    assert code == 1 and "line 1: queue" in error_line(err) and "does not exist" in err


def test_refused_store_log_records_are_warnings(tmp_path, capsys, keys):
    a, c, d = keys
    log = every_record_kind(a, c, d) + [f"SECURE {b(a.rid)} {b(c.snd_key.public.der)}", f"TIME {b(d.rid)} 5"]
    ref = make_reference(tmp_path / "ref", log, messages_for(a))
    code, out, err = run(capsys, "import", "--dir", str(tmp_path / "t"), *ref.args())
    assert code == 0 and "2 warnings" in out
    warnings = err.splitlines()
    assert len(warnings) == 2
    assert "line 19: queue" in warnings[0] and "another key" in warnings[0]
    assert "line 20: queue" in warnings[1] and "does not exist" in warnings[1]


def test_compaction_backup_is_imported_as_the_reference_would(tmp_path, capsys, keys):
    a, c, d = keys
    ref = make_reference(tmp_path / "ref", [a.create()], messages_for(a))
    # A crash during compaction leaves the full log as .start and a partial new log.
    shutil.move(ref.store_log, ref.logs / "smp-server-store.log.start")
    ref.store_log.write_text("")
    code, out, err = run(capsys, "import", "--dir", str(tmp_path / "t"), *ref.args())
    assert code == 0 and "1 queues" in out and ".start exists" in err


def test_import_refusals(tmp_path, capsys, keys):
    a, c, d = keys
    ref = make_reference(tmp_path / "ref", [a.create()], [])
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "file").write_text("x")
    code, _, err = run(capsys, "import", "--dir", str(busy), *ref.args())
    assert code == 1 and "not empty" in error_line(err)
    ini = (ref.config / "smp-server.ini").read_text()
    (ref.config / "smp-server.ini").write_text(ini.replace("store_queues: memory", "store_queues: database"))
    code, _, err = run(capsys, "import", "--dir", str(tmp_path / "t1"), *ref.args())
    assert code == 1 and "database export" in error_line(err)
    (ref.config / "smp-server.ini").write_text(ini)
    (ref.config / "fingerprint").write_text("A" * 43 + "=\n")
    code, _, err = run(capsys, "import", "--dir", str(tmp_path / "t2"), *ref.args())
    assert code == 1 and "does not match" in error_line(err)
    assert not (tmp_path / "t2").exists()
    code, _, err = run(capsys, "import", "--dir", str(tmp_path / "t3"), "--config-path", str(tmp_path), "--log-path", str(ref.logs))
    assert code == 1 and "not found in" in error_line(err)
