"""The welcome portal through the test client: links, customer sessions, every step, signing."""

from __future__ import annotations

import base64
import json
import re
import time
from datetime import date, timedelta

import pytest
from itsdangerous import URLSafeTimedSerializer
from sqlalchemy import select

from portal import links, record
from portal.handoffs import OnboardingSigned
from portal.models import Account, AccountStatus, FormSubmission, OutboxEmail, RecordEntry
from portal.onboarding import send_welcome
from tests.conftest import count_rows, form_fields


def token_of(url: str) -> str:
    return url.rsplit("/welcome/t/", 1)[1]


@pytest.fixture
def invited(db, make_account):
    """An account whose welcome link has been sent; returns (account, link path)."""
    account = make_account()
    sent = send_welcome(db, account, "system")
    db.commit()
    return account, "/welcome/t/" + token_of(sent.url)


def open_link(client, path):
    response = client.get(path)
    assert response.status_code == 302, response.get_data(as_text=True)
    return response


def answer_all(html: str, **overrides: str) -> dict[str, object]:
    """Fill a step the way a customer confirming everything would."""
    data: dict[str, object] = form_fields(html)
    for name in set(re.findall(r'name="(i\d+_answer)"', html)):
        data[name] = "yes"
    for name in set(re.findall(r'name="(i\d+_choice)"', html)):
        data[name] = "Card autopay"
    for name in set(re.findall(r'name="(r\d+)"', html)):
        data[name] = "done"
    if 'name="channels"' in html:
        data["channels"] = "email"
    if 'name="full_name"' in html:
        data.update(full_name="Dana Reyes", agree="y", e_records="y")
        data.update({name: "y" for name in re.findall(r'name="(term_\d+)"', html)})
    data.update(overrides)
    return data


def item_id(account: Account, kind: str) -> int:
    return next(item.id for item in account.items if item.kind == kind)


def complete(client, stop_before: str | None = None) -> str:
    """Walk the steps from the first unfinished one; return the last location."""
    location = client.get("/welcome/").headers["Location"]
    for _ in range(10):
        if "/step/" not in location or (stop_before and location.endswith(stop_before)):
            return location
        html = client.get(location).get_data(as_text=True)
        response = client.post(location, data=answer_all(html))
        assert response.status_code == 302, response.get_data(as_text=True)
        location = response.headers["Location"]
    return location


# --- Links -----------------------------------------------------------------------------


def test_opening_the_link_starts_a_session_and_drops_the_token_from_the_address(client, db, invited):
    account, path = invited
    response = open_link(client, path)
    assert response.headers["Location"] == "/welcome/"
    assert response.headers["Referrer-Policy"] in {"no-referrer", "same-origin"}
    step = client.get("/welcome/")
    assert step.headers["Location"] == "/welcome/step/welcome"
    page = client.get("/welcome/step/welcome")
    assert page.status_code == 200 and "Dana Reyes" in page.get_data(as_text=True)
    assert token_of(path) not in page.get_data(as_text=True)
    db.expire_all()
    opened = db.get(Account, account.id)
    assert opened.status == "opened" and opened.link_opened_at is not None
    assert "link_opened" in [e.event for e in record.entries_for(db, account.id)]


def test_link_payload_carries_nothing_personal_and_the_nonce_is_stored_hashed(db, invited):
    account, path = invited
    payload_part = token_of(path).split(".")[0]
    payload = json.loads(base64.urlsafe_b64decode(payload_part + "=" * (-len(payload_part) % 4)))
    assert set(payload) == {"a", "n"} and payload["a"] == account.id
    text = json.dumps(payload)
    assert "dana" not in text.lower() and "reyes" not in text.lower() and "@" not in text
    db.refresh(account)
    assert account.link_nonce_hash == links.hash_nonce(payload["n"]) != payload["n"]


def _refusal(client, path):
    response = client.get(path)
    return response.status_code, response.get_data(as_text=True)


def test_tampered_wrong_purpose_revoked_and_deleted_links_are_refused_alike(app, client, db, invited):
    account, path = invited
    token = token_of(path)
    tampered = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    with app.app_context():
        nonce = json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==="))["n"]
        pay_token = links.make_token(account, nonce, purpose="pay")
    answers = [_refusal(client, f"/welcome/t/{tampered}"), _refusal(client, f"/welcome/t/{pay_token}")]
    db.get(Account, account.id).deleted_at = account.created_at
    db.commit()
    answers.append(_refusal(client, path))
    statuses = {status for status, _ in answers}
    bodies = {re.sub(r'value="[^"]*"', "", body) for _, body in answers}  # one-time form ids differ
    assert statuses == {400} and len(bodies) == 1
    assert "Email me a new link" in answers[0][1]
    assert "Dana" not in answers[0][1]
    with client.session_transaction() as session:
        assert "customer" not in session


