"""Who may do what: fixed permissions by organisation kind, in one table.

Endpoints declare what they need with ``Depends(require(Permission.x))``. A kind lacking
the permission gets 403 (audited). Scope is separate and always applies: every query of
an organisation's objects starts from that organisation (``visible_to``), so another
organisation's object answers 404, never revealing that it exists.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import Any

from fastapi import Request

from lookout.api.deps import PrincipalDep, SessionDep, request_id
from lookout.audit.actions import Action
from lookout.audit.service import Actor, Entry, record
from lookout.errors import Forbidden
from lookout.orgs.models import OrgKind
from lookout.orgs.security import Principal


class Permission(StrEnum):
    alerts_read = "alerts:read"  # list, read, stream own alerts
    alerts_work = "alerts:work"  # acknowledge, assign, close, notes
    subscriptions = "subscriptions:manage"  # own webhook subscriptions
    events_publish = "events:publish"  # HTTPS ingest as its own source
    rejections_read = "rejections:read"  # own (agency) or all (operator) rejections
    rejections_all = "rejections:all"  # every publisher's rejections
    rejections_replay = "rejections:replay"
    undeliverable_read = "undeliverable:read"
    organisations_manage = "organisations:manage"
    audit_read = "audit:read"  # the audit trail and who-has-seen reports
    audit_verify = "audit:verify"
    households_read = "households:read"  # households and persons of own alerts only
    identity_review = "identity:review"  # also granted per organisation in settings


_RECIPIENT = frozenset(
    {
        Permission.alerts_read,
        Permission.alerts_work,
        Permission.subscriptions,
        Permission.households_read,
    }
)

PERMISSIONS: Mapping[str, frozenset[Permission]] = {
    OrgKind.agency: frozenset({Permission.events_publish, Permission.rejections_read}),
    OrgKind.children_services: _RECIPIENT,
    OrgKind.school: _RECIPIENT,
    OrgKind.operator: frozenset(
        {
            Permission.organisations_manage,
            Permission.rejections_read,
            Permission.rejections_all,
            Permission.rejections_replay,
            Permission.undeliverable_read,
            Permission.identity_review,
            Permission.audit_verify,
        }
    ),
    OrgKind.auditor: frozenset({Permission.audit_read, Permission.audit_verify}),
}


# What every endpoint guarded by ``require`` may answer besides its own responses.
DENIED_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "No or expired access token"},
    403: {"description": "Your organisation's kind may not do this"},
}


def allowed(kind: str, permission: Permission) -> bool:
    return permission in PERMISSIONS.get(kind, frozenset())


def require(permission: Permission) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if its organisation's kind has ``permission``; else 403."""

    async def dependency(
        request: Request, principal: PrincipalDep, session: SessionDep
    ) -> Principal:
        if not allowed(principal.org_kind, permission):
            actor = Actor(
                org_id=principal.org_id,
                client_id=principal.client_id,
                request_id=request_id(request),
            )
            await record(
                session,
                actor,
                [
                    Entry(
                        Action.request_denied,
                        "permission",
                        permission.value,
                        outcome="forbidden",
                        details={"reason": "kind_lacks_permission", "kind": principal.org_kind},
                    )
                ],
            )
            raise Forbidden(
                f"organisations of kind {principal.org_kind!r} may not do this "
                f"(needs {permission.value})"
            )
        return principal

    return dependency
