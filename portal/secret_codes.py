"""Gate, lock and alarm codes never travel by email (DESIGN.md: secrets the technician needs).

Every email template shows promises through `promise_lines` / `summary_lines` and free text
through `blank_codes`: an access promise, or any promise whose value looks like a code, becomes
one "Access details: noted" line, and the value is shown only behind the link (the portal pages,
which need the customer's session or a staff login)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from portal.handoffs import display_value
from portal.models import PromiseKind

ACCESS_LABEL = "Access details"
ACCESS_NOTED = "noted \N{EM DASH} you'll see them behind the link"
BLANKED = "\N{BULLET}" * 4
# The customer's notes for the technician: where "side door 3690" goes, with no word for it.
TECHNICIAN_NOTE = "technician_note"
# Kinds whose values are secrets however they are worded.
SECRET_KINDS = frozenset({PromiseKind.GATE_ACCESS.value, TECHNICIAN_NOTE})
# A code is a run of 3 to 8 digits (a keypad's # or * around it) in text that speaks of one;
# "Salt cell check before summer" or a price stays as it is.
_CODE_WORDS = re.compile(
    r"\b(code|codes|pin|combo|combination|pass ?code|password|alarm|lock|"
    r"padlock|keypad|key ?box|lockbox|gate)\b",
    re.IGNORECASE,
)
# A code is digits, maybe in groups ("4412", "77-99", "24 68"), three to twelve of them in all.
# An ISO date ("from 2026-12-10" in a record note) is not a code.
_DIGIT_RUN = re.compile(r"[#*]?(?<![\d-])(?!\d{4}-\d\d-\d\d)\d+(?:[ -]\d+)*(?![\d])[#*]?")


class _Codes:
    """`_DIGIT_RUN`'s matches that hold 3 to 12 digits: what is blanked, and put back."""

    @staticmethod
    def _is_code(found: str) -> bool:
        return 3 <= sum(c.isdigit() for c in found) <= 12

    def search(self, text: str) -> bool:
        return any(self._is_code(m.group(0)) for m in _DIGIT_RUN.finditer(text))

    def findall(self, text: str) -> list[str]:
        return [m.group(0) for m in _DIGIT_RUN.finditer(text) if self._is_code(m.group(0))]

    def sub(self, blank: str, text: str) -> str:
        return _DIGIT_RUN.sub(lambda m: blank if self._is_code(m.group(0)) else m.group(0), text)


_DIGITS = _Codes()


def looks_like_code(text: str | None) -> bool:
    return bool(text) and bool(_CODE_WORDS.search(text or "")) and bool(_DIGITS.search(text or ""))


def is_secret(kind: str, value: str | None) -> bool:
    return kind in SECRET_KINDS or looks_like_code(value)


def blank_codes(text: str | None) -> str:
    """Free text (a comment, a change request) with the digits of any code blanked out."""
    if not text or not looks_like_code(text):
        return text or ""
    return _DIGITS.sub(BLANKED, text)


def without_codes(text: str | None, kind: str) -> str:
    """A value or comment as a CSV export or a staff screen shows it before anyone asked to see
    the codes (DESIGN.md: codes never travel by CSV): an access promise loses every digit run,
    other text the digits of anything that reads as a code."""
    if kind in SECRET_KINDS:
        return _DIGITS.sub(BLANKED, text or "")
    return blank_codes(text)


def has_code(kind: str, text: str | None) -> bool:
    """Whether a staff screen would blank something in this value."""
    return screened(text, kind) != (text or "")


def screened(text: str | None, kind: str = "", shown: bool = False) -> str:
    """Text on a staff screen: as it is once the staff member asked to see the codes (a
    recorded reveal, access_card.record_reveal), else with its codes blanked."""
    return (text or "") if shown else without_codes(text, kind)


def restored(typed: str | None, original: str | None, kind: str = "") -> str:
    """What was typed into a field that showed `original` screened: each blank put back as
    the code it stands for, in order, so staff can edit the words around a code without
    seeing it. A blank with no code behind it stays, for the form to refuse (`HIDDEN_LEFT`)."""
    typed = typed or ""
    if BLANKED not in typed:
        return typed
    original = original or ""
    hidden = iter(_DIGITS.findall(original) if kind in SECRET_KINDS or looks_like_code(original) else [])
    return re.sub(re.escape(BLANKED), lambda blank: next(hidden, blank.group(0)), typed)


HIDDEN_LEFT = f"Type the code in full: {BLANKED} stands for a code that was hidden here."


def mailed_value(value: str | None, kind: str) -> str:
    """One promise value as an email may show it."""
    return ACCESS_NOTED if is_secret(kind, value) else display_value(value, kind)


@dataclass(frozen=True)
class MailedLine:
    """One promise as an email shows it."""

    label: str
    value: str
    promised: str = ""
    outcome: str = "promised"
    comment: str = ""
    secret: bool = False


def promise_lines(items: Iterable[Any]) -> list[MailedLine]:
    """Promise items (anything with kind, label, promised_value) for a welcome email."""
    return _folded(
        MailedLine(item.label, display_value(item.promised_value, item.kind))
        if not is_secret(item.kind, item.promised_value)
        else MailedLine(ACCESS_LABEL, ACCESS_NOTED, secret=True)
        for item in items
    )


def summary_lines(lines: Iterable[Any]) -> list[MailedLine]:
    """The customer's answers (confirmations.SummaryLine) for the emails that follow signing."""
    shown = []
    for line in lines:
        if is_secret(line.kind, line.promised) or is_secret(line.kind, line.confirmed):
            shown.append(
                MailedLine(
                    ACCESS_LABEL,
                    ACCESS_NOTED,
                    ACCESS_NOTED,
                    line.outcome,
                    blank_codes(line.comment),
                    secret=True,
                )
            )
        else:
            shown.append(
                MailedLine(line.label, line.confirmed, line.promised, line.outcome, blank_codes(line.comment))
            )
    return _folded(shown)


_OUTCOME_WEIGHT = {"disputed": 3, "changed": 2, "confirmed": 1}


def _folded(lines: Iterable[MailedLine]) -> list[MailedLine]:
    """All secret lines as one, where the first was: the email says once that access details
    are noted, and whether the customer changed or disputed any of them."""
    result: list[MailedLine] = []
    at: int | None = None
    for line in lines:
        if not line.secret:
            result.append(line)
        elif at is None:
            at = len(result)
            result.append(line)
        else:
            kept = result[at]
            worse = _OUTCOME_WEIGHT.get(line.outcome, 0) > _OUTCOME_WEIGHT.get(kept.outcome, 0)
            comments = " ".join(c for c in (kept.comment, line.comment) if c)
            result[at] = MailedLine(
                kept.label,
                kept.value,
                kept.promised,
                line.outcome if worse else kept.outcome,
                comments,
                secret=True,
            )
    return result
