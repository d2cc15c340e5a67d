"""Signing that holds up: the service terms (versioned in Settings), the electronic-records
consent, the signing act and its evidence, the signed PDF kept as signed, its certificate."""

from __future__ import annotations

import hashlib
import io
import re
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from pypdf import PdfReader
from sqlalchemy import select

from portal import agreement, differences, record
from portal.models import Account, OutboxEmail, RecordEntry, ServiceTerms, Signature
from tests.conftest import count_rows, form_fields
from tests.test_welcome import answer_all, complete, invited, open_link  # noqa: F401  (a fixture)

BROWSER = "Mozilla/5.0 (iPhone; CPU iPhone OS 18_0 like Mac OS X) Safari/604.1"
ADDRESS = "203.0.113.7"


def review(client) -> str:  # type: ignore[no-untyped-def]
    assert complete(client, stop_before="/step/review").endswith("/step/review")
    return client.get("/welcome/step/review").get_data(as_text=True)


def sign(client, html: str, **overrides: str):  # type: ignore[no-untyped-def]
    return client.post(
        "/welcome/step/review",
        data=answer_all(html, **overrides),
        headers={"User-Agent": BROWSER},
        environ_base={"REMOTE_ADDR": ADDRESS},
    )


def pdf_text(data: bytes) -> str:
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(data)).pages)


def flat(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def signed(client, db, invited):  # type: ignore[no-untyped-def]
    account, path = invited
    open_link(client, path)
    response = sign(client, review(client))
    assert response.status_code == 302 and response.headers["Location"] == "/welcome/thanks"
    db.expire_all()
    return db.get(Account, account.id)


def test_the_review_step_shows_every_term_and_the_disclosure_each_to_accept(client, db, invited):
    account, path = invited
    open_link(client, path)
    html = review(client)
    for title in ("Skip policy", "Return-trip fee", "Chemicals", "Cancellation"):
        assert f"I accept: {title}" in html
    assert "Service terms" in html and "(version 1)" in html
    assert "paper copy" in html and "withdraw this consent" in html and "PDF" in html
    assert len(set(re.findall(r'name="(term_\d+)"', html))) == 4
    assert 'name="e_records"' in html and "Type your full name" in html
    assert ">Sign</button>" in html


def test_signing_records_the_evidence_and_the_versions_of_the_terms_and_disclosure(client, db, signed):
    account = signed
    entries = record.entries_for(db, account.id)
    entry = next(e for e in entries if e.event == "signed")
    signature = db.scalars(select(Signature)).one()
    details = entry.details
    assert entry.confirmed_value == signature.typed_name == "Dana Reyes"
    assert details["terms_version"] == signature.terms_version == 1
    assert details["terms_accepted"] == ["Skip policy", "Return-trip fee", "Chemicals", "Cancellation"]
    assert details["e_records_version"] == signature.e_records_version == "e-records-1"
    assert details["ip"] == signature.ip_address == ADDRESS
    assert details["user_agent"] == signature.user_agent == BROWSER
    assert details["link_nonce_hash"] == signature.link_nonce_hash == account.link_nonce_hash
    assert details["document_sha256"] == signature.document_sha256
    assert signature.document_sha256 == hashlib.sha256(signature.document.encode()).hexdigest()
    assert details["pdf_sha256"] == signature.pdf_sha256 == hashlib.sha256(signature.pdf).hexdigest()
    assert signature.record_entry_id == entry.id and account.signed_at == signature.signed_at
    # The document signed is the one shown: its agreed values and terms are on the review page.
    assert "Skip policy" in signature.document and account.service_address in signature.document
    # The electronic-records consent comes first, with its disclosure's version and words' hash.
    consent = next(e for e in entries if e.event == "consent_given")
    assert consent.seq < entry.seq
    assert consent.details["consent"] == "e_records" and consent.details["version"] == "e-records-1"
    assert len(consent.details["text_sha256"]) == 64 and consent.details["ip"] == ADDRESS
    assert db.scalars(select(ServiceTerms.version)).all() == [1]  # the version signed is stored
    assert record.verify_chain(db, account.id) is None


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"full_name": ""}, "Type your full name to sign."),
        ({"full_name": "   "}, "Type your full name to sign."),
        ({"term_1": ""}, "Tick the box to accept “Return-trip fee”."),
        ({"e_records": ""}, "Tick the box to receive records electronically."),
        ({"agree": ""}, "Tick the box to agree."),
    ],
)
def test_a_signature_without_the_name_a_term_or_the_consent_is_refused_and_records_nothing(
    client, db, invited, overrides, message
):
    account, path = invited
    open_link(client, path)
    html = review(client)
    before = (count_rows(db, RecordEntry), count_rows(db, OutboxEmail), count_rows(db, Signature))
    response = sign(client, html, **overrides)
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert (count_rows(db, RecordEntry), count_rows(db, OutboxEmail), count_rows(db, Signature)) == before
    db.expire_all()
    assert db.get(Account, account.id).signed_at is None


