"""Photos for the technician: the gate, the equipment pad, the pool, anything worth seeing before
the first visit. Customers add them during onboarding and from My service; staff add them from
the account page and remove a wrong one.

An upload is decoded by Pillow (portal/images.py: PNG, JPEG, WebP, or an iPhone's HEIC), turned
upright, shrunk to at most LONG_SIDE pixels and re-encoded as a fresh JPEG, with a THUMB_SIDE
thumbnail: EXIF and GPS, and anything a file carried after its image (a polyglot's HTML or zip),
never reach storage. Who may see a photo is the account's rule: its customer's session, or
staff whom portal/access.py lets read the account's brief; everyone else gets a 404.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from hashlib import sha256
from io import BytesIO

from flask import abort
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session
from werkzeug.wrappers import Response as BaseResponse

from portal import images, once, record
from portal.db import unit_of_work, utcnow
from portal.handoffs import staff_actor
from portal.models import Account, Photo, StaffUser
from portal.storage import Storage, StorageError

MAX_BYTES = 10 * 1024 * 1024
# An upload form's body: the photo plus its caption and the form's tokens.
UPLOAD_LIMIT = MAX_BYTES + 64 * 1024
LONG_SIDE = 2000
THUMB_SIDE = 400
# A 48-megapixel phone camera, with room; more is a decompression bomb.
MAX_PIXELS = 64_000_000
CAPTION_MAX = 200
MAX_PER_ACCOUNT = 30
FORMATS = ("PNG", "JPEG", "WEBP", "HEIF")
CONTENT_TYPE = "image/jpeg"
CUSTOMER = "customer"


class PhotoProblem(ValueError):
    """Why a photo is refused, in words for the person who added it."""


@dataclass(frozen=True)
class Cleaned:
    """A verified photo, re-encoded, not stored yet."""

    full: bytes
    thumb: bytes
    width: int
    height: int


def clean(data: bytes) -> Cleaned:
    """The upload as a fresh JPEG and its thumbnail, or PhotoProblem. Reads only."""
    if not data:
        raise PhotoProblem("Choose a photo to add.")
    if len(data) > MAX_BYTES:
        raise PhotoProblem(
            f"That photo is {len(data) / 1024 / 1024:.1f} MB; a photo can be at most 10 MB. "
            "Take it again at a smaller size, or send a screenshot of it."
        )
    if images.looks_like_svg(data):
        raise PhotoProblem("SVG files are not accepted. Add a photo (JPEG, PNG, WebP or HEIC).")
    try:
        image = images.decode(
            data,
            formats=FORMATS,
            max_pixels=MAX_PIXELS,
            not_an_image="That file is not a photo we can read. Add a JPEG, PNG, WebP or HEIC photo.",
            too_many_pixels="That picture has too many pixels to process. Take it at a smaller size.",
            draft_box=(LONG_SIDE, LONG_SIDE),
        )
    except images.ImageProblem as problem:
        raise PhotoProblem(str(problem)) from None
    pixels = images.only_pixels(image, keep_alpha=False)
    pixels.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
    thumb = pixels.copy()
    thumb.thumbnail((THUMB_SIDE, THUMB_SIDE), Image.Resampling.LANCZOS)
    return Cleaned(_jpeg(pixels, 85), _jpeg(thumb, 80), pixels.width, pixels.height)


def _jpeg(image: Image.Image, quality: int) -> bytes:
    out = BytesIO()
    # No exif=, icc_profile= or comment=: the file holds the pixels and nothing else.
    image.save(out, "JPEG", quality=quality, optimize=True, progressive=True)
    return out.getvalue()


def clean_caption(caption: str) -> str:
    """One line of text; the forms check length and control characters first."""
    return " ".join(caption.split())[:CAPTION_MAX]


def shown(session: Session, account_id: int) -> list[Photo]:
    """The account's photos that are not removed, oldest first."""
    return list(
        session.scalars(
            select(Photo).where(Photo.account_id == account_id, Photo.removed_at.is_(None)).order_by(Photo.id)
        )
    )


