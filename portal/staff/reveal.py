"""Gate and alarm codes on staff screens: masked until someone asks, and every asking noted.

Each staff page that can show a code (the brief, the account page, the inbox's decision pages,
the handoff and agreed-value forms) has a "Show code" button that POSTs here through
`page_with_codes`: the service record notes who asked and where (access_card.record_reveal),
and the same page comes back once with the codes in clear. Nothing is remembered: the next
visit to the page masks them again. Forms that showed a masked value take the blanks back as
the codes they stand for (secret_codes.restored), so a value can be edited without seeing it.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import flash
from flask_login import current_user

from portal import access_card
from portal.db import unit_of_work
from portal.models import Account
from portal.staff.forms import ShowCodesForm


def page_with_codes(
    account: Account, where: str, render: Callable[[bool], str | tuple[str, int]]
) -> str | tuple[str, int]:
    """`render(codes_shown)` once more, with the codes, after noting the reveal in the record;
    a post without its CSRF token shows the page masked, with a 400 and nothing noted."""
    if not ShowCodesForm().validate_on_submit():
        flash("That did not go through; please try again.", "error")
        page = render(False)
        return (page[0], 400) if isinstance(page, tuple) else (page, 400)
    with unit_of_work() as session:
        access_card.record_reveal(session, account, current_user._get_current_object(), where)
    return render(True)
