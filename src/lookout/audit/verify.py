"""Verifying the audit trail: every link of the hash chain, and every signed checkpoint.

Walks all records and seals in sequence order (in ranges, so memory stays flat) and
recomputes each hash from the record and the previous seal. It reports the first bad
record and why:

- a seal without its record: the record was deleted;
- a record inside the sealed range without a seal: it was inserted (the sealer seals
  every committed record below its fence, so no legitimate record is ever skipped);
- a recomputed hash that differs from the seal: the record was modified, moved
  (reordered), or a record before it was deleted or inserted together with its seal.

Checkpoints: each signature is checked with the verify key; each checkpoint's head must
equal the recomputed hash at its seq (a rewritten chain, even re-sealed consistently,
no longer matches); and the checkpoint files an operator kept, if the folder is given,
must each still be in the database.

Records after the last seal are reported as ``unsealed`` (the sealer has not reached
them yet). The attacker model: someone with DBA rights who disables the append-only
triggers and edits the tables, but does not hold the sealer's private key.
"""

from __future__ import annotations

import asyncio
import base64
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy.ext.asyncio import AsyncSession

from lookout.audit import repository
from lookout.audit.chain import GENESIS, link
from lookout.audit.signing import Checkpoint, signature_ok

RANGE = 10_000


@dataclass
class Report:
    ok: bool = True
    records_checked: int = 0
    sealed_through: int = 0
    unsealed: int = 0
    checkpoints_checked: int = 0
    first_bad_seq: int | None = None
    bad_checkpoint_seq: int | None = None
    problem: str | None = None
    notes: list[str] = field(default_factory=list)

    def fail_record(self, seq: int, problem: str) -> None:
        if self.first_bad_seq is None:
            self.ok = False
            self.first_bad_seq = seq
            self.problem = self.problem or problem

    def fail_checkpoint(self, seq: int, problem: str) -> None:
        self.ok = False
        if self.bad_checkpoint_seq is None:
            self.bad_checkpoint_seq = seq
        self.problem = self.problem or problem


def _read_checkpoint_files(folder: Path) -> list[tuple[str, tuple[int, bytes, bytes] | None]]:
    if not folder.is_dir():
        return []
    out: list[tuple[str, tuple[int, bytes, bytes] | None]] = []
    for path in sorted(folder.glob("checkpoint-*.json")):
        try:
            doc = orjson.loads(path.read_bytes())
            entry = (
                int(doc["seq"]),
                bytes.fromhex(doc["head"]),
                base64.b64decode(doc["signature"]),
            )
        except (OSError, ValueError, KeyError, TypeError):
            out.append((path.name, None))
            continue
        out.append((path.name, entry))
    return out


async def verify(
    session: AsyncSession,
    key: Ed25519PublicKey | None,
    checkpoint_dir: Path | None = None,
    *,
    one_snapshot: bool = True,
) -> Report:
    """Verify the whole trail. With ``one_snapshot`` (the default) it must be the first
    thing in its transaction: it switches it to REPEATABLE READ, so that the sealer
    sealing meanwhile cannot make a record look deleted."""
    if one_snapshot:
        await repository.repeatable_read(session)
    report = Report()
    checkpoints = await repository.checkpoints(session)
    expected: dict[int, list[bytes]] = {}
    for cp in checkpoints:
        signed = Checkpoint(cp.seq, bytes(cp.head_hash), cp.created_at, cp.key_id)
        if key is None:
            report.fail_checkpoint(
                cp.seq, "no verify key: set LOOKOUT_AUDIT_VERIFY_KEY to check checkpoints"
            )
        elif not signature_ok(key, signed, bytes(cp.signature)):
            report.fail_checkpoint(cp.seq, f"checkpoint at seq {cp.seq}: signature is not valid")
        expected.setdefault(cp.seq, []).append(bytes(cp.head_hash))
        report.checkpoints_checked += 1
    if checkpoint_dir is not None:
        held = {(cp.seq, bytes(cp.head_hash), bytes(cp.signature)) for cp in checkpoints}
        for name, entry in await asyncio.to_thread(_read_checkpoint_files, checkpoint_dir):
            if entry is None:
                report.notes.append(f"unreadable checkpoint file {name}")
            elif entry not in held:
                report.fail_checkpoint(
                    entry[0],
                    f"checkpoint file {name} (seq {entry[0]}) is missing from the database",
                )

    max_record, max_sealed = await repository.max_seqs(session)
    report.sealed_through = max_sealed
    prev = GENESIS
    seen_checkpoints: set[int] = set()
    top = max(max_record, max_sealed)
    lo = 1
    while lo <= top and report.first_bad_seq is None:
        hi = lo + RANGE
        records = {r.seq: r for r in await repository.rows_in_range(session, lo, hi)}
        seals = dict(await repository.seals_in_range(session, lo, hi))
        for seq in sorted(records.keys() | seals.keys()):
            record, seal = records.get(seq), seals.get(seq)
            if record is not None:
                report.records_checked += 1
            if seal is None:
                if seq < max_sealed:
                    report.fail_record(
                        seq, f"record {seq} lies inside the sealed range but has no seal (inserted)"
                    )
                    break
                report.unsealed += 1
                continue
            if record is None:
                report.fail_record(seq, f"record {seq} is sealed but missing (deleted)")
                break
            computed = link(record, prev)
            if computed != seal:
                report.fail_record(
                    seq,
                    f"record {seq} does not match its seal: it, or the chain before it, "
                    "was modified, reordered, deleted or inserted",
                )
                break
            if seq in expected:
                seen_checkpoints.add(seq)
                if any(head != computed for head in expected[seq]):
                    report.fail_record(
                        seq, f"the chain at seq {seq} differs from the signed checkpoint"
                    )
                    break
            prev = seal
        lo = hi
    if report.first_bad_seq is None:
        for seq in sorted(expected.keys() - seen_checkpoints):
            report.fail_checkpoint(seq, f"checkpoint at seq {seq} names no sealed record")
            break
    return report