def test_expired_link_gets_the_friendly_page_and_no_data(app, client, db, invited, monkeypatch):
    _, path = invited
    real_time = time.time
    monkeypatch.setattr("itsdangerous.timed.time.time", lambda: real_time() + 15 * 86400)
    status, body = _refusal(client, path)
    assert status == 400 and "Email me a new link" in body and "1820 W Palm" not in body


def test_link_signed_with_a_fallback_key_still_opens_and_an_unknown_key_does_not(app, client, db, invited):
    account, path = invited
    nonce = json.loads(base64.urlsafe_b64decode(token_of(path).split(".")[0] + "==="))["n"]
    old = URLSafeTimedSerializer("old-key", salt=links.SALTS["welcome"]).dumps({"a": account.id, "n": nonce})
    assert client.get(f"/welcome/t/{old}").status_code == 400
    app.config["SECRET_KEY_FALLBACKS"] = ["old-key"]
    assert client.get(f"/welcome/t/{old}").status_code == 302


def test_resending_revokes_the_old_link_and_its_session(client, db, invited):
    account, path = invited
    open_link(client, path)
    assert client.get("/welcome/step/welcome").status_code == 200
    sent = send_welcome(db, db.get(Account, account.id), "staff:1")
    db.commit()
    assert client.get("/welcome/step/welcome").headers["Location"] == "/welcome/session-ended"
    assert client.get(path).status_code == 400
    assert open_link(client, "/welcome/t/" + token_of(sent.url))


def test_customer_session_idles_out(app, client, invited, monkeypatch):
    _, path = invited
    open_link(client, path)
    real_time = time.time
    monkeypatch.setattr("portal.customer_session.time.time", lambda: real_time() + 13 * 3600)
    response = client.get("/welcome/step/welcome")
    assert response.headers["Location"] == "/welcome/session-ended"


def test_customer_session_stays_alive_while_used(app, client, invited, monkeypatch):
    _, path = invited
    open_link(client, path)
    real_time = time.time
    for hours in (11, 22, 33):  # each visit within the 12 idle hours of the one before
        monkeypatch.setattr("portal.customer_session.time.time", lambda h=hours: real_time() + h * 3600)
        assert client.get("/welcome/step/welcome").status_code == 200
    monkeypatch.setattr("portal.customer_session.time.time", lambda: real_time() + 46 * 3600)
    assert client.get("/welcome/step/welcome").headers["Location"] == "/welcome/session-ended"


def test_customer_session_cookie_is_not_reissued_on_every_click(client, invited):
    _, path = invited
    open_link(client, path)
    client.get("/welcome/step/welcome")  # the first form page adds the CSRF secret
    response = client.get("/welcome/step/schedule")
    assert response.status_code == 200 and "Set-Cookie" not in response.headers


def test_the_welcome_step_shows_the_account_and_progress(client, invited):
    account, path = invited
    open_link(client, path)
    response = client.get("/welcome/step/welcome")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    assert account.customer.name in page and account.service_address in page
    assert account.first_visit is not None and account.first_visit.strftime("%Y") in page
    assert "form_id" in form_fields(page)
    assert 'aria-current="step"' in page and "(done)" not in page
    # The step's progress follows the record: after "Let's start", the welcome step shows done.
    assert client.post("/welcome/step/welcome", data=form_fields(page)).status_code == 302
    again = client.get("/welcome/step/welcome").get_data(as_text=True)
    assert again.count("(done)") == 1 and form_fields(again)["form_id"] != form_fields(page)["form_id"]


def test_each_customers_welcome_page_shows_only_their_own_values_escaped(app, db, make_account):
    first, second = (
        make_account(),
        make_account(
            customer_name='<b>O\'Brien & "Co"</b>',
            service_address="12 <i>Elm</i> St",
            first_visit=date(2027, 3, 4),
        ),
    )
    pages = {}
    for account in (first, second):
        visitor = app.test_client()
        open_link(visitor, "/welcome/t/" + token_of(send_welcome(db, account, "system").url))
        db.commit()
        pages[account.id] = visitor.get("/welcome/step/welcome").get_data(as_text=True)
        # The page's own CSRF token and form id work: "Let's start" is taken.
        assert visitor.post("/welcome/step/welcome", data=form_fields(pages[account.id])).status_code == 302
    mine, theirs = pages[second.id], pages[first.id]
    assert "&lt;b&gt;O&#39;Brien &amp; &#34;Co&#34;&lt;/b&gt;" in mine and "<b>O'Brien" not in mine
    assert "12 &lt;i&gt;Elm&lt;/i&gt; St" in mine and "Thursday, March 4, 2027" in mine
    assert first.customer.name not in mine and first.service_address not in mine
    assert second.service_address not in theirs and "O&#39;Brien" not in theirs


