"""Which errors mean a dependency is away for now (retry) rather than a defect."""

from __future__ import annotations

import asyncpg
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from lookout.errors import transient


def test_an_unreachable_or_restarting_dependency_is_transient() -> None:
    assert transient(ConnectionRefusedError())
    assert transient(KafkaTimeoutError())  # the broker did not answer a send in time
    assert transient(KafkaConnectionError())
    assert transient(PoolTimeout())  # every pooled connection busy for the pool's timeout
    assert transient(asyncpg.exceptions.CannotConnectNowError("the server is starting up"))
    assert transient(asyncpg.exceptions.AdminShutdownError("terminating connection"))
    assert transient(asyncpg.exceptions.DeadlockDetectedError("deadlock detected"))


def test_a_defect_or_a_refused_value_is_not() -> None:
    assert not transient(RuntimeError("a defect"))
    assert not transient(asyncpg.exceptions.CheckViolationError("a value the table refuses"))
    assert not transient(asyncpg.exceptions.UniqueViolationError("duplicate key"))
    assert not transient(asyncpg.exceptions.InsufficientPrivilegeError("permission denied"))
