"""The customer's whole welcome flow in real Chromium at 375 px, with JavaScript on and off:
from the link in the delivered .eml to the thank-you page, like a person taps through it.

Every page on the way must fit the screen, label its fields, group its radios, offer 44 px
targets, show keyboard focus, pass axe-core (WCAG 2.x A/AA), load nothing from another host, and
weigh under 100 KB with its CSS. Screenshots land in tests/artifacts/ (ignored by git)."""

from __future__ import annotations

import email.policy
import hashlib
import io
import re
from collections.abc import Iterator
from email.parser import BytesParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from flask import Flask
from flask.testing import FlaskCliRunner
from playwright.sync_api import Browser, BrowserContext, Page, Request
from pypdf import PdfReader
from sqlalchemy import select
from sqlalchemy.orm import Session

from portal.confirmations import STEP_BY_NAME
from portal.models import Account, PromiseItem, RecordEntry, Signature
from portal.onboarding import send_welcome

from .a11y import Auditor, audit

pytestmark = pytest.mark.browser

WIDTH, HEIGHT = 375, 812
MAX_PAGE_BYTES = 100 * 1024
REASON = "Thursdays suit us better: someone is home to open the side gate."


# -- the email ---------------------------------------------------------------------------------


def welcome_link(db: Session, runner: FlaskCliRunner, app: Flask, account: Account) -> str:
    """Queue the welcome email, deliver the outbox with `flask outbox send`, and read the link
    from the text part of the .eml file it wrote."""
    send_welcome(db, account, "system")
    db.commit()
    result = runner.invoke(args=["outbox", "send"])
    assert result.exit_code == 0, result.output
    assert "Delivered 1," in result.output, result.output
    files = sorted(Path(app.config["MAIL_OUTBOX_DIR"]).glob("*.eml"))
    assert len(files) == 1, files
    with files[0].open("rb") as handle:
        message = BytesParser(policy=email.policy.default).parse(handle)
    assert message["To"] == account.customer.email
    text = message.get_body(preferencelist=("plain",))
    assert text is not None
    links = re.findall(r"https?://\S+/welcome/t/\S+", text.get_content())
    assert len(links) == 1, text.get_content()
    return links[0]


# -- the browser ---------------------------------------------------------------------------------


class Visit:
    """One customer's browser tab: JS on or off, no cache (so every page weight counts its CSS),
    every request recorded, and a check plus a screenshot at each page."""

    def __init__(
        self, browser: Browser, origin: str, label: str, js: bool, artifacts: Path, weights: list[str]
    ) -> None:
        self.origin, self.label, self.js = origin, label, js
        self.artifacts, self.weights = artifacts, weights
        self.context: BrowserContext = browser.new_context(
            viewport={"width": WIDTH, "height": HEIGHT},
            java_script_enabled=js,
            device_scale_factor=1,
            locale="en-US",
        )
        self.context.set_default_timeout(10_000)
        self.requests: list[str] = []
        self.documents: list[list[Request]] = []  # per main-frame navigation: the page and its assets
        self.page: Page = self.context.new_page()
        self.page.on("request", self._record)
        cdp = self.context.new_cdp_session(self.page)
        cdp.send("Network.enable")
        cdp.send("Network.setCacheDisabled", {"cacheDisabled": True})
        # axe-core needs JavaScript; with it off here, it audits a copy in a JS-on context.
        self.audit_context = (
            None
            if js
            else browser.new_context(viewport={"width": WIDTH, "height": HEIGHT}, device_scale_factor=1)
        )
        self.auditor = Auditor(self.audit_context) if self.audit_context else None
        if self.audit_context is not None:
            self.audit_context.on("request", lambda r: self.requests.append(r.url))
        self.shots = 0

    def _record(self, request: Request) -> None:
        self.requests.append(request.url)
        if request.is_navigation_request() and request.frame == self.page.main_frame:
            self.documents.append([request])
        elif self.documents:
            self.documents[-1].append(request)

    def close(self) -> None:
        self.context.close()
        if self.audit_context is not None:
            self.audit_context.close()

    # actions

    def open(self, url: str) -> int:
        response = self.page.goto(url, wait_until="load")
        assert response is not None
        return response.status

    def submit(self, button: str) -> int:
        with self.page.expect_navigation(wait_until="load") as navigation:
            self.page.get_by_role("button", name=button).click()
        response = navigation.value
        assert response is not None
        return response.status

    def group(self, legend: str):  # type: ignore[no-untyped-def]
        return self.page.get_by_role("group", name=legend, exact=True)

    def confirm_rest(self, step: str, items: dict[str, PromiseItem], but: tuple[str, ...] = ()) -> None:
        """Answer "That's right" for every promise on this step except the kinds in `but`."""
        kinds = [kind for kind in STEP_BY_NAME[step].kinds if kind in items and kind not in but]
        assert kinds or but, f"nothing to confirm on {step}"
        for kind in kinds:
            self.group(items[kind].label).get_by_role("radio", name="That's right").check()

    # checks

    def check(self, step: str, status: int = 200) -> None:
        """Screenshot, page weight, then every accessibility and layout check for this page."""
        self.shots += 1
        name = f"{self.label}-{self.shots:02d}-{step}"
        self.page.screenshot(path=str(self.artifacts / f"{name}.png"), full_page=True)
        document, assets = self._weight()
        total = document + assets
        self.weights.append(f"{name:<28} {status:>6} {document:>9} {assets:>7} {total:>8}")
        assert total < MAX_PAGE_BYTES, f"{name}: {total} bytes with its CSS, over 100 KB"
        report = audit(self.page, WIDTH, self.auditor)
        assert report.ok(), f"{name} ({report.url}):\n  " + "\n  ".join(report.problems)
        self.assert_local()

    def _weight(self) -> tuple[int, int]:
        """Bytes transferred (headers and body) for the page's document, and for everything it
        loaded (its stylesheets: app.css and the brand colour)."""
        requests = self.documents[-1]
        sizes = [request.sizes() for request in requests]
        totals = [s["responseHeadersSize"] + s["responseBodySize"] for s in sizes]
        return totals[0], sum(totals[1:])

    def assert_local(self) -> None:
        foreign = [url for url in self.requests if urlsplit(url).netloc != urlsplit(self.origin).netloc]
        assert not foreign, f"requests to another host: {foreign}"


