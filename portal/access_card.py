"""The homeowner's access card: gates and their codes, lock, alarm, dogs, children, parking,
the equipment pad, and whether to text before arriving.

Sales' gate promises prefill it; the customer confirms it in the access step and keeps it
current from My service, each change from an effective date ("the code changes on 10
December"). Every change is a new version (AccessCardVersion) and a record entry; the entry's
readable text names what changed, never a code (portal.secret_codes keeps codes out of emails
the same way). Staff screens mask codes until someone asks to see them, and each time they do
is a record entry; a technician's flag at the gate reaches the record, the office inbox and the
customer.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from portal import follow_ups, links, record
from portal.company import get_company
from portal.mail import queue_email
from portal.models import (
    AccessCardVersion,
    Account,
    Outcome,
    PromiseItem,
    PromiseKind,
    RecordEntry,
    StaffUser,
)
from portal.secret_codes import BLANKED

if TYPE_CHECKING:
    from portal.confirmations import Answer

MAX_GATES = 3
MAX_DOGS = 2
DOG_SIZES = ("small", "medium", "large")
# What a gate or alarm code may be: digits, letters, a keypad's # and *, spaces and dashes.
CODE_PATTERN = re.compile(r"^[0-9A-Za-z#* -]{1,20}$")
# The words of a promise that name a code: "Side gate, code 4412" is the side gate, code 4412.
_PROMISED_CODE = re.compile(
    r"[,;:]?\s*(?:(?:gate|keypad|lock|pass)\s*)?(?:code|pin|combo|combination)?\s*(?:is\s*)?:?\s*"
    r"([#*]?(?<!\d)\d{3,8}(?!\d)[#*]?)",
    re.IGNORECASE,
)

FIELD_NAMES = {
    "gates": "gates",
    "lock_type": "lock",
    "alarm": "alarm or automation",
    "alarm_code": "alarm code",
    "dogs": "dogs",
    "children": "children",
    "parking": "parking",
    "equipment_pad": "equipment pad",
    "text_before": "text before arriving",
}

FLAGS = {
    "code_failed": "Code didn't work",
    "dog_out": "Dog was out",
    "gate_open": "Gate open on arrival",
}
FOLLOW_UP_KIND = "access_flag"


@dataclass(frozen=True)
class Gate:
    location: str
    code: str = ""


@dataclass(frozen=True)
class Dog:
    name: str
    size: str = ""
    temperament: str = ""
    secured: bool = False


@dataclass(frozen=True)
class Card:
    gates: tuple[Gate, ...] = ()
    lock_type: str = ""
    alarm: str = ""
    alarm_code: str = ""
    dogs: tuple[Dog, ...] = ()
    children: str = ""
    parking: str = ""
    equipment_pad: str = ""
    text_before: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["gates"] = [asdict(gate) for gate in self.gates]
        data["dogs"] = [asdict(dog) for dog in self.dogs]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Card:
        return cls(
            gates=tuple(
                Gate(str(g.get("location", "")), str(g.get("code", ""))) for g in data.get("gates", [])
            ),
            lock_type=str(data.get("lock_type", "")),
            alarm=str(data.get("alarm", "")),
            alarm_code=str(data.get("alarm_code", "")),
            dogs=tuple(
                Dog(
                    str(d.get("name", "")),
                    str(d.get("size", "")),
                    str(d.get("temperament", "")),
                    bool(d.get("secured", False)),
                )
                for d in data.get("dogs", [])
            ),
            children=str(data.get("children", "")),
            parking=str(data.get("parking", "")),
            equipment_pad=str(data.get("equipment_pad", "")),
            text_before=bool(data.get("text_before", False)),
        )

    @property
    def codes(self) -> list[str]:
        """Every secret on the card (gate codes, the alarm code)."""
        return [code for code in (*(gate.code for gate in self.gates), self.alarm_code) if code]

    @property
    def empty(self) -> bool:
        return self == Card()


def changed_fields(before: Card, after: Card) -> list[str]:
    """The names (never the values) of what differs between two versions."""
    old, new = before.to_json(), after.to_json()
    return [FIELD_NAMES[name] for name in FIELD_NAMES if old[name] != new[name]]


def masked(code: str) -> str:
    return BLANKED if code else ""


# -- reading -------------------------------------------------------------------------------------


def _gate_from_words(value: str, label: str) -> Gate:
    """A gate promise's words as a gate: "Side gate, code 4412" is the side gate, code 4412.
    Sales' promise and the customer's correction of it are read alike."""
    value = value.strip()
    found = _PROMISED_CODE.search(value)
    code = found.group(1) if found else ""
    location = (value[: found.start()] + value[found.end() :]).strip(" ,;:.") if found else value
    return Gate(location[:120] or label[:120] or "Gate", code)


def _gate_promises(account: Account) -> list[PromiseItem]:
    """The promises the card has a gate for (the card holds MAX_GATES)."""
    return [item for item in account.items if item.kind == PromiseKind.GATE_ACCESS.value][:MAX_GATES]


def prefill(account: Account) -> Card:
    """A first card from what sales promised: each gate promise a gate, its code split off."""
    return Card(
        gates=tuple(_gate_from_words(item.promised_value, item.label) for item in _gate_promises(account))
    )


@dataclass(frozen=True)
class CardOnDay:
    """The card valid on a day, where it came from, and a later version already saved."""

    card: Card
    version: AccessCardVersion | None  # None: nothing saved yet, the card is sales' prefill
    later: AccessCardVersion | None = None

    @property
    def later_card(self) -> Card | None:
        return Card.from_json(self.later.card) if self.later is not None else None


def versions(session: Session, account_id: int) -> list[AccessCardVersion]:
    return list(
        session.scalars(
            select(AccessCardVersion)
            .where(AccessCardVersion.account_id == account_id)
            .order_by(AccessCardVersion.version)
        )
    )


def card_on(session: Session, account: Account, day: date) -> CardOnDay:
    """The version in force on `day`: the newest saved one effective by then. Before the first
    saved version takes effect, sales' prefill (a first card saved for a later date does not
    reach back); the next version saved for after `day` rides along as `later`."""
    return card_on_from(versions(session, account.id), account, day)


def card_on_from(saved: Sequence[AccessCardVersion], account: Account, day: date) -> CardOnDay:
    """Each version is the whole card from its date until the next version's date (the newer
    save of two on one date): a change saved for 10 December still comes on 10 December when
    the customer edits today's card meanwhile."""
    in_force = [v for v in saved if v.effective_date <= day]
    current = max(in_force, key=lambda v: (v.effective_date, v.version)) if in_force else None
    upcoming = [v for v in saved if v.effective_date > day]
    later = min(upcoming, key=lambda v: (v.effective_date, -v.version)) if upcoming else None
    if current is None:
        return CardOnDay(prefill(account), None, later)
    return CardOnDay(Card.from_json(current.card), current, later)


