"""The brand colour and WCAG contrast: links and secondary buttons draw the brand colour on the
page's light backgrounds, the header and buttons draw text on it, so every one of those pairs
must reach WCAG AA for normal text (4.5:1)."""

from __future__ import annotations

import colorsys
import re
from dataclasses import dataclass

HEX_COLOUR = re.compile(r"^#[0-9a-fA-F]{6}$")
DEFAULT_BRAND = "#0b5cab"
AA = 4.5
# Where brand-coloured text sits: cards and buttons (white) and the page itself (static/app.css
# --bg). The darker of the two decides.
BACKGROUNDS = ("#ffffff", "#f5f7f9")


def luminance(colour: str) -> float:
    channels = [int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5)]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(first: str, second: str) -> float:
    lighter, darker = sorted((luminance(first), luminance(second)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def contrast_on_page(colour: str) -> float:
    """The brand colour against the page backgrounds it is drawn on: the worst of them."""
    return min(contrast(colour, background) for background in BACKGROUNDS)


def readable(colour: str) -> bool:
    return contrast_on_page(colour) >= AA


def darker_shade(colour: str) -> str:
    """The lightest colour of the same hue and saturation that passes AA on the page: lower
    the HLS lightness (binary search), then round to hex and step down until the rounded
    colour still passes."""
    red, green, blue = (int(colour[i : i + 2], 16) / 255 for i in (1, 3, 5))
    hue, lightness, saturation = colorsys.rgb_to_hls(red, green, blue)

    def at(level: float) -> str:
        r, g, b = colorsys.hls_to_rgb(hue, level, saturation)
        return "#" + "".join(f"{round(channel * 255):02x}" for channel in (r, g, b))

    low, high = 0.0, lightness
    for _ in range(30):
        middle = (low + high) / 2
        low, high = (middle, high) if readable(at(middle)) else (low, middle)
    level = low
    while not readable(at(level)) and level > 0:
        level = max(0.0, level - 0.002)
    return at(level)


def readable_brand(colour: str | None) -> str:
    """The colour the pages use: the saved one, or for one saved before the contrast check
    (or malformed), its readable shade, so no saved value can make links unreadable."""
    if not colour or not HEX_COLOUR.match(colour):
        return DEFAULT_BRAND
    colour = colour.lower()
    return colour if readable(colour) else darker_shade(colour)


def ink_for(colour: str) -> str:
    """White text on the brand colour when that passes WCAG AA (4.5:1), else near-black."""
    return "#ffffff" if contrast(colour, "#ffffff") >= AA else "#111111"


@dataclass(frozen=True)
class Preview:
    """What the settings page draws for a colour: the colour, its text colour, its contrast on
    the page and, when that is too low, the shade offered instead."""

    colour: str
    ink: str
    ratio: float
    shade: str | None


def preview(colour: str | None) -> Preview | None:
    if not colour or not HEX_COLOUR.match(colour):
        return None
    colour = colour.lower()
    return Preview(
        colour,
        ink_for(colour),
        round(contrast_on_page(colour), 1),
        None if readable(colour) else darker_shade(colour),
    )
