"""The one check that an upload is a picture (the company logo, customers' and staff's photos):
Pillow decodes it whole, within a pixel budget, from an allowed list of formats, and the caller
keeps only its pixels (re-encoded: no EXIF, GPS, ICC, comments, nor whatever followed the image).

Never SVG: it is a document that can carry script, not a picture."""

from __future__ import annotations

import warnings
from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError
from pillow_heif import register_heif_opener

# iPhones save HEIC by default: Pillow reads it through pillow-heif ("HEIF").
register_heif_opener()

DECODE_ERRORS = (
    UnidentifiedImageError,
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    Image.DecompressionBombError,
    Image.DecompressionBombWarning,
)


class ImageProblem(ValueError):
    """Why an upload is refused, in words for the person who uploaded it."""


def looks_like_svg(data: bytes) -> bool:
    head = data[:1024].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
    return head.startswith((b"<svg", b"<?xml", b"<!doctype svg")) or b"<svg" in head


def decode(
    data: bytes,
    *,
    formats: tuple[str, ...],
    max_pixels: int,
    not_an_image: str,
    too_many_pixels: str,
    trailing: str | None = None,
    draft_box: tuple[int, int] | None = None,
) -> Image.Image:
    """The decoded image, upright (a phone's EXIF rotation applied), or ImageProblem.

    `trailing`: the message refusing a file with bytes after the image's end (a polyglot keeps
    its second self there); None accepts it, for callers that keep only re-encoded pixels (phones
    append their own data after a JPEG). `draft_box`: a JPEG may be decoded at a reduced scale
    still at least this large (the caller shrinks it anyway; it saves most of the memory)."""
    problem = ImageProblem(not_an_image)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(BytesIO(data), formats=formats) as probe:
                width, height = probe.size
                if width * height > max_pixels:
                    raise ImageProblem(too_many_pixels)
                kind = probe.format or ""
                probe.verify()
            opened = Image.open(BytesIO(data), formats=formats)  # verify() used up the first
            if draft_box is not None and kind == "JPEG":
                opened.draft("RGB", draft_box)
            opened.load()  # decodes every pixel: a cut or corrupt file fails here
            image = ImageOps.exif_transpose(opened)  # before the EXIF goes
    except ImageProblem:
        raise
    except DECODE_ERRORS as error:
        raise problem from error
    if trailing is not None and not ends_with_the_image(data, kind):
        raise ImageProblem(trailing)
    return image


def ends_with_the_image(data: bytes, kind: str) -> bool:
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


def only_pixels(image: Image.Image, *, keep_alpha: bool) -> Image.Image:
    """A new image holding the pixels alone: no EXIF, ICC, text chunks or comments cross over.
    Without `keep_alpha`, transparency is laid on white (a JPEG has none)."""
    has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
    if has_alpha and keep_alpha:
        image = image.convert("RGBA")
    elif has_alpha:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        image = Image.alpha_composite(background, image).convert("RGB")
    else:
        image = image.convert("RGB")
    return Image.frombytes(image.mode, image.size, image.tobytes())