@pytest.fixture
def visit(chromium: Browser, live_server: str, artifacts: Path, page_weights: list[str]) -> Iterator[Any]:
    """Open customer tabs with visit(label, js); all closed (contexts included) afterwards."""
    opened: list[Visit] = []

    def factory(label: str, js: bool) -> Visit:
        tab = Visit(chromium, live_server, label, js, artifacts, page_weights)
        opened.append(tab)
        return tab

    yield factory
    for tab in opened:
        tab.close()


# -- the tests ---------------------------------------------------------------------------------


@pytest.mark.parametrize("js", [True, False], ids=["js", "nojs"])
def test_whole_flow_from_email_to_thanks_at_375px(
    js: bool,
    visit: Any,
    live_server: str,
    app: Flask,
    db: Session,
    runner: FlaskCliRunner,
    make_account: Any,
) -> None:
    account = make_account()
    account_id = account.id
    items = {item.kind: item for item in account.items}
    link = welcome_link(db, runner, app, account)
    assert link.startswith(live_server + "/welcome/t/")
    tab: Visit = visit("js" if js else "nojs", js)
    page = tab.page

    # The link starts a session and redirects: the token leaves the address bar.
    tab.open(link)
    token = link.rsplit("/", 1)[1]
    assert token not in page.url
    assert page.url == f"{live_server}/welcome/step/welcome"
    tab.check("welcome")
    assert tab.submit("Let's start") == 200

    # Schedule: a different day. First without a reason: the error sits next to the field.
    assert page.url.endswith("/welcome/step/schedule")
    tab.check("schedule")
    tab.confirm_rest("schedule", items, but=("visit_day",))  # e.g. the first visit date
    visit_day = tab.group(items["visit_day"].label)
    visit_day.get_by_role("radio", name="I'd like a different day").check()
    preferred = visit_day.get_by_role("group", name="Days that suit you better, in order")
    preferred.get_by_label("1st choice").select_option("Thursday")
    preferred.get_by_label("2nd choice").select_option("Tuesday")
    assert tab.submit("Save and continue") == 400
    tab.check("schedule-error", 400)
    assert page.locator("[role=alert]:not(.error-summary)").count() == 1  # only the missing reason
    comment = tab.group(items["visit_day"].label).get_by_label("Why? (it helps us plan the route)")
    assert comment.get_attribute("aria-invalid") == "true"
    error_id = f"{comment.get_attribute('id')}-error"
    assert error_id in (comment.get_attribute("aria-describedby") or "").split()
    error = page.locator(f"#{error_id}")
    assert error.get_attribute("role") == "alert"
    assert "Tell us briefly why" in error.inner_text()
    assert page.locator(f".field:has(#{comment.get_attribute('id')}) [role=alert]").count() == 1
    visit_day = tab.group(items["visit_day"].label)
    assert visit_day.get_by_role("radio", name="I'd like a different day").is_checked()  # kept
    assert visit_day.get_by_label("1st choice").input_value() == "Thursday"  # kept, in order
    assert visit_day.get_by_label("2nd choice").input_value() == "Tuesday"
    comment.fill(REASON)
    assert tab.submit("Save and continue") == 200

    # Access and safety: both right, plus a note for the technician.
    assert page.url.endswith("/welcome/step/access")
    tab.check("access")
    tab.confirm_rest("access", items)
    page.get_by_label("Notes for the technician (optional)").fill("Friendly dog; please ring first.")
    assert tab.submit("Save and continue") == 200

    # Readiness: sending it unanswered puts an alert inside each question's fieldset.
    assert page.url.endswith("/welcome/step/readiness")
    tab.check("readiness")
    assert tab.submit("Save and continue") == 400
    tab.check("readiness-error", 400)
    questions = page.locator("fieldset.answer")
    assert questions.count() == 3
    for index in range(questions.count()):
        alert = questions.nth(index).locator("[role=alert]")
        assert alert.inner_text().strip() == "Choose Done or Not yet."
        questions.nth(index).get_by_text("Done", exact=True).click()
    assert tab.submit("Save and continue") == 200

    # Contact: by email (ticked already, from the handoff).
    assert page.url.endswith("/welcome/step/contact")
    tab.check("contact")
    channels = tab.group("How may we reach you?")
    assert channels.get_by_role("checkbox", name="Email").is_checked()
    assert not channels.get_by_role("checkbox", name="Text message").is_checked()
    assert tab.submit("Save and continue") == 200

    # Service promises: right.
    assert page.url.endswith("/welcome/step/promises")
    tab.check("promises")
    tab.confirm_rest("promises", items)
    assert tab.submit("Save and continue") == 200

    # Billing: invoices rather than the card autopay sales noted.
    assert page.url.endswith("/welcome/step/billing")
    tab.check("billing")
    tab.confirm_rest("billing", items, but=("billing",))  # the price
    tab.group("How would you like to pay?").get_by_text("Pay each invoice from an email link").click()
    assert tab.submit("Save and continue") == 200

    # Review: the change shows; type the name, tick, sign.
    assert page.url.endswith("/welcome/step/review")
    tab.check("review")
    assert "prefers Thursday, then Tuesday" in page.locator(".summary").inner_text()
    for term in page.get_by_label("I accept:", exact=False).all():
        term.check()
    page.get_by_label("I agree to receive my agreement and other records electronically", exact=False).check()
    page.get_by_label("Type your full name").fill(account.customer.name)
    page.get_by_label("I confirm these details are correct", exact=False).check()
    assert tab.submit("Sign") == 200

    assert page.url.endswith("/welcome/thanks")
    tab.check("thanks")
    heading = page.get_by_role("heading", level=1)
    assert heading.inner_text() == f"Thank you, {account.customer.name}!"

    # The database agrees: signed, and the visit day recorded as a preference for Thursday.
    db.commit()
    db.expire_all()
    signed = db.get(Account, account_id)
    assert signed is not None and signed.signed_at is not None
    assert signed.status == "signed"
    changed = db.scalars(
        select(RecordEntry)
        .join(PromiseItem, RecordEntry.item_id == PromiseItem.id)
        .where(
            RecordEntry.account_id == account_id,
            PromiseItem.kind == "visit_day",
            RecordEntry.outcome == "changed",
        )
    ).all()
    assert [(e.confirmed_value, e.details, e.note, e.actor) for e in changed] == [
        ("prefers Thursday, then Tuesday", {"preferences": ["Thursday", "Tuesday"]}, REASON, "customer")
    ]

    # My service: the signed agreement downloads as the PDF that was stored when signing.
    assert tab.open(f"{live_server}/welcome/service") == 200
    tab.check("service")
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download my signed agreement (PDF)").click()
    download = download_info.value
    assert download.suggested_filename == "service-agreement.pdf"
    pdf = Path(download.path()).read_bytes()
    signature = db.scalars(select(Signature).where(Signature.account_id == account_id)).one()
    assert pdf == signature.pdf and hashlib.sha256(pdf).hexdigest() == signature.pdf_sha256
    text = " ".join(" ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf)).pages).split())
    assert f"Signed by typing the name: {account.customer.name}" in text and "Thursday" in text
    tab.assert_local()


def test_link_token_leaves_the_address_bar(
    visit: Any, live_server: str, app: Flask, db: Session, runner: FlaskCliRunner, make_account: Any
) -> None:
    link = welcome_link(db, runner, app, make_account())
    token = link.rsplit("/", 1)[1]
    tab: Visit = visit("token", True)
    tab.open(link)
    assert token not in tab.page.url
    assert tab.page.url == f"{live_server}/welcome/step/welcome"
    # A tampered link gets the one neutral answer, and that page passes the same checks.
    tampered = token[:10] + ("B" if token[10] != "B" else "C") + token[11:]
    assert tab.open(link.replace(token, tampered)) == 400
    assert tab.page.get_by_role("heading", level=1).inner_text() == "This link no longer works"
    tab.check("link-problem", 400)