def test_a_refused_welcome_post_shows_the_page_again_with_its_message_and_records_nothing(
    client, db, invited
):
    account, path = invited
    open_link(client, path)
    fields = form_fields(client.get("/welcome/step/welcome").get_data(as_text=True))
    before = count_rows(db, RecordEntry)
    response = client.post("/welcome/step/welcome", data={**fields, "form_id": ""})
    page = response.get_data(as_text=True)
    assert response.status_code == 400 and "This form is missing its id" in page
    assert account.customer.name in page and account.service_address in page
    assert account.first_visit.strftime("%B") in page and form_fields(page)["form_id"] == ""
    assert "Please check the highlighted" not in page  # nothing on the page is highlighted
    tampered = client.post("/welcome/step/welcome", data={**fields, "form_id": "x<y"})
    assert tampered.status_code == 400
    assert "This form&#39;s id is not valid; reload the page" in tampered.get_data(as_text=True)
    db.expire_all()
    assert count_rows(db, RecordEntry) == before


def test_the_welcome_page_follows_progress_flashes_and_the_company(app, client, db, invited):
    from portal.company import forget_company
    from portal.models import CompanySettings

    _, path = invited
    open_link(client, path)
    page = client.get("/welcome/step/welcome").get_data(as_text=True)
    assert client.post("/welcome/step/welcome", data=form_fields(page)).status_code == 302
    assert client.get("/welcome/step/welcome").get_data(as_text=True).count("(done)") == 1
    db.add(CompanySettings(name="Sunny <Pools>", brand_color="#0b5cab", readiness_checklist=[]))
    db.commit()
    forget_company()
    renamed = client.get("/welcome/step/welcome").get_data(as_text=True)
    assert "Sunny &lt;Pools&gt;" in renamed and "(done)" in renamed
    with client.session_transaction() as session:
        session["_flashes"] = [("info", "A message for this customer alone")]
    flashed = client.get("/welcome/step/welcome").get_data(as_text=True)
    assert "A message for this customer alone" in flashed
    assert "A message for this customer alone" not in client.get("/welcome/step/welcome").get_data(
        as_text=True
    )


def test_a_promise_step_shows_a_question_for_each_of_its_promises(client, invited):
    account, path = invited
    open_link(client, path)
    response = client.get("/welcome/step/schedule")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    for item in account.items:
        if item.kind in ("visit_day", "start_date"):
            assert f'name="i{item.id}_answer"' in page and item.label in page
        else:
            assert f'name="i{item.id}_answer"' not in page


def test_a_refused_schedule_answer_shows_each_message_once_and_records_nothing(client, db, invited):
    account, path = invited
    open_link(client, path)
    visit = item_id(account, "visit_day")
    form = answer_all(
        client.get("/welcome/step/schedule").get_data(as_text=True),
        **{f"i{visit}_answer": "no", f"i{visit}_comment": ""},
    )
    before = count_rows(db, RecordEntry), count_rows(db, FormSubmission)
    response = client.post("/welcome/step/schedule", data=form)
    page = response.get_data(as_text=True)
    assert response.status_code == 400
    assert page.count("Choose at least one day that suits you.") == 1
    db.expire_all()
    assert (count_rows(db, RecordEntry), count_rows(db, FormSubmission)) == before


def test_the_welcome_step_refuses_a_deleted_account_or_a_pay_only_session(app, client, db, invited):
    account, path = invited
    open_link(client, path)
    with client.session_transaction() as session:  # as a pay link leaves it: no welcome nonce
        session["customer"] = {**session["customer"], "n": None, "i": 1, "p": "x"}
    assert client.get("/welcome/step/welcome").headers["Location"] == "/welcome/session-ended"
    open_link(client, path)
    assert client.get("/welcome/step/welcome").status_code == 200
    db.get(Account, account.id).deleted_at = account.created_at
    db.commit()
    response = client.get("/welcome/step/welcome")
    assert response.headers["Location"] == "/welcome/session-ended"
    with client.session_transaction() as session:
        assert "customer" not in session


