"""Consumer-group churn against the bundled broker: how long each membership change takes
to settle, and whether one never does.

    .venv/bin/python -m benchmarks.group_churn [--rounds 60] [--seed 1]
        [--session-timeout-ms 4000] [--slow-listener-s 0] [--settle-s 60]

Starts the bundled broker (as ``lookout run`` does), a 6-partition topic and three group
members, each its own process (this module with ``--member``, Lookout's consumer
settings). Then, round by round and at random, it kills a member (SIGKILL), stops one
(SIGTERM), starts one and stops it right after its first assignment, or starts one; after
each change it waits until every member has been given its share (perhaps none) and the
members' latest assignments cover every partition exactly once, and prints how long that
took. A change not settled within ``--settle-s`` is a stall:
it prints the members' assignments and exits 1.

``--slow-listener-s`` makes each new member's rebalance listener sleep that long on its
first assignment, as Lookout's worker did when it retried a seek through a PostgreSQL
restart, before its listener only paused the new partitions (docs/operations.md, the
bundled broker's limits). aiokafka sends no heartbeats while the listener runs, so a sleep
longer than the session timeout gets the member expelled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from tempfile import TemporaryDirectory

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition

from lookout import kafka
from lookout.embedded.broker import EmbeddedBroker

TOPIC = "churn"
GROUP = "churn"
PARTITIONS = 6
ACTIONS = ("kill", "stop", "start_and_stop", "start")


class _SlowOnce(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        print(json.dumps({"revoked": sorted(tp.partition for tp in revoked)}), flush=True)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await asyncio.sleep(self.delay_s)
        self.delay_s = 0.0
        print(json.dumps({"assigned": sorted(tp.partition for tp in assigned)}), flush=True)


async def member(bootstrap: str, session_timeout_ms: int, slow_listener_s: float) -> None:
    """One group member: prints each assignment and revocation as a JSON line."""
    consumer = AIOKafkaConsumer(
        **kafka.consumer_config(
            bootstrap,
            GROUP,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=max(session_timeout_ms // 4, 100),
        )
        | {"auto_offset_reset": "earliest"}
    )
    await consumer.start()
    consumer.subscribe([TOPIC], listener=_SlowOnce(slow_listener_s))
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    while not stop.is_set():
        await consumer.getmany(timeout_ms=200)
    await asyncio.wait_for(consumer.stop(), timeout=10)


@dataclass
class _Member:
    proc: asyncio.subprocess.Process
    partitions: list[int] = field(default_factory=list)
    assigned: asyncio.Event = field(default_factory=asyncio.Event)

    async def follow(self) -> None:
        assert self.proc.stdout is not None
        async for line in self.proc.stdout:
            seen = json.loads(line)
            if "assigned" in seen:
                self.partitions = seen["assigned"]
                self.assigned.set()
            elif "revoked" in seen:
                self.partitions = []

    async def end(self, sig: signal.Signals) -> None:
        self.proc.send_signal(sig)
        await self.proc.wait()


def _settled(members: list[_Member]) -> bool:
    """Every member has been given its share (perhaps none), and together they hold each
    partition once."""
    held = sorted(p for m in members for p in m.partitions)
    return all(m.assigned.is_set() for m in members) and held == list(range(PARTITIONS))


async def churn(args: argparse.Namespace, bootstrap: str) -> int:
    rng = random.Random(args.seed)  # noqa: S311 - a churn schedule
    await kafka.ensure_topics(bootstrap, {TOPIC: PARTITIONS})
    members: list[_Member] = []
    followers: list[asyncio.Task[None]] = []

    async def start(slow_s: float = 0.0) -> _Member:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.group_churn",
            "--member",
            bootstrap,
            "--session-timeout-ms",
            str(args.session_timeout_ms),
            "--slow-listener-s",
            str(slow_s),
            stdout=asyncio.subprocess.PIPE,
        )
        started = _Member(proc)
        followers.append(asyncio.create_task(started.follow()))
        members.append(started)
        return started

    try:
        for _ in range(3):
            await start()
        for round_ in range(args.rounds):
            action = rng.choice(ACTIONS)
            if action in ("kill", "stop") and len(members) > 1:
                victim = members.pop(rng.randrange(len(members)))
                await victim.end(signal.SIGKILL if action == "kill" else signal.SIGTERM)
            elif action == "start_and_stop":
                brief = await start()
                try:
                    await asyncio.wait_for(brief.assigned.wait(), timeout=args.settle_s)
                except TimeoutError:
                    print(
                        f"round {round_} ({action}): STALL, no assignment in {args.settle_s:.0f}s"
                    )
                    return 1
                finally:
                    members.remove(brief)
                    await brief.end(signal.SIGTERM)
            else:
                action = "start"  # also when the one member left is not to be ended
                await start(args.slow_listener_s)
            await asyncio.sleep(rng.random() * 2)
            began = time.monotonic()
            while not _settled(members):
                if time.monotonic() - began > args.settle_s:
                    print(f"round {round_} ({action}): STALL, not settled in {args.settle_s:.0f}s;")
                    print(f"  assignments {[m.partitions for m in members]}")
                    return 1
                await asyncio.sleep(0.2)
            print(
                f"round {round_} ({action}): settled in {time.monotonic() - began:.1f}s,"
                f" {len(members)} members {[m.partitions for m in members]}",
                flush=True,
            )
        return 0
    finally:
        for m in members:
            m.proc.kill()
            await m.proc.wait()
        for task in followers:
            task.cancel()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--member", metavar="BOOTSTRAP", help=argparse.SUPPRESS)
    parser.add_argument("--rounds", type=int, default=60)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--session-timeout-ms", type=int, default=4_000)
    parser.add_argument("--slow-listener-s", type=float, default=0.0)
    parser.add_argument("--settle-s", type=float, default=60.0)
    args = parser.parse_args()
    if args.member:
        asyncio.run(member(args.member, args.session_timeout_ms, args.slow_listener_s))
        return
    with TemporaryDirectory() as tmp:
        broker = EmbeddedBroker.start(Path(tmp) / "broker.log", die_with_parent=True)
        try:
            sys.exit(asyncio.run(churn(args, broker.bootstrap_servers)))
        finally:
            broker.stop()


if __name__ == "__main__":
    main()