def shown_by_account(session: Session, account_ids: Iterable[int]) -> dict[int, list[Photo]]:
    """Each account's shown photos, in one query (the day list)."""
    ids = list(account_ids)
    found: dict[int, list[Photo]] = {account_id: [] for account_id in ids}
    if not ids:
        return found
    for photo in session.scalars(
        select(Photo).where(Photo.account_id.in_(ids), Photo.removed_at.is_(None)).order_by(Photo.id)
    ):
        found[photo.account_id].append(photo)
    return found


def add(
    session: Session,
    storage: Storage,
    account: Account,
    cleaned: Cleaned,
    caption: str,
    *,
    staff: StaffUser | None = None,
) -> Photo:
    """Store a cleaned photo, its row and its record entry (the caller commits; see
    `add_in_unit_of_work`). A failed put raises before the entry: nothing is recorded."""
    if len(shown(session, account.id)) >= MAX_PER_ACCOUNT:
        raise PhotoProblem(
            f"This account has {MAX_PER_ACCOUNT} photos already. Remove one before adding another."
        )
    name = secrets.token_hex(16)
    photo = Photo(
        account_id=account.id,
        storage_key=f"photos/{account.id}/{name}.jpg",
        thumb_key=f"photos/{account.id}/{name}-thumb.jpg",
        content_type=CONTENT_TYPE,
        caption=clean_caption(caption),
        width=cleaned.width,
        height=cleaned.height,
        size_bytes=len(cleaned.full),
        sha256=sha256(cleaned.full).hexdigest(),
        added_by=CUSTOMER if staff is None else staff.role,
        added_by_staff_id=None if staff is None else staff.id,
    )
    session.add(photo)
    session.flush()
    # Bytes first, then the entry naming them: a failed put leaves no row behind.
    storage.put(photo.storage_key, cleaned.full, CONTENT_TYPE)
    storage.put(photo.thumb_key, cleaned.thumb, CONTENT_TYPE)
    record.append(
        session,
        account,
        event="photo_added",
        actor=CUSTOMER if staff is None else staff_actor(staff),
        confirmed_value=photo.caption or None,
        details={"photo_id": photo.id, "sha256": photo.sha256, "width": photo.width, "height": photo.height},
    )
    return photo


def add_once(
    storage: Storage,
    account: Account,
    cleaned: Cleaned,
    caption: str,
    form_id: str,
    *,
    staff: StaffUser | None = None,
) -> Photo | None:
    """`add` in the request's one unit of work, once per form (None for a form posted twice).
    Storage is not in the transaction: when the commit fails, the files just stored are deleted
    again, so no file outlives its row."""
    added: list[Photo] = []
    try:
        with unit_of_work() as session:
            if once.claim(session, form_id, "photo") is not None:
                added.append(add(session, storage, account, cleaned, caption, staff=staff))
    except BaseException:
        for photo in added:
            discard(storage, photo)
        raise
    return added[0] if added else None


def discard(storage: Storage, photo: Photo) -> None:
    for key in (photo.storage_key, photo.thumb_key):
        with contextlib.suppress(StorageError, OSError):
            storage.delete(key)


def remove(session: Session, account: Account, photo: Photo, staff: StaffUser, reason: str) -> None:
    """Mark a wrong photo removed, with a record entry; the caller deletes its files after the
    commit (`discard`), so a failed commit never leaves a row pointing at nothing."""
    photo.removed_at = utcnow()
    photo.removed_by_id = staff.id
    photo.removed_reason = clean_caption(reason)
    record.append(
        session,
        account,
        event="photo_removed",
        actor=staff_actor(staff),
        confirmed_value=photo.caption or None,
        note=photo.removed_reason,
        details={"photo_id": photo.id, "sha256": photo.sha256},
    )


def of_account_or_404(session: Session, account_id: int, photo_id: int) -> Photo:
    """The account's shown photo: another account's id, or a removed one, is a 404 alike."""
    photo = session.get(Photo, photo_id)
    if photo is None or photo.account_id != account_id or photo.removed_at is not None:
        abort(404)
    return photo


def serve(storage: Storage, photo: Photo, size: str) -> BaseResponse:
    """The photo (`full`) or its thumbnail (`thumb`), for a caller that checked access."""
    if size not in ("full", "thumb"):
        abort(404)
    try:
        return storage.serve(photo.storage_key if size == "full" else photo.thumb_key, photo.content_type)
    except StorageError:
        abort(404)