def cards_on(session: Session, accounts: Sequence[Account], day: date) -> dict[int, CardOnDay]:
    """The card in force on `day` for each account, in one query (the day list)."""
    by_account: dict[int, list[AccessCardVersion]] = {account.id: [] for account in accounts}
    if by_account:
        for version in session.scalars(
            select(AccessCardVersion)
            .where(AccessCardVersion.account_id.in_(list(by_account)))
            .order_by(AccessCardVersion.account_id, AccessCardVersion.version)
        ):
            by_account[version.account_id].append(version)
    return {account.id: card_on_from(by_account[account.id], account, day) for account in accounts}


def latest(session: Session, account: Account) -> Card:
    """The newest saved card (whatever its date), else the prefill: what a form starts from."""
    found = session.scalars(
        select(AccessCardVersion)
        .where(AccessCardVersion.account_id == account.id)
        .order_by(AccessCardVersion.version.desc())
        .limit(1)
    ).first()
    return Card.from_json(found.card) if found is not None else prefill(account)


# -- writing -------------------------------------------------------------------------------------


def with_corrections(session: Session, account: Account, posted: Card, answers: Sequence[Answer]) -> Card:
    """The card the access step saves: `posted`, with each gate the customer corrected in its
    answer ("That needs correcting: Back gate, code 7781") put right when they left that gate
    on the card as the form showed it. A gate they edited on the card is what they typed, and
    a gate they took off stays off: the card wins.

    "As the form showed it" is against `latest`, the card the form was filled from: sales'
    prefill at first, the customer's saved card when they come back to the step. Against the
    prefill alone, a correction saved on an earlier visit would look like the customer's own
    edit, and a second correction (a mistyped code put right) would never reach the card.
    Only a gate the portal wrote for that promise is replaced: sales' words or the promise's
    answer before this one. A gate the customer typed over it earlier is theirs, so coming
    back to the step without touching it keeps it. Gates are matched by what they say, not
    by their place: the card drops empty rows, so a gate taken off moves the ones after it.

    Call it before the step's answers are recorded: it reads the answers the form showed."""
    corrections = {a.item.id: a.value for a in answers if a.outcome == Outcome.CHANGED.value and a.value}
    if not corrections:
        return posted
    shown = latest(session, account).gates
    before = {state.item.id: state.current_value for state in record.item_states(session, account)}
    gates = list(posted.gates)
    done: set[int] = set()
    for item in _gate_promises(account):
        correction = corrections.get(item.id)
        if correction is None:
            continue
        corrected = _gate_from_words(correction, item.label)
        ours = {_gate_from_words(value, item.label) for value in (item.promised_value, before[item.id])}
        if corrected in gates:
            continue  # the customer put it on the card themselves
        left = next(
            (i for i, gate in enumerate(gates) if i not in done and gate in ours and gate in shown), None
        )
        if left is not None:
            gates[left] = corrected
            done.add(left)
    return replace(posted, gates=tuple(gates))