def test_step_links_follow_the_script_root(client, invited):
    _, path = invited
    open_link(client, path)
    assert 'href="/welcome/step/schedule"' in client.get("/welcome/step/welcome").get_data(as_text=True)
    mounted = client.get("/welcome/step/welcome", environ_overrides={"SCRIPT_NAME": "/portal"})
    assert 'href="/portal/welcome/step/schedule"' in mounted.get_data(as_text=True)


def test_customer_session_never_reaches_staff_pages(client, invited):
    _, path = invited
    open_link(client, path)
    for url in ("/staff/", "/staff/handoffs/new", "/staff/settings", "/staff/accounts/1"):
        response = client.get(url)
        assert response.status_code == 302 and "/staff/login" in response.headers["Location"]


# --- Email me a new link ----------------------------------------------------------------


def test_new_link_answers_the_same_for_known_and_unknown_addresses(client, db, invited):
    account, path = invited
    known = client.post(
        "/welcome/new-link",
        data={
            **form_fields(client.get("/welcome/session-ended").get_data(as_text=True)),
            "email": "DANA@example.com",
        },
    )
    unknown = client.post(
        "/welcome/new-link",
        data={
            **form_fields(client.get("/welcome/session-ended").get_data(as_text=True)),
            "email": "who@example.com",
        },
    )
    assert known.status_code == unknown.status_code == 200
    assert known.get_data(as_text=True) == unknown.get_data(as_text=True)
    emails = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id)).all()
    assert len(emails) == 2 and emails[1].kind == "welcome_resent"
    new_token = emails[1].text_body.split("/welcome/t/")[1].split()[0]
    assert client.get(path).status_code == 400  # the new link replaced the old one
    assert client.get(f"/welcome/t/{new_token}").status_code == 302


def test_new_link_is_rate_limited_per_address_and_per_client(app, client, db, invited):
    app.config.update(NEW_LINK_LIMIT_PER_ADDRESS="2 per hour", NEW_LINK_LIMIT_PER_CLIENT="4 per hour")
    fields = lambda: form_fields(client.get("/welcome/session-ended").get_data(as_text=True))  # noqa: E731
    for _ in range(2):
        assert (
            client.post("/welcome/new-link", data={**fields(), "email": "dana@example.com"}).status_code
            == 200
        )
    assert client.post("/welcome/new-link", data={**fields(), "email": "dana@example.com"}).status_code == 429
    for n in range(2):
        client.post("/welcome/new-link", data={**fields(), "email": f"x{n}@example.com"})
    assert client.post("/welcome/new-link", data={**fields(), "email": "y@example.com"}).status_code == 429
    assert count_rows(db, OutboxEmail) == 1 + 2


def test_new_link_with_a_bad_address_is_refused_and_sends_nothing(client, db, invited):
    response = client.post(
        "/welcome/new-link",
        data={**form_fields(client.get("/welcome/session-ended").get_data(as_text=True)), "email": "nope"},
    )
    assert response.status_code == 400 and "Enter a valid email address" in response.get_data(as_text=True)
    assert count_rows(db, OutboxEmail) == 1


# --- Steps ------------------------------------------------------------------------------


def test_every_step_records_answers_and_signing_freezes_the_onboarding(client, db, invited):
    account, path = invited
    open_link(client, path)
    visit = item_id(account, "visit_day")
    location = complete(client, stop_before="/step/schedule")
    html = client.get(location).get_data(as_text=True)
    assert "Step 2 of 8" in html
    changed = answer_all(
        html,
        **{
            f"i{visit}_answer": "no",
            f"i{visit}_pref1": "Thursday",
            f"i{visit}_pref2": "Monday",
            f"i{visit}_comment": "Fridays we travel",
        },
    )
    assert client.post(location, data=changed).status_code == 302
    assert complete(client) == "/welcome/thanks"
    page = client.get("/welcome/thanks").get_data(as_text=True)
    assert "Thank you, Dana Reyes!" in page and "This answer waits for our office" in page
    assert "Your service is confirmed" not in page  # not while an answer waits for the office

    db.expire_all()
    account = db.get(Account, account.id)
    assert account.status == AccountStatus.SIGNED.value and account.signed_at
    entries = record.entries_for(db, account.id)
    answers = {e.item_id: e for e in entries if e.event == "answered"}
    assert answers[visit].outcome == "changed"
    assert answers[visit].confirmed_value == "prefers Thursday, then Monday"
    assert answers[visit].details == {"preferences": ["Thursday", "Monday"]}
    assert answers[visit].note == "Fridays we travel" and answers[visit].actor == "customer"
    assert answers[visit].request_id
    assert all(answers[i.id].outcome in ("confirmed", "changed") for i in account.items)
    events = [e.event for e in entries]
    for event in ("started", "readiness", "contact_preferences", "signed"):
        assert event in events
    signed = next(e for e in entries if e.event == "signed")
    assert len(signed.details["summary_sha256"]) == 64 and signed.confirmed_value == "Dana Reyes"
    assert record.verify_chain(db, account.id) is None
    kinds = sorted(e.kind for e in db.scalars(select(OutboxEmail)))
    assert kinds == ["differences_alert", "signed_customer", "welcome"]

    count = count_rows(db, RecordEntry)
    frozen = client.post("/welcome/step/schedule", data=changed)
    assert frozen.status_code == 302 and frozen.headers["Location"] == "/welcome/service"
    assert count_rows(db, RecordEntry) == count


