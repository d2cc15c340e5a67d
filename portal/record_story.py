"""The service record as an office manager reads it: one sentence per entry.

Entries keep their machine fields (event, actor "staff:2", values, details; the record API
returns those). This module only says them in words, for every page that shows the record:
which promise ("Gate access: Side gate, code 4412 -> customer changed to ..."), who by name
and role ("Alex Admin, office"; "Dana Reyes, customer"; "Stripe"; "the portal"), when in the
company's time zone, and who entered a handoff for whom."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.company import local_time
from portal.handoffs import display_value
from portal.models import Account, PromiseItem, RecordEntry, StaffUser
from portal.secret_codes import screened

ARROW = "\N{RIGHTWARDS ARROW}"
QUOTE = ("\N{LEFT DOUBLE QUOTATION MARK}", "\N{RIGHT DOUBLE QUOTATION MARK}")
# The side of the business each role speaks for, as the record names them.
ROLE_WORDS = {"admin": "office", "office": "office", "sales": "sales", "technician": "technician"}
# Events with no promise, said in words; "{value}" is the entry's confirmed value.
PLAIN_EVENTS = {
    "started": "Started confirming the service",
    "link_opened": "Opened the welcome link",
    "readiness": "Before the first visit: {value}",
    "contact_preferences": "How to reach them: {value}",
    "technician_note": "Note for the technician: {value}",
    "sms_consent": "Agreed to service texts at {value}",
    "card_saved": "Card saved for autopay: {value}",
    "card_setup_started": "Started saving a card",
    "card_setup_failed": "Saving a card failed",
    "stripe_customer_created": "Customer created in Stripe",
    "invoice_created": "Invoice created: {value}",
    "invoice_paid": "Invoice paid: {value}",
    "invoice_settled": "Invoice settled, credited in full: {value}",
    "promo_applied_late": "Promotion credited on a later invoice: {value}",
    "autopay_submitted": "Autopay charge submitted: {value}",
    "autopay_failed": "Autopay charge failed",
    "payment_processing": "Payment submitted, waiting to clear",
    "payment_failed": "Payment failed",
    "payment_mismatch": "Payment amount did not match the invoice",
    "duplicate_payment": "Invoice paid twice",
    "stripe_error": "Stripe could not be reached",
    "email_failed": "An email could not be delivered",
    "customer_goal": "What would make the service great: {value}",
    "handoff_acknowledged": "Handoff acknowledged by service",
    "handoff_question": "Question to sales about the handoff",
    "handoff_answer": "Sales answered the question",
    "account_cancelled": "Account cancelled",
    "first_visit_feedback_sent": "Asked whether the first visit matched what was agreed",
    "first_visit_feedback": "First visit matched what was agreed? {value}",
    "photo_added": "Photo added: {value}",
    "photo_removed": "Photo removed: {value}",
    "technician_assigned": "Technician: {value}",
}


# Events whose note the portal wrote as the whole sentence ("Code shown to Tom Tech (brief)").
SELF_SAID = frozenset({"access_code_shown", "access_card", "access_flag"})


@dataclass(frozen=True)
class StoryLine:
    """One record entry in words."""

    what: str
    who: str
    when: str
    when_iso: str
    note: str = ""
    outcome: str | None = None


@dataclass(frozen=True)
class _Cast:
    """What the sentences need besides the entries: the items, staff names and the customer."""

    items: dict[int, PromiseItem]
    staff: dict[int, StaffUser]
    customer_name: str
    codes_shown: bool = False

    def value(self, value: str | None, kind: str) -> str:
        """A promise value in the sentence: its codes blanked unless a reveal was asked for."""
        return screened(display_value(value, kind), kind, self.codes_shown)

    def text(self, text: str | None, kind: str = "") -> str:
        """Free words (a note, a comment) with anything that reads as a code blanked (every
        code, for a kind that holds secrets: the customer's notes for the technician)."""
        return screened(text, kind, self.codes_shown)


def story(
    session: Session, account: Account, entries: Sequence[RecordEntry], *, codes_shown: bool = False
) -> list[StoryLine]:
    """The entries in words, in the order given (two queries whatever their number); gate and
    alarm codes blanked unless `codes_shown` (a staff member asked, and the record notes it)."""
    items = {
        item.id: item
        for item in session.scalars(select(PromiseItem).where(PromiseItem.account_id == account.id))
    }
    staff_ids = {_staff_id(entry.actor) for entry in entries} | {
        item.promised_by_id for item in items.values()
    }
    staff_ids |= {
        int(entry.details["assignee_id"])
        for entry in entries
        if isinstance((entry.details or {}).get("assignee_id"), int)
    }
    wanted = {i for i in staff_ids if i is not None}
    staff = (
        {user.id: user for user in session.scalars(select(StaffUser).where(StaffUser.id.in_(wanted)))}
        if wanted
        else {}
    )
    cast = _Cast(items, staff, account.customer.name, codes_shown)
    return [_line(entry, cast) for entry in entries]


def _staff_id(actor: str) -> int | None:
    kind, _, rest = actor.partition(":")
    return int(rest) if kind == "staff" and rest.isdigit() else None


def actor_name(actor: str, cast: _Cast) -> str:
    """'staff:2' as 'Alex Admin, office'; 'customer' as 'Dana Reyes, customer'."""
    staff_id = _staff_id(actor)
    if staff_id is not None:
        user = cast.staff.get(staff_id)
        return _staff_name(user) if user else "a former colleague"
    if actor == "customer":
        return f"{cast.customer_name}, customer"
    if actor == "stripe":
        return "Stripe"
    if actor == "system":
        return "the portal"
    if actor.startswith("api:"):
        return f"{actor[4:]} (API)"
    return actor


def _staff_name(user: StaffUser) -> str:
    return f"{user.display_name}, {ROLE_WORDS.get(user.role, user.role)}"


def _line(entry: RecordEntry, cast: _Cast) -> StoryLine:
    item = cast.items.get(entry.item_id) if entry.item_id is not None else None
    what, note = _what(entry, item, cast)
    if item is None:  # a promise's sentence screened its values itself: its dates stay whole
        what = cast.text(what, entry.event)
    return StoryLine(
        what=what,
        who=_who(entry, item, cast),
        when=local_time(entry.created_at),
        when_iso=entry.created_at.isoformat(),
        note=cast.text(note),
        outcome=entry.outcome,
    )


def _who(entry: RecordEntry, item: PromiseItem | None, cast: _Cast) -> str:
    if entry.event == "promised" and item is not None and item.promised_by_id is not None:
        seller = cast.staff.get(item.promised_by_id)
        if seller is not None and entry.actor != f"staff:{seller.id}":
            # Someone else typed the sale in: both are part of the story.
            enterer = actor_name(entry.actor, cast).split(",")[0]
            return f"entered by {enterer} for {seller.display_name}"
    return actor_name(entry.actor, cast)


def _what(entry: RecordEntry, item: PromiseItem | None, cast: _Cast) -> tuple[str, str]:
    """The sentence and the words quoted under it (a comment or note), never the same twice."""
    details: dict[str, Any] = entry.details or {}
    if item is not None:
        return _about_promise(entry, item, details, cast)
    event = entry.event
    value = entry.confirmed_value or ""
    if event == "signed":
        terms = details.get("terms_version")
        what = f"the service agreement (terms version {terms})" if terms else "the onboarding summary"
        return f"Signed {what} as {QUOTE[0]}{value}{QUOTE[1]}", ""
    if event in ("consent_given", "consent_withdrawn"):
        # The note names the consent; the number (texts) and the words of an opt-out follow.
        return entry.note + (f" for {value}" if value else ""), ""
    if event in ("link_sent", "link_resent"):
        if entry.actor == "customer":
            return "Asked for a new link by email", ""
        to = details.get("to")
        first = "Welcome email sent" if event == "link_sent" else "New link sent"
        return (f"{first} to {to}" if to else first), ""
    if event == "pay_link_opened":
        return f"Opened the pay link of invoice {details.get('number', '')}".strip(), ""
    if event == "reminder_sent":
        return f"Reminder {details.get('number', '')} sent".replace("  ", " "), ""
    if event in ("email_changed", "email_change_requested"):
        if event == "email_change_requested":
            return f"Asked to use {details.get('new_email', 'a new address')} for emails", ""
        return f"Email address changed from {details.get('from', '?')} to {details.get('to', '?')}", ""
    if event == "contact_changed":
        moved = "; ".join(
            f"{name} from {change.get('from') or '—'} to {change.get('to') or '—'}"
            for name, change in details.items()
            if isinstance(change, dict)
        )
        return f"Contact changed: {moved}", ""
    if event in SELF_SAID:
        return entry.note, ""
    if event == "note":
        return "Note", entry.note
    if event == "change_requested":
        return "Asked for a change", entry.note
    if event == "follow_up_raised":
        return f"For the office: {entry.note}", str(details.get("detail", ""))
    if event == "follow_up_closed":
        told = " (the customer is told)" if details.get("told_customer") else ""
        return f"Office followed up on: {details.get('summary', '')}{told}", entry.note
    if event == "change_accepted":
        return "Office agreed to the customer's request", entry.note
    if event == "change_declined":
        return "Office declined the customer's request", entry.note
    if event in PLAIN_EVENTS:
        return PLAIN_EVENTS[event].format(value=value).rstrip(": "), entry.note
    words = event.replace("_", " ").capitalize()
    return (f"{words}: {value}" if value else words), entry.note


def _from(day: object, kind: str) -> str:
    """' from Thursday, December 10, 2026' for a dated change, else nothing."""
    return f" from {display_value(day, 'start_date')}" if isinstance(day, str) and day else ""


# Entries that decide what is agreed (the first is a difference's resolution).
DECISION_EVENTS = ("resolved", "change_accepted", "change_declined", "staff_changed")


def _sentence(text: str) -> str:
    text = text.strip()
    return text if not text or text[-1] in ".!?" else text + "."


def told_customer(
    entry: RecordEntry,
    kind: str,
    shown: Callable[[str | None, str], str] = display_value,
    quoted: Callable[[str | None], str] = lambda text: text or "",
    secret: bool = False,
) -> str:
    """A decision (or the customer's own answer) as the customer reads it, in plain words:
    "You asked for Tuesday. We kept Friday: the Tuesday route is full." Emails pass `shown`
    and `quoted` that keep codes out, and `secret` for an access detail (no value at all)."""
    details: dict[str, Any] = entry.details or {}
    note = quoted(entry.note).strip()
    because = f": {note}" if note else ""
    agreed = shown(entry.confirmed_value, kind)
    when = _from(details.get("effective_from"), kind)
    event = entry.event
    # A visit-day answer is an ordered wish: the customer reads their days, not "prefers ...".
    wished = details.get("preferences") if event == "answered" else details.get("customer_preferences")
    wish = ", then ".join(wished) if isinstance(wished, list) and wished else None
    if event == "answered":
        if entry.outcome == "confirmed":
            return ""  # as agreed: nothing to tell
        if entry.outcome == "changed":
            return (
                "You asked for a change here. The office will decide."
                if secret
                else _sentence(f"You asked for {wish or agreed}. The office will decide")
            )
        if entry.outcome == "disputed":
            return "You told us this is not what you were told. The office will decide."
        return ""
    if event == "resolved":
        asked = wish or shown(details.get("customer_value"), kind)
        if details.get("resolution") == "accepted":
            head = "We accepted your change" if secret else f"You asked for {asked}. We agreed: {agreed}"
        elif secret or not asked:
            head = (
                "We kept the details we had"
                if secret
                else f"You told us this was not what you were told. We kept {agreed}"
            )
        else:
            head = f"You asked for {asked}. We kept {agreed}"
        return _sentence(head + because)
    if event == "follow_up_closed":  # the office's own words, nothing else to say
        return _sentence(note)
    if event in ("change_accepted", "change_declined") and not kind:  # "something else"
        asked = quoted(details.get("requested"))
        verb = "We agreed" if event == "change_accepted" else "We could not do this"
        return _sentence(f"You asked: {QUOTE[0]}{asked}{QUOTE[1]}. {verb}{because}")
    if event in ("change_accepted", "change_declined"):
        asked = shown(details.get("requested"), kind)
        before = shown(details.get("previous_value"), kind)
        if event == "change_accepted" and secret:
            head = f"We accepted your change{when}"
        elif event == "change_accepted" and agreed == asked:
            head = f"You asked for {asked}. We agreed{',' if when else ''}{when}"
        elif event == "change_accepted":
            head = f"You asked for {asked}. We agreed: {agreed}{when}"
        else:
            head = "We kept the details we had" if secret else f"You asked for {asked}. We kept {before}"
        return _sentence(head + because)
    if event == "staff_changed":
        head = f"We updated these details{when}" if secret else f"We changed this to {agreed}{when}"
        return _sentence(head + because)
    return ""


def _about_promise(
    entry: RecordEntry, item: PromiseItem, details: dict[str, Any], cast: _Cast
) -> tuple[str, str]:
    label = item.label
    promised = cast.value(entry.promised_value or item.promised_value, item.kind)
    confirmed = cast.value(entry.confirmed_value, item.kind)
    event, outcome = entry.event, entry.outcome
    if event == "promised":
        return f"{label}: {promised} (promised)", ""
    if event == "promise_edited":
        was = entry.note[len("was: ") :] if entry.note.startswith("was: ") else ""
        before = f"{cast.value(was, item.kind)} {ARROW} " if was else ""
        return f"{label}: {before}{promised} (edited before signing)", ""
    if event == "promise_withdrawn":
        return f"{label}: {promised} (withdrawn)", ""
    if event == "answered":
        if outcome == "confirmed":
            return f"{label}: {promised} {ARROW} customer confirmed", entry.note
        if outcome == "changed" and "preferences" in details:
            # A wish, not a change: the office decides the day.
            return f"{label}: {promised} {ARROW} customer {confirmed}", entry.note
        if outcome == "changed":
            return f"{label}: {promised} {ARROW} customer changed to {confirmed}", entry.note
        if outcome == "disputed":
            return f"{label}: {promised} {ARROW} customer says this is not what they were told", entry.note
    if event == "resolved":
        asked = cast.value(details.get("customer_value"), item.kind)
        wished = details.get("customer_preferences")
        if wished and isinstance(wished, list):
            if details.get("resolution") == "accepted":
                return f"{label}: {promised} {ARROW} office agreed {confirmed} (customer {asked})", entry.note
            return f"{label}: kept {confirmed or promised} (customer {asked})", entry.note
        if details.get("resolution") == "accepted":
            return f"{label}: {promised} {ARROW} office accepted the customer's {confirmed}", entry.note
        kept = f"{label}: kept {confirmed or promised}"
        return (f"{kept} (customer asked for {asked})" if asked else kept), entry.note
    if event == "assigned":
        assignee_id = details.get("assignee_id")
        assignee = cast.staff.get(assignee_id) if isinstance(assignee_id, int) else None
        name = _staff_name(assignee) if assignee else details.get("assignee", "a colleague")
        return f"{label}: difference handed to {name}", entry.note
    if event == "note":
        return f"Note on {label}", entry.note
    if event == "change_requested":
        requested = details.get("requested")
        when = _from(details.get("effective_date"), item.kind)
        if isinstance(requested, str) and requested:  # the request is the sentence: no note repeats it
            return f"{label}: asked to change it to {cast.value(requested, item.kind)}{when}", ""
        return f"{label}: asked for a change", entry.note
    if event in DECISION_EVENTS[1:]:
        before = cast.value(details.get("previous_value"), item.kind)
        moved = f"{before} {ARROW} " if before else ""
        when = _from(details.get("effective_from"), item.kind)
        asked = cast.value(details.get("requested"), item.kind)
        if event == "change_accepted":
            return f"{label}: {moved}office accepted the customer's change to {confirmed}{when}", entry.note
        if event == "change_declined":
            return f"{label}: office declined the customer's change to {asked}, kept {before}", entry.note
        return f"{label}: {moved}office changed it to {confirmed}{when}", entry.note
    words = event.replace("_", " ").capitalize()
    value = confirmed or promised
    return f"{label}: {value} ({words.lower()})", entry.note
