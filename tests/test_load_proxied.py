"""``smpfast load --proxied``: every message sent through an SMP proxy to the relay
(private message routing) arrives exactly once; the report says so."""

from __future__ import annotations

import io

import jsonschema
import pytest

from smpfast.load import exitcodes
from smpfast.load.config import LoadConfig, UsageError, Warmup
from smpfast.load.main import run_load
from smpfast.load.report import load_schema
from smpfast.proxy.relays import RelayPoolConfig

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


def _counts(doc):
    c = doc["results"]["counts"]
    return c["sent"], c["received"], c["errors"]


@pytest.mark.parametrize("separate_proxy", [False, True])
def test_proxied_load_delivers_every_message_once(smp_server, trio_run, separate_proxy):
    out = io.StringIO()

    async def main():
        async with smp_server(max_version=18) as relay, \
                smp_server(max_version=18, relays=RelayPoolConfig(connect_timeout=5)) as proxy:
            cfg = LoadConfig(relay.address, quiet=True, pairs=3, messages=150, warmup=Warmup(messages=15),
                             size=500, concurrency=2, proxy=proxy.address if separate_proxy else relay.address)
            cfg.validate()
            code, doc = await run_load(cfg, None, out)
            via = proxy if separate_proxy else relay
            return code, doc, via.stats(), relay.stats()

    code, doc, proxy_stats, relay_stats = trio_run(main, timeout=120)
    VALIDATOR.validate(doc)
    assert code == exitcodes.OK and _counts(doc) == (150, 150, 0)
    assert doc["configuration"]["proxy"] is not None and doc["results"]["scenario"]["proxied"] is True
    # every message (warm-up included) went through PFWD → RFWD, none directly
    assert proxy_stats["pMsgFwds.successes"] == 165 == relay_stats["pMsgFwdsRecv"]
    assert relay_stats["msgSent"] == 165


def test_proxied_needs_the_messaging_scenario():
    cfg = LoadConfig("smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E=@127.0.0.1:5223", scenario="fanout",
                     proxy="smp://q0nSMfsauvapypG-U61b_pDZGrfaj1DdXJnzzLMTZ2E=@127.0.0.1:5224")
    with pytest.raises(UsageError, match="--proxied"):
        cfg.validate()