def test_the_confirmation_email_lists_what_was_confirmed_and_changed(client, db, invited):
    account, path = invited
    open_link(client, path)
    gate = item_id(account, "gate_access")
    location = complete(client, stop_before="/step/access")
    html = client.get(location).get_data(as_text=True)
    client.post(
        location,
        data=answer_all(html, **{f"i{gate}_answer": "no", f"i{gate}_value": "Front gate, code 7788"}),
    )
    complete(client)
    email = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "signed_customer")).one()
    assert "Access details: noted" in email.text_body and "changed" in email.text_body
    assert "Salt cell check before summer" in email.html_body
    alert = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "differences_alert")).one()
    assert alert.to_address == account.salesperson.email
    assert "Access details" in alert.text_body
    # Codes stay behind the links: the customer's service page, the office's account page.
    for mail in (email, alert):
        for body in (mail.text_body, mail.html_body):
            assert "4412" not in body and "7788" not in body
    assert "http://localhost/welcome/service" in email.text_body
    assert f"http://localhost/staff/accounts/{account.id}" in alert.text_body


@pytest.mark.parametrize(
    "kind, fields, message",
    [
        ("visit_day", {"answer": "no"}, "Choose at least one day"),
        ("visit_day", {"answer": "no", "pref1": "Monday"}, "Tell us briefly why"),
        ("visit_day", {"answer": ""}, "Choose \u201cThat&#39;s right\u201d"),
        ("start_date", {"answer": "no", "date": "2020-01-01", "comment": "x"}, "Choose a date from today on"),
        ("start_date", {"answer": "no", "date": "soon", "comment": "x"}, "Choose a date, e.g."),
    ],
)
def test_bad_schedule_answers_are_refused_next_to_the_field_and_write_nothing(
    client, db, invited, kind, fields, message
):
    account, path = invited
    open_link(client, path)
    target = item_id(account, kind)
    location = complete(client, stop_before="/step/schedule")
    html = client.get(location).get_data(as_text=True)
    before = count_rows(db, RecordEntry)
    data = answer_all(html, **{f"i{target}_{name}": value for name, value in fields.items()})
    response = client.post(location, data=data)
    assert response.status_code == 400
    body = response.get_data(as_text=True)
    assert message in body and 'role="alert"' in body
    assert count_rows(db, RecordEntry) == before


def test_disputing_a_promise_needs_a_comment(client, db, invited):
    account, path = invited
    open_link(client, path)
    equipment = item_id(account, "equipment")
    location = complete(client, stop_before="/step/promises")
    html = client.get(location).get_data(as_text=True)
    before = count_rows(db, RecordEntry)
    refused = client.post(location, data=answer_all(html, **{f"i{equipment}_answer": "no"}))
    assert refused.status_code == 400 and "Tell us what you were told" in refused.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before
    accepted = client.post(
        location,
        data=answer_all(
            html,
            **{f"i{equipment}_answer": "no", f"i{equipment}_comment": "Salt cell replacement, not a check"},
        ),
    )
    assert accepted.status_code == 302
    state = {s.item.id: s for s in record.item_states(db, db.get(Account, account.id))}[equipment]
    assert state.outcome == "disputed" and state.latest.note == "Salt cell replacement, not a check"


def test_contact_step_records_text_consent_explicitly(client, db, invited):
    account, path = invited
    open_link(client, path)
    location = complete(client, stop_before="/step/contact")
    html = client.get(location).get_data(as_text=True)
    before = count_rows(db, RecordEntry)
    no_consent = client.post(
        location, data=answer_all(html, channels=["email", "text"], phone="+1 480 555 0134")
    )
    assert no_consent.status_code == 400 and "Tick the box to agree to service texts" in no_consent.get_data(
        as_text=True
    )
    nothing = client.post(location, data={**form_fields(html)})
    assert nothing.status_code == 400 and "Choose at least one way" in nothing.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before
    ok = client.post(
        location,
        data=answer_all(
            html,
            channels=["email", "text"],
            phone="+1 480 555 0134",
            sms_service="y",
            preferred_times="evenings",
        ),
    )
    assert ok.status_code == 302
    consent = db.scalars(select(RecordEntry).where(RecordEntry.event == "consent_given")).one()
    assert consent.confirmed_value == "+14805550134" and consent.details["consent"] == "sms_service"


