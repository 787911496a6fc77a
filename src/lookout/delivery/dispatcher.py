"""``lookout dispatcher``: escalates overdue urgent alerts and delivers webhooks.

Each tick, in its own short transactions:

1. **Escalate** urgent alerts still ``new`` past their organisation's time
   (``organisations.escalate_after_s``, default ``LOOKOUT_ESCALATE_AFTER_S``): sets
   ``escalated_at``, writes an ``alert.escalated`` outbox event, an audit record, a metric.
2. **Fan out** the outbox: every live subscription gets one ``webhook_messages`` row per
   alert event of its organisation after its cursor (the cursor moves in the same
   transaction, so no event is skipped or doubled).
3. **Deliver** due messages (``FOR UPDATE SKIP LOCKED``: several dispatchers can share the
   work), signed per Standard Webhooks with the ``standardwebhooks`` library. A 2xx is
   delivered; a 410 disables the subscription (``gone``); anything else (including a
   timeout, a refused connection or a target that now resolves to a private address) is
   retried after ``LOOKOUT_WEBHOOK_RETRY_SCHEDULE_S[n]`` seconds ±20% jitter, and after
   the last retry fails the subscription is disabled (``exhausted``). Every attempt is
   recorded. Delivery is at least once: a crash after the POST and before the commit
   repeats the POST with the same ``webhook-id``, which receivers use to deduplicate.

The HTTP calls of a batch happen while its rows are locked (bounded by
``LOOKOUT_WEBHOOK_TIMEOUT_S``), which keeps the attempt record and the message state in
one transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import httpx
import orjson
import structlog
from prometheus_client import start_http_server
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from standardwebhooks.webhooks import Webhook

from lookout import metrics
from lookout.alerts import service as alerts
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.db import create_engine, session_factory
from lookout.delivery import repository, service
from lookout.delivery.models import MessageStatus, Subscription, WebhookMessage
from lookout.logging import safe_error
from lookout.settings import Settings

log = structlog.get_logger("lookout.dispatcher")
DISPATCHER = Actor(client_id="lookout-dispatcher", purpose="safeguarding_triggers")
_JITTER = 0.2


@dataclass(frozen=True, slots=True)
class _Result:
    outcome: str  # delivered, retry, gone, refused (final outcomes are decided after)
    status_code: int | None
    error: str | None
    duration_ms: int


class Dispatcher:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.stopping = asyncio.Event()
        self.rng = random.Random()  # noqa: S311 - jitter, not security

    async def run(self) -> None:
        engine = create_engine(self.settings.database_url, pool_size=2)
        sessions = session_factory(engine)
        log.info("dispatcher started")
        try:
            async with httpx.AsyncClient(
                timeout=self.settings.webhook_timeout_s, follow_redirects=False
            ) as http:
                while not self.stopping.is_set():
                    try:
                        busy = await self.tick(sessions, http)
                    except Exception as exc:  # retriable: back off and go on
                        log.warning("dispatcher tick failed", error=safe_error(exc))
                        busy = False
                    if not busy:
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(
                                self.stopping.wait(), self.settings.dispatcher_poll_interval_s
                            )
        finally:
            await engine.dispose()
            log.info("dispatcher stopped")

    async def tick(
        self, sessions: async_sessionmaker[AsyncSession], http: httpx.AsyncClient
    ) -> bool:
        """One round of escalation, fan-out and delivery; True if there may be more work."""
        s = self.settings
        async with sessions() as session, session.begin():
            escalated = await alerts.escalate_due(
                session, DISPATCHER, s.escalate_after_s, s.dispatcher_batch
            )
        async with sessions() as session, session.begin():
            fanned = await self._fan_out(session)
        async with sessions() as session, session.begin():
            delivered = await self._deliver(session, http)
        async with sessions() as session:
            metrics.WEBHOOK_RETRY_QUEUE.set(await repository.pending_count(session))
            metrics.WEBHOOK_DISABLED.set(await repository.disabled_count(session))
        return max(escalated, fanned, delivered) >= s.dispatcher_batch

    async def _fan_out(self, session: AsyncSession) -> int:
        total = 0
        for subscription in await repository.active_subscriptions_locked(session):
            events = await repository.events_after(
                session, subscription.org_id, subscription.cursor, self.settings.dispatcher_batch
            )
            if not events:
                continue
            await repository.insert_messages(
                session,
                [
                    {
                        "id": f"msg_{uuid.uuid4().hex}",
                        "subscription_id": subscription.id,
                        "org_id": subscription.org_id,
                        "event_sequence": e.sequence,
                        "payload": service.payload(e),
                    }
                    for e in events
                ],
            )
            subscription.cursor = events[-1].sequence
            total += len(events)
        await session.flush()
        return total

    async def _deliver(self, session: AsyncSession, http: httpx.AsyncClient) -> int:
        due = await repository.due_messages(session, self.settings.dispatcher_batch)
        if not due:
            return 0
        results = await asyncio.gather(*(self._attempt(http, m, sub) for m, sub in due))
        now = datetime.now(UTC)
        schedule = self.settings.webhook_retry_schedule_s
        disabled: set[uuid.UUID] = set()
        delivered: list[Entry] = []
        for (message, subscription), result in zip(due, results, strict=True):
            message.attempts += 1
            outcome = result.outcome
            if outcome == "delivered":
                message.status, message.delivered_at = MessageStatus.delivered, now
                delivered.append(
                    Entry(
                        Action.webhook_delivered,
                        "webhook_message",
                        str(message.id),
                        details={
                            "subscription": str(subscription.id),
                            "org_id": subscription.org_id,
                        },
                    )
                )
            elif outcome == "gone":
                message.status = MessageStatus.failed
                disabled.add(subscription.id)
                await self._disable(session, subscription, "gone", now)
            elif message.attempts > len(schedule):
                outcome = "failed"
                message.status = MessageStatus.failed
                if subscription.id not in disabled:
                    disabled.add(subscription.id)
                    await self._disable(session, subscription, "exhausted", now)
            else:
                wait = schedule[message.attempts - 1]
                wait *= 1 + self.rng.uniform(-_JITTER, _JITTER)
                message.next_attempt_at = now + timedelta(seconds=wait)
            metrics.WEBHOOK_DELIVERIES.labels(outcome).inc()
            await repository.add_attempt(
                session,
                {
                    "message_id": message.id,
                    "subscription_id": subscription.id,
                    "attempt": message.attempts,
                    "outcome": outcome,
                    "status_code": result.status_code,
                    "error": result.error,
                    "duration_ms": result.duration_ms,
                },
            )
        await record(session, DISPATCHER, delivered)
        await session.flush()
        return len(due)

    async def _disable(
        self, session: AsyncSession, subscription: Subscription, reason: str, now: datetime
    ) -> None:
        await repository.disable_subscription(session, subscription.id, reason, now)
        await record(
            session,
            DISPATCHER,
            [
                Entry(
                    Action.subscription_disabled,
                    "subscription",
                    str(subscription.id),
                    outcome=reason,
                    details={"org_id": subscription.org_id},
                )
            ],
        )
        log.warning("subscription disabled", subscription=str(subscription.id), reason=reason)

    async def _attempt(
        self, http: httpx.AsyncClient, message: WebhookMessage, subscription: Subscription
    ) -> _Result:
        started = time.perf_counter()

        def took() -> int:
            return int((time.perf_counter() - started) * 1000)

        refused = await service.refused_target(
            subscription.url, allow_private=self.settings.webhook_allow_private
        )
        if refused is not None:
            return _Result("refused", None, refused, took())
        body = orjson.dumps(message.payload).decode()
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": message.id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(subscription.secret).sign(message.id, now, body),
            "user-agent": "Lookout-Webhooks/1",
        }
        try:
            response = await http.post(subscription.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return _Result("retry", None, type(exc).__name__, took())
        if 200 <= response.status_code < 300:
            return _Result("delivered", response.status_code, None, took())
        if response.status_code == 410:
            return _Result("gone", 410, None, took())
        return _Result("retry", response.status_code, None, took())


def run(settings: Settings) -> None:
    """Entry point of ``lookout dispatcher``: metrics port, signal handling, the loop."""
    if settings.dispatcher_metrics_port:
        start_http_server(settings.dispatcher_metrics_port, addr="0.0.0.0")  # noqa: S104

    async def main() -> None:
        dispatcher = Dispatcher(settings)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, dispatcher.stopping.set)
        with contextlib.suppress(asyncio.CancelledError):
            await dispatcher.run()

    asyncio.run(main())
