"""The weekly record seal, emailed to every active admin so a copy lives outside the database."""

from __future__ import annotations

import json

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal import record
from portal.mail import Attachment, queue_email
from portal.models import Role, StaffUser


def email_seal_to_admins(session: Session) -> int:
    """Queue today's seal to each active admin; the caller commits. Returns how many."""
    seal = record.make_seal(session)
    day = seal["sealed_at"][:10]
    attachment = Attachment(
        f"record-seal-{day}.json", "application/json", json.dumps(seal, separators=(",", ":")).encode()
    )
    admins = session.scalars(
        select(StaffUser).where(StaffUser.active.is_(True), StaffUser.role == Role.ADMIN.value)
    )
    count = 0
    for admin in admins:
        queue_email(
            session,
            template="record_seal",
            to=admin.email,
            subject=f"Service record seal of {day}: keep this file",
            context={
                "seal": seal,
                "day": day,
                "accounts": len(seal["accounts"]),
                "filename": attachment.filename,
            },
            attachments=[attachment],
        )
        count += 1
    return count