def test_readiness_needs_every_item_answered(client, db, invited):
    _, path = invited
    open_link(client, path)
    location = complete(client, stop_before="/step/readiness")
    html = client.get(location).get_data(as_text=True)
    data = answer_all(html)
    data.pop("r1")
    before = count_rows(db, RecordEntry)
    response = client.post(location, data=data)
    assert response.status_code == 400 and "Choose Done or Not yet." in response.get_data(as_text=True)
    assert count_rows(db, RecordEntry) == before


def test_signing_needs_every_step_a_name_and_consent(client, db, invited):
    account, path = invited
    open_link(client, path)
    html = client.get("/welcome/step/review").get_data(as_text=True)
    assert "Still to do before you sign" in html
    early = client.post("/welcome/step/review", data=answer_all(html))
    assert early.status_code == 400 and "finish the steps" in early.get_data(as_text=True)
    complete(client, stop_before="/step/review")
    html = client.get("/welcome/step/review").get_data(as_text=True)
    unticked = client.post("/welcome/step/review", data=answer_all(html, agree=""))
    assert unticked.status_code == 400 and "Tick the box to agree." in unticked.get_data(as_text=True)
    db.expire_all()
    assert db.get(Account, account.id).signed_at is None


def test_double_submit_takes_effect_once_and_two_tabs_leave_the_latest_answer(client, db, invited):
    account, path = invited
    open_link(client, path)
    visit = item_id(account, "visit_day")
    location = complete(client, stop_before="/step/schedule")
    tab_one = client.get(location).get_data(as_text=True)
    tab_two = client.get(location).get_data(as_text=True)
    first = answer_all(
        tab_one, **{f"i{visit}_answer": "no", f"i{visit}_pref1": "Monday", f"i{visit}_comment": "work"}
    )
    client.post(location, data=first)
    client.post(location, data=first)  # the double click
    answered = [e for e in record.entries_for(db, account.id) if e.item_id == visit and e.event == "answered"]
    assert len(answered) == 1
    client.post(location, data=answer_all(tab_two))  # the other tab confirms Friday after all
    answered = [e for e in record.entries_for(db, account.id) if e.item_id == visit and e.event == "answered"]
    assert [e.outcome for e in answered] == ["changed", "confirmed"]
    state = {s.item.id: s for s in record.item_states(db, db.get(Account, account.id))}[visit]
    assert state.outcome == "confirmed" and state.current_value == "Friday"


def test_two_customers_with_the_same_promises_each_see_only_their_own_answers(app, db, make_account):
    """Step forms of the same shape (same kinds and labels) on two accounts: each customer's
    page names their own promises and shows only their own answers."""
    pages = {}
    for name in ("first", "second"):
        account = make_account()
        sent = send_welcome(db, account, "system")
        db.commit()
        browser = app.test_client()
        open_link(browser, "/welcome/t/" + token_of(sent.url))
        complete(browser, stop_before="/step/schedule")
        pages[name] = (account, browser)
    first, first_browser = pages["first"]
    second, second_browser = pages["second"]
    visit = item_id(first, "visit_day")
    html = first_browser.get("/welcome/step/schedule").get_data(as_text=True)
    answers = answer_all(
        html,
        **{
            f"i{visit}_answer": "no",
            f"i{visit}_pref1": "Tuesday",
            f"i{visit}_comment": "Gate is locked Fridays",
        },
    )
    assert first_browser.post("/welcome/step/schedule", data=answers).status_code == 302

    mine = first_browser.get("/welcome/step/schedule").get_data(as_text=True)
    theirs = second_browser.get("/welcome/step/schedule").get_data(as_text=True)
    assert "Gate is locked Fridays" in mine and re.search(r'selected[^>]*value="Tuesday"', mine)
    assert "Gate is locked Fridays" not in theirs and not re.search(r"selected[^>]*value=", theirs)
    other = item_id(second, "visit_day")
    assert f'name="i{other}_answer"' in theirs and f'name="i{visit}_answer"' not in theirs
    assert f'name="i{visit}_answer"' in mine and f'name="i{other}_answer"' not in mine


