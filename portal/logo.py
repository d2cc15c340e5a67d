"""The company logo: an uploaded PNG, JPEG or WebP, accepted only when Pillow decodes it whole,
re-drawn small as a fresh PNG (no metadata, nothing the upload carried besides its pixels),
stored under the instance folder by the hash of its bytes and served by the app (core.logo).

Never SVG: it is a document that can carry script, not a picture. Nothing is written before the
whole settings form is valid (`clean` only reads; `store` writes)."""

from __future__ import annotations

import re
import warnings
from hashlib import sha256
from io import BytesIO
from pathlib import Path

from flask import current_app
from PIL import Image, ImageOps, UnidentifiedImageError

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
    if _looks_like_svg(data):
        raise LogoProblem(
            "SVG logos are not accepted (an SVG can carry scripts). Export the logo as PNG and upload that."
        )
    image = _decode(data)
    image = ImageOps.exif_transpose(image)  # a phone photo's rotation, before EXIF goes
    image.thumbnail(BOX, Image.Resampling.LANCZOS)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    image = image.convert("RGBA" if has_alpha else "RGB")
    # Only the pixels cross over: a new image has no EXIF, ICC, text chunks or comments.
    fresh = Image.frombytes(image.mode, image.size, image.tobytes())
    out = BytesIO()
    fresh.save(out, "PNG", optimize=True)
    return out.getvalue()


def _looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) or b"<svg" in head


def _decode(data: bytes) -> Image.Image:
    not_an_image = LogoProblem(
        "That file is not a PNG, JPEG or WebP image we can read. Export the logo as PNG and upload that."
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data), formats=FORMATS) as probe:
                width, height = probe.size
                if width * height > MAX_PIXELS:
                    raise LogoProblem(
                        "That image is too large to process. Save it at about "
                        "600 × 200 pixels and upload it again."
                    )
                kind = probe.format or ""
                probe.verify()
            image = Image.open(BytesIO(data), formats=FORMATS)  # verify() used up the first
            image.load()  # decodes every pixel: a cut or corrupt file fails here
    except LogoProblem:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        EOFError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as error:
        raise not_an_image from error
    if not _ends_with_the_image(data, kind):
        raise LogoProblem(
            "That file has something else appended after the image, so it is not "
            "accepted. Export the logo again as a plain PNG and upload that."
        )
    return image


def _ends_with_the_image(data: bytes, kind: str) -> bool:
    """True when the file is the image and nothing more. Decoders stop at the image's end and
    ignore what follows, which is where a polyglot (an image that is also HTML or script)
    keeps its second self."""
    if kind == "PNG":
        position = 8
        while position + 12 <= len(data):
            length = int.from_bytes(data[position : position + 4], "big")
            chunk = data[position + 4 : position + 8]
            position += 12 + length
            if chunk == b"IEND":
                return position == len(data)
        return False
    if kind == "JPEG":
        return data.endswith(b"\xff\xd9")
    if kind == "WEBP":
        return int.from_bytes(data[4:8], "little") + 8 == len(data)
    return False


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