def test_a_document_other_than_the_one_shown_is_refused_and_records_nothing(client, db, invited):
    account, path = invited
    open_link(client, path)
    html = review(client)
    # The office saves new terms while the customer reads the page.
    assert agreement.save_terms(db, [{"title": "Skip policy", "text": "No skips."}], None) == 2
    db.commit()
    before = (count_rows(db, RecordEntry), count_rows(db, Signature))
    response = sign(client, html)
    assert response.status_code == 400
    page = response.get_data(as_text=True)
    assert "Something in the agreement changed" in page and "No skips." in page
    assert (count_rows(db, RecordEntry), count_rows(db, Signature)) == before
    # A forged hash is refused the same way.
    assert sign(client, page, document_sha256="0" * 64).status_code == 400
    assert (count_rows(db, RecordEntry), count_rows(db, Signature)) == before
    # Signing the page as shown now works, under version 2.
    assert sign(client, page).status_code == 302
    assert db.scalars(select(Signature)).one().terms_version == 2


def settings_form(html: str, terms: str) -> dict[str, str]:
    data = form_fields(html)
    for name in (
        "name",
        "phone",
        "email",
        "office_email",
        "brand_color",
        "currency",
        "sender_name",
        "reply_to",
    ):
        found = re.search(rf'name="{name}"[^>]*value="([^"]*)"', html)
        data[name] = found.group(1) if found else ""
    data["timezone"] = "America/Phoenix"
    data["service_terms"] = terms
    return data


def test_the_pdf_holds_the_agreed_values_terms_and_evidence_and_matches_its_stored_hash(client, db, signed):
    account = signed
    response = client.get("/welcome/service/agreement.pdf")
    assert response.status_code == 200 and response.mimetype == "application/pdf"
    assert "attachment" in response.headers["Content-Disposition"]
    data = response.get_data()
    signature = db.scalars(select(Signature)).one()
    assert data == signature.pdf and hashlib.sha256(data).hexdigest() == signature.pdf_sha256
    text = flat(pdf_text(data))
    for expected in (
        account.customer.name,
        account.service_address,
        "Weekly full service",  # an agreed value: the plan and price
        "Skip policy",
        "Cancellation: Either side may cancel with 30 days' notice",
        "Service terms (version 1)",
        "Electronic records disclosure (e-records-1)",
        "Signed by typing the name: Dana Reyes",
        ADDRESS,
        signature.document_sha256,
    ):
        assert flat(expected) in text, expected
    assert "4412" not in text  # the gate code stays behind the link: the PDF is emailed


def test_the_confirmation_email_carries_the_signed_pdf(app, client, db, runner, signed):
    assert runner.invoke(args=["outbox", "send"]).exit_code == 0
    messages = [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in sorted(Path(app.config["MAIL_OUTBOX_DIR"]).iterdir())
    ]
    confirmation = next(m for m in messages if "your confirmed service" in m["Subject"])
    attachment = next(confirmation.iter_attachments())
    assert attachment.get_filename() == "service-agreement.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == db.scalars(select(Signature)).one().pdf


def test_a_new_terms_version_leaves_the_signed_agreement_unchanged(
    client, db, signed, staff, make_staff, make_account
):
    before = client.get("/welcome/service/agreement.pdf").get_data()
    staff.login(make_staff("admin"))
    html = client.get("/staff/settings").get_data(as_text=True)
    assert "Now in force: version 1" in html
    saved = client.post(
        "/staff/settings", data=settings_form(html, "Skip policy\nWe never skip.\n\nFuel\nA $5 fee.")
    )
    assert saved.status_code == 302
    assert "version 2" in client.get("/staff/settings").get_data(as_text=True)
    assert db.scalars(select(ServiceTerms.version).order_by(ServiceTerms.version)).all() == [1, 2]

    office = client.get(f"/staff/accounts/{signed.id}/agreement.pdf").get_data()
    assert office == before  # the same bytes, years later
    assert "We never skip" not in pdf_text(office)
    certificate = client.get(f"/staff/accounts/{signed.id}/signature").get_data(as_text=True)
    assert "version 1" in certificate and db.scalars(select(Signature)).one().document_sha256 in certificate
    # Saving the same terms again makes no new version.
    html = client.get("/staff/settings").get_data(as_text=True)
    assert (
        client.post(
            "/staff/settings", data=settings_form(html, "Skip policy\nWe never skip.\n\nFuel\nA $5 fee.")
        ).status_code
        == 302
    )
    assert count_rows(db, ServiceTerms) == 2