def test_going_back_shows_previous_answers_and_resume_on_another_device(app, client, db, invited):
    account, path = invited
    open_link(client, path)
    location = complete(client, stop_before="/step/readiness")
    schedule = client.get("/welcome/step/schedule").get_data(as_text=True)
    assert re.search(r'checked[^>]*value="yes"|value="yes"[^>]*checked', schedule)
    other_device = app.test_client()
    assert other_device.get(path).status_code == 302
    assert other_device.get("/welcome/").headers["Location"] == location


def test_technician_note_and_corrections_are_escaped_in_pages_and_email(client, db, invited):
    account, path = invited
    open_link(client, path)
    safety = item_id(account, "safety")
    location = complete(client, stop_before="/step/access")
    html = client.get(location).get_data(as_text=True)
    evil = "<script>alert(1)</script>"
    client.post(
        location,
        data=answer_all(html, technician_note=evil, **{f"i{safety}_answer": "no", f"i{safety}_value": evil}),
    )
    review = client.get("/welcome/step/review").get_data(as_text=True)
    assert evil not in review and "&lt;script&gt;alert(1)&lt;/script&gt;" in review
    complete(client)
    email = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "signed_customer")).one()
    assert evil not in email.html_body and "&lt;script&gt;" in email.html_body
    assert evil in email.text_body  # plain text shows it as the text it is


# --- After signing ----------------------------------------------------------------------


def test_my_service_shows_the_next_visit_calendar_and_takes_change_requests(client, db, invited, app):
    account, path = invited
    open_link(client, path)
    complete(client)
    page = client.get("/welcome/service").get_data(as_text=True)
    assert "Next visit:" in page and "every Friday" in page
    ics = client.get("/welcome/service/visit.ics")
    body = ics.get_data(as_text=True)
    assert ics.mimetype == "text/calendar" and "RRULE:FREQ=WEEKLY;BYDAY=FR" in body
    first, weekly = (
        date(int(d[:4]), int(d[4:6]), int(d[6:])) for d in re.findall(r"DTSTART;VALUE=DATE:(\d{8})", body)
    )
    assert first == account.first_visit  # the first visit is a visit, whatever its weekday
    assert weekly.weekday() == 4 and first < weekly <= first + timedelta(days=7)

    form = form_fields(page.split('id="change"', 1)[1])
    before = count_rows(db, RecordEntry)
    bad = client.post("/welcome/service/change", data={**form, "item": "other", "details": ""})
    assert bad.status_code == 400 and count_rows(db, RecordEntry) == before
    ok = client.post(
        "/welcome/service/change",
        data={**form, "item": str(item_id(account, "visit_day")), "details": "Tuesdays from March"},
    )
    assert ok.status_code == 302
    change = db.scalars(select(RecordEntry).where(RecordEntry.event == "change_requested")).one()
    assert change.note == "Tuesdays from March" and change.actor == "customer"


def test_change_request_emails_the_office(client, db, invited):
    from portal.models import CompanySettings

    db.add(
        CompanySettings(name="Blue Lagoon", office_email="office@example.com", readiness_checklist=["Dog in"])
    )
    db.commit()
    account, path = invited
    open_link(client, path)
    complete(client)
    page = client.get("/welcome/service").get_data(as_text=True)
    client.post(
        "/welcome/service/change",
        data={
            **form_fields(page.split('id="change"', 1)[1]),
            "item": "other",
            "details": "New gate code soon",
        },
    )
    note = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "change_request")).one()
    assert note.to_address == "office@example.com" and "New gate code soon" in note.text_body


# --- One customer, another's pages --------------------------------------------------------

CUSTOMER_GET_ROUTES = [
    "/welcome/",
    "/welcome/step/welcome",
    "/welcome/step/schedule",
    "/welcome/step/review",
    "/welcome/thanks",
    "/welcome/service",
    "/welcome/service/visit.ics",
]


def test_a_customer_session_shows_only_its_own_account(client, db, make_account, app):
    first = make_account(customer_name="Ann First", customer_email="ann@example.com")
    second = make_account(
        customer_name="Bob Second", customer_email="bob@example.com", service_address="9 Elm St, Mesa, AZ"
    )
    links_by_account = {}
    for account in (first, second):
        links_by_account[account.id] = "/welcome/t/" + token_of(send_welcome(db, account, "system").url)
    db.commit()
    open_link(client, links_by_account[first.id])
    for url in CUSTOMER_GET_ROUTES:
        page = client.get(url, follow_redirects=True).get_data(as_text=True)
        assert "Bob Second" not in page and "9 Elm St" not in page, url
    # Answering with the other account's promise ids touches nothing of theirs.
    other_items = [item.id for item in second.items]
    location = complete(client, stop_before="/step/schedule")
    html = client.get(location).get_data(as_text=True)
    data = answer_all(html, **{f"i{i}_answer": "no" for i in other_items})
    client.post(location, data=data)
    assert all(e.actor != "customer" for e in record.entries_for(db, second.id))


