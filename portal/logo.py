"""The company logo: an uploaded PNG, JPEG or WebP, accepted only when Pillow decodes it whole
(portal/images.py, also refusing anything appended after the image), re-drawn small as a fresh
PNG (no metadata, nothing the upload carried besides its pixels), stored under the instance
folder by the hash of its bytes and served by the app (core.logo).

Never SVG. Nothing is written before the whole settings form is valid (`clean` only reads;
`store` writes)."""

from __future__ import annotations

import re
from hashlib import sha256
from io import BytesIO
from pathlib import Path

from flask import current_app
from PIL import Image

from portal import images
from portal.files import write_atomically

MAX_BYTES = 2 * 1024 * 1024
# The settings page takes bodies up to this, so a too-large logo gets its message next to the
# field rather than the bare 413 page (which anything larger still gets).
UPLOAD_LIMIT = 8 * 1024 * 1024
BOX = (600, 200)  # a header logo: far more than any screen draws
MAX_PIXELS = 40_000_000  # a decompression bomb costs memory before any resize
FORMATS = ("PNG", "JPEG", "WEBP")
NAME = re.compile(r"logo-[0-9a-f]{16}\.png")


class LogoProblem(ValueError):
    """Why an upload is refused, in words for the person who uploaded it."""


def clean(data: bytes) -> bytes:
    """The logo as a fresh PNG within BOX, or LogoProblem."""
    if not data:
        raise LogoProblem("That file is empty. Choose a PNG, JPEG or WebP image.")
    if len(data) > MAX_BYTES:
        raise LogoProblem(
            f"That file is {len(data) / 1024 / 1024:.1f} MB; the logo can be at most "
            "2 MB. Save it smaller (600 × 200 pixels is plenty) and try again."
        )
    if images.looks_like_svg(data):
        raise LogoProblem(
            "SVG logos are not accepted (an SVG can carry scripts). Export the logo as PNG and upload that."
        )
    try:
        image = images.decode(
            data,
            formats=FORMATS,
            max_pixels=MAX_PIXELS,
            not_an_image="That file is not a PNG, JPEG or WebP image we can read. "
            "Export the logo as PNG and upload that.",
            too_many_pixels="That image is too large to process. Save it at about "
            "600 × 200 pixels and upload it again.",
            trailing="That file has something else appended after the image, so it is not "
            "accepted. Export the logo again as a plain PNG and upload that.",
        )
    except images.ImageProblem as problem:
        raise LogoProblem(str(problem)) from None
    image.thumbnail(BOX, Image.Resampling.LANCZOS)
    out = BytesIO()
    images.only_pixels(image, keep_alpha=True).save(out, "PNG", optimize=True)
    return out.getvalue()


def folder() -> Path:
    return Path(current_app.config["UPLOAD_DIR"])


def store(png: bytes) -> str:
    """Write a cleaned logo (from `clean`) and return its file name. Named by its content, so
    the same logo uploaded twice is one file and the name can be cached for good."""
    name = f"logo-{sha256(png).hexdigest()[:16]}.png"
    target = folder() / name
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        write_atomically(target, png)
    return name