@pytest.mark.parametrize(
    "terms, message",
    [
        ("Skip policy", "needs its text on the lines under the title"),
        ("Skip\x07policy\nWe skip.", "plain text, without control characters"),
        ("T" * 90 + "\nText.", "Keep each title under 80 characters"),
    ],
)
def test_bad_terms_are_refused_with_a_message_and_nothing_changes(
    client, db, staff, make_staff, terms, message
):
    staff.login(make_staff("admin"))
    html = client.get("/staff/settings").get_data(as_text=True)
    response = client.post("/staff/settings", data=settings_form(html, terms))
    assert response.status_code == 400
    assert message in response.get_data(as_text=True)
    assert count_rows(db, ServiceTerms) == 0


def test_the_certificate_and_pdf_are_for_staff_who_may_see_the_account(client, db, signed, staff, make_staff):
    staff.login(make_staff("sales"))  # not this account's salesperson
    assert client.get(f"/staff/accounts/{signed.id}/signature").status_code == 404
    assert client.get(f"/staff/accounts/{signed.id}/agreement.pdf").status_code == 404
    staff.logout()
    staff.login(make_staff("office"))
    page = client.get(f"/staff/accounts/{signed.id}")
    assert "Signature certificate" in page.get_data(as_text=True)
    certificate = client.get(f"/staff/accounts/{signed.id}/signature").get_data(as_text=True)
    for expected in ("Dana Reyes", ADDRESS, BROWSER, signed.link_nonce_hash, "e-records-1"):
        assert expected in certificate


def test_the_customer_withdraws_the_electronic_records_consent_and_the_office_is_told(client, db, signed):
    page = client.get("/welcome/service").get_data(as_text=True)
    assert "Agreement and consents" in page and "Download my signed agreement (PDF)" in page
    form = form_fields(page.split('id="agreement"')[1])
    before = count_rows(db, RecordEntry)
    response = client.post("/welcome/service/consents/e_records/withdraw", data=form)
    assert response.status_code == 302
    withdrawn = db.scalars(select(RecordEntry).where(RecordEntry.event == "consent_withdrawn")).one()
    assert withdrawn.details["consent"] == "e_records" and withdrawn.actor == "customer"
    assert withdrawn.details["page"] == "welcome/service"
    assert count_rows(db, RecordEntry) == before + 1
    told = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "consent_withdrawn")).all()
    assert len(told) == 1 and "on paper" in told[0].text_body
    assert "We send your records on paper" in client.get("/welcome/service").get_data(as_text=True)
    # The same form again, or a fresh one: nothing more to withdraw, nothing more recorded.
    client.post("/welcome/service/consents/e_records/withdraw", data=form)
    fresh = form_fields(client.get("/welcome/service").get_data(as_text=True).split('id="agreement"')[1])
    client.post("/welcome/service/consents/e_records/withdraw", data={**fresh, "e_records-form_id": "x" * 24})
    assert count_rows(db, RecordEntry) == before + 1
    assert client.post("/welcome/service/consents/nonsense/withdraw", data=form).status_code == 404
    assert record.verify_chain(db, signed.id) is None


def test_an_office_decision_after_signing_is_a_dated_amendment_and_the_pdf_stays_as_signed(
    client, db, invited, make_staff
):
    account, path = invited
    open_link(client, path)
    visit = next(item.id for item in account.items if item.kind == "visit_day")
    location = complete(client, stop_before="/step/schedule")
    html = client.get(location).get_data(as_text=True)
    changed = answer_all(
        html,
        **{
            f"i{visit}_answer": "no",
            f"i{visit}_pref1": "Thursday",
            f"i{visit}_comment": "Home on Thursdays",
        },
    )
    assert client.post(location, data=changed).status_code == 302
    assert sign(client, review(client)).status_code == 302
    signed_pdf = client.get("/welcome/service/agreement.pdf").get_data()
    assert "Thursday" in pdf_text(signed_pdf)

    differences.keep_promise(db, visit, make_staff("office"), "Our route only reaches you on Fridays.")
    db.commit()
    page = client.get("/welcome/service").get_data(as_text=True)
    section = page.split('id="agreement"')[1]
    assert "Changes since you signed" in section and "Friday" in section
    assert "Our route only reaches you on Fridays." in section
    assert client.get("/welcome/service/agreement.pdf").get_data() == signed_pdf