def test_every_customer_view_takes_its_account_from_the_session(app):
    """A new customer page without the session decorator fails here."""
    public = {
        "welcome.open_link",
        "welcome.session_ended",
        "welcome.new_link",
        "welcome.sign_out",
        "welcome.confirm_email_change",
    }
    for rule in app.url_map.iter_rules():
        if rule.endpoint.startswith("welcome.") and rule.endpoint not in public:
            assert getattr(app.view_functions[rule.endpoint], "customer_only", False), rule.endpoint


# --- Changing the email address on file ---------------------------------------------------


def test_changing_the_email_needs_a_link_sent_to_the_old_address(client, db, invited):
    account, path = invited
    open_link(client, path)
    location = complete(client, stop_before="/step/contact")
    html = client.get(location).get_data(as_text=True)
    response = client.post(location, data=answer_all(html, new_email="Dana.New@Example.com"))
    assert response.status_code == 302
    db.expire_all()
    assert db.get(Account, account.id).customer.email == "dana@example.com"  # not yet
    confirm = db.scalars(select(OutboxEmail).where(OutboxEmail.kind == "email_change_confirm")).one()
    assert confirm.to_address == "dana@example.com" and "dana.new@example.com" in confirm.text_body
    token = confirm.text_body.split("/welcome/email-change/")[1].split()[0]
    assert "dana.new" not in base64.urlsafe_b64decode(token.split(".")[0] + "===").decode()

    assert client.get(f"/welcome/email-change/{token[:-3]}xyz").status_code == 400
    done = client.get(f"/welcome/email-change/{token}")
    assert done.status_code == 200 and "dana.new@example.com" in done.get_data(as_text=True)
    db.expire_all()
    assert db.get(Account, account.id).customer.email == "dana.new@example.com"
    assert client.get(path).status_code == 400  # the old link is revoked
    assert client.get("/welcome/step/welcome").headers["Location"] == "/welcome/session-ended"
    fresh = db.scalars(select(OutboxEmail).order_by(OutboxEmail.id.desc())).first()
    assert fresh.to_address == "dana.new@example.com" and fresh.kind == "welcome_resent"
    assert client.get(f"/welcome/email-change/{token}").status_code == 400  # works once
    events = [e.event for e in record.entries_for(db, account.id)]
    assert "email_change_requested" in events and "email_changed" in events


def test_the_first_answer_moves_the_onboarding_to_in_progress_and_the_account_version(
    client, db, invited, app
):
    account, path = invited
    open_link(client, path)
    db.expire_all()
    opened = db.get(Account, account.id)
    assert opened.status == "opened"
    version = opened.version
    for _ in range(2):  # the second answer finds it in progress already
        form = answer_all(client.get("/welcome/step/schedule").get_data(as_text=True))
        assert client.post("/welcome/step/schedule", data=form).status_code == 302
        db.expire_all()
        answered = db.get(Account, account.id)
        assert (answered.status, answered.version) == ("in_progress", version + 1)


def test_an_answer_keeps_a_loaded_account_current(db, make_account, app):
    from portal import confirmations

    account = make_account()
    send_welcome(db, account, "system")
    db.commit()
    version = account.version
    with app.test_request_context():
        confirmations.record_step_event(db, account, "started")
    assert (account.status, account.version) == ("in_progress", version + 1)
    account.service_address = "2 New Rd"  # a later change through the same object saves
    db.commit()
    db.expire_all()
    assert (db.get(Account, account.id).service_address, db.get(Account, account.id).version) == (
        "2 New Rd",
        version + 2,
    )


def test_a_second_tab_answering_after_signing_is_refused_not_recorded(client, db, invited, app):
    account, path = invited
    open_link(client, path)
    location = complete(client, stop_before="/step/schedule")
    stale_tab = client.get(location).get_data(as_text=True)
    complete(client)  # signed in the other tab
    before = count_rows(db, RecordEntry)
    from portal import confirmations

    with app.test_request_context():
        stale = db.get(Account, account.id)
        stale.status = "in_progress"  # what a request that loaded it before signing would hold
        with pytest.raises(OnboardingSigned):
            confirmations.record_step_event(db, stale, "started")
    db.rollback()
    late = client.post(location, data=answer_all(stale_tab))
    assert late.status_code == 302 and late.headers["Location"] == "/welcome/service"
    assert count_rows(db, RecordEntry) == before
