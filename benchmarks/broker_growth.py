"""The bundled broker's CPU at a constant rate, as its topic grows.

    .venv/bin/python -m benchmarks.broker_growth [--seconds 40] [--rate 1000]
        [--linger-ms 5] [--pause-ms 100] [--no-consumer]

Starts the bundled broker (as ``lookout run`` does), creates an 8-partition topic, and
publishes ``--rate`` keyed 600-byte messages a second with Lookout's producer settings
(``kafka.producer_config``; ``--linger-ms`` overrides the linger) while one consumer
tails the topic, taking what has arrived every ``--pause-ms`` (the worker's rhythm at
1,000 events/s: a fetch, then a batch of about 100 ms). Prints the broker process's CPU
(% of one core) every 5 s. Nothing of Lookout runs but the producer and consumer
settings: the figures are the broker's own.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from benchmarks.harness import cpu_seconds
from lookout import kafka
from lookout.embedded.broker import EmbeddedBroker

TOPIC = "growth"
PARTITIONS = 8
VALUE = b"x" * 600
REPORT_EVERY_S = 5.0


async def tail(bootstrap: str, pause_s: float, stop: asyncio.Event) -> int:
    consumer = AIOKafkaConsumer(
        **kafka.consumer_config(bootstrap, "growth") | {"auto_offset_reset": "earliest"}
    )
    await consumer.start()
    consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    taken = 0
    try:
        while not stop.is_set():
            got = await consumer.getmany(timeout_ms=100)
            taken += sum(len(records) for records in got.values())
            await asyncio.sleep(pause_s)
    finally:
        await consumer.stop()
    return taken


async def run(args: argparse.Namespace, broker: EmbeddedBroker) -> None:
    bootstrap = broker.bootstrap_servers
    await kafka.ensure_topics(bootstrap, {TOPIC: PARTITIONS})
    producer = AIOKafkaProducer(**kafka.producer_config(bootstrap) | {"linger_ms": args.linger_ms})
    await producer.start()
    stop = asyncio.Event()
    consumer = (
        None
        if args.no_consumer
        else asyncio.create_task(tail(bootstrap, args.pause_ms / 1000, stop))
    )
    started = mark = time.monotonic()
    used = cpu_seconds(broker.pid, descendants=False)
    sent = 0
    try:
        while (now := time.monotonic()) - started < args.seconds:
            while sent < int((now - started) * args.rate):
                await producer.send(TOPIC, value=VALUE, key=str(sent % 5000).encode())
                sent += 1
            await asyncio.sleep(0.002)
            if now - mark >= REPORT_EVERY_S:
                used_now = cpu_seconds(broker.pid, descendants=False)
                share = 100 * (used_now - used) / (now - mark)
                print(f"{now - started:5.1f} s  {sent:7,} sent  broker CPU {share:3.0f}%")
                used, mark = used_now, now
        await producer.flush()
    finally:
        stop.set()
        if consumer is not None:
            print(f"consumed {await consumer:,} of {sent:,}")
        await producer.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=40)
    parser.add_argument("--rate", type=int, default=1000, help="messages a second")
    parser.add_argument("--linger-ms", type=int, default=5, help="the producer's linger")
    parser.add_argument("--pause-ms", type=int, default=100, help="between the consumer's takes")
    parser.add_argument("--no-consumer", action="store_true", help="publish only")
    args = parser.parse_args()
    with TemporaryDirectory() as folder, EmbeddedBroker.start(Path(folder) / "broker.log") as b:
        asyncio.run(run(args, b))


if __name__ == "__main__":
    main()