def agree_gate(
    session: Session, item: PromiseItem, before: str, after: str, effective: date, *, actor: str
) -> AccessCardVersion | None:
    """The office agreed new words for a gate promise after signing ("Back gate, code 9911"):
    the card's gate that said the old words says the new ones from the same date, so the brief
    does not show the technician two codes. None when no gate on the card says the old words
    (the customer's own card wins) or one says the new ones already. The caller commits."""
    account = item.account
    on_day = card_on(session, account, effective)
    old, new = _gate_from_words(before, item.label), _gate_from_words(after, item.label)
    gates = list(on_day.card.gates)
    if new in gates or old not in gates:
        return None
    gates[gates.index(old)] = new
    card = replace(on_day.card, gates=tuple(gates))
    return save(session, account, card, effective, actor=actor, how="the office agreed a new gate")


def save(
    session: Session, account: Account, card: Card, effective: date, *, actor: str, how: str
) -> AccessCardVersion:
    """A new version from `effective`, and its record entry (names of what changed, no codes).
    The caller commits."""
    number = (
        session.scalar(
            select(func.max(AccessCardVersion.version)).where(AccessCardVersion.account_id == account.id)
        )
        or 0
    ) + 1
    changed = changed_fields(latest(session, account), card)
    what = ", ".join(changed) if changed else "no changes"
    entry = record.append(
        session,
        account,
        event="access_card",
        actor=actor,
        note=f"Access card version {number} from {effective.isoformat()} ({how}): {what}",
        details={
            "version": number,
            "effective_date": effective.isoformat(),
            "changed": changed,
            "how": how,
        },
    )
    version = AccessCardVersion(
        account_id=account.id,
        version=number,
        effective_date=effective,
        card=card.to_json(),
        actor=actor,
        record_entry_id=entry.id,
    )
    session.add(version)
    session.flush()
    return version


def record_reveal(session: Session, account: Account, staff: StaffUser, where: str) -> RecordEntry:
    """A staff member asked to see the codes: who, where; never the code. The caller commits."""
    return record.append(
        session,
        account,
        event="access_code_shown",
        actor=f"staff:{staff.id}",
        note=f"Code shown to {staff.display_name} ({where})",
        details={"where": where},
    )


def flag(session: Session, account: Account, staff: StaffUser, what: str) -> RecordEntry:
    """A technician's report from the gate: a record entry, an item in the office inbox, and an
    email asking the customer to update the card. The caller commits."""
    words = FLAGS[what]
    actor = f"staff:{staff.id}"
    entry = record.append(
        session,
        account,
        event="access_flag",
        actor=actor,
        note=f"{words} (reported by {staff.display_name})",
        details={"flag": what},
    )
    follow_ups.raise_follow_up(
        session,
        account,
        FOLLOW_UP_KIND,
        f"{words}: ask the customer to update the access card",
        detail=f"Reported by {staff.display_name} at the visit.",
        key=what,
        actor=actor,
    )
    queue_email(
        session,
        template="access_flag",
        to=account.customer.email,
        subject=f"{get_company().name}: please check your access details",
        context={"account": account, "flag": words, "service_url": links.public_url("welcome.my_service")},
        account=account,
    )
    return entry
