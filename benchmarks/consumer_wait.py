"""How long a record waits between its publishing and a busy consumer taking it.

    .venv/bin/python -m benchmarks.consumer_wait [--seconds 8] [--rate 1000]
        [--work-ms 40] [--fetch-max-wait-ms 50] [--top-up [--stale-ms 10] [--top-up-ms 10]]

Starts the bundled broker (as ``lookout run`` does), creates an 8-partition topic, and
publishes ``--rate`` keyed messages a second with Lookout's producer settings, each
carrying its publishing time. One consumer with Lookout's consumer settings takes what
has arrived, then works ``--work-ms`` (a sleep, standing in for a batch) before taking
again. Prints the publish-to-taken wait (p50, p90, p99) and the batch sizes.

aiokafka fetches a partition again only once its buffered records are taken, so the
records taken after a batch were fetched as it began, and what arrived while it ran waits
a batch more. ``--top-up`` tries the way round that the worker does not take
(BENCHMARKS.md, item 46): when the records taken had waited ``--stale-ms``, a second
``getmany`` (waiting at most ``--top-up-ms``) adds what arrived since, at the price of
waiting for that fetch instead of working while it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from pathlib import Path
from tempfile import TemporaryDirectory

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from lookout import kafka
from lookout.embedded.broker import EmbeddedBroker

TOPIC = "wait"
PARTITIONS = 8
WARM_UP_S = 1.0  # waits of records published before this are not counted


async def take(
    consumer: AIOKafkaConsumer, args: argparse.Namespace, top_ups: list[float]
) -> list[float]:
    """Publishing times of the records of one take; each top-up's wait (ms) to *top_ups*."""
    records = await consumer.getmany(timeout_ms=200)
    sent = [float(r.value or b"0") for batch in records.values() for r in batch]
    if args.top_up and records:
        # aiokafka's time of the fetch response that brought them (ms since the epoch)
        fetched_ms = min(consumer.last_poll_timestamp(tp) or 0 for tp in records)
        if (asked := time.time()) * 1000 - fetched_ms >= args.stale_ms:
            more = await consumer.getmany(timeout_ms=args.top_up_ms)
            top_ups.append((time.time() - asked) * 1000)
            sent += [float(r.value or b"0") for batch in more.values() for r in batch]
    return sent


async def run(args: argparse.Namespace, bootstrap: str) -> None:
    await kafka.ensure_topics(bootstrap, {TOPIC: PARTITIONS})
    consumer = AIOKafkaConsumer(
        **kafka.consumer_config(bootstrap, "wait", fetch_max_wait_ms=args.fetch_max_wait_ms)
        | {"auto_offset_reset": "earliest"}
    )
    await consumer.start()
    consumer.assign([TopicPartition(TOPIC, p) for p in range(PARTITIONS)])
    producer = AIOKafkaProducer(**kafka.producer_config(bootstrap))
    await producer.start()
    total = int(args.seconds * args.rate)
    started = time.time()

    async def publish() -> None:
        for n in range(total):
            delay = started + n / args.rate - time.time()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(TOPIC, str(time.time()).encode(), key=str(n).encode())
        await producer.flush()

    waits: list[float] = []
    sizes: list[int] = []
    top_ups: list[float] = []
    publishing = asyncio.create_task(publish())
    try:
        taken = 0
        while taken < total:
            sent = await take(consumer, args, top_ups)
            now = time.time()
            taken += len(sent)
            if sent:
                sizes.append(len(sent))
                waits += [(now - t) * 1000 for t in sent if t - started >= WARM_UP_S]
                await asyncio.sleep(args.work_ms / 1000)
        await publishing
    finally:
        await producer.stop()
        await consumer.stop()
    waits.sort()
    print(
        f"rate {args.rate}/s, work {args.work_ms} ms a batch, fetch_max_wait_ms "
        f"{args.fetch_max_wait_ms}, top-up {f'{args.top_up_ms} ms' if args.top_up else 'off'}: "
        f"wait p50 "
        f"{statistics.median(waits):.1f} ms, p90 {waits[int(0.9 * len(waits))]:.1f}, p99 "
        f"{waits[int(0.99 * len(waits))]:.1f}; batches of {statistics.median(sizes):.0f} "
        f"at the median"
    )
    if top_ups:
        top_ups.sort()
        print(
            f"top-ups: {len(top_ups)} of {len(sizes)} takes, waiting p50 "
            f"{statistics.median(top_ups):.1f} ms, p90 {top_ups[int(0.9 * len(top_ups))]:.1f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--rate", type=int, default=1000, help="messages a second")
    parser.add_argument("--work-ms", type=float, default=40, help="the consumer's batch")
    parser.add_argument("--fetch-max-wait-ms", type=int, default=50)
    parser.add_argument("--top-up", action="store_true", help="take a second time")
    parser.add_argument("--stale-ms", type=float, default=10, help="when to take again")
    parser.add_argument("--top-up-ms", type=int, default=10, help="the second take's wait")
    args = parser.parse_args()
    with TemporaryDirectory() as folder, EmbeddedBroker.start(Path(folder) / "broker.log") as b:
        asyncio.run(run(args, b.bootstrap_servers))


if __name__ == "__main__":
    main()
