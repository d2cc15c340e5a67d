"""Payment pages. Customers: /pay/... (invoices, card, pay links, the demo Checkout). Stripe:
POST /stripe/webhook. Staff: /pay/staff/... (create an invoice).

Customer views take the account from the session (`customer_pay_required`); an invoice id in the
URL that is not that account's is a 404. Paid and card-saved states are never set here: the
return pages from Checkout only show the current state while the webhook confirms it.
"""

from __future__ import annotations

import logging
import secrets
from datetime import timedelta
from typing import Any

from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response

from portal import once, record
from portal.access import Action, account_or_404, allows, roles_for
from portal.auth import roles_required
from portal.company import company_today
from portal.customer_session import customer_pay_required, start_pay
from portal.db import get_db, unit_of_work
from portal.extensions import csrf
from portal.forms import NewLinkForm
from portal.handoffs import staff_actor
from portal.models import Account, Invoice
from portal.payments import adjustments, billing, bp, checkout, demo, plan_billing, statement
from portal.payments import events as stripe_events
from portal.payments import invoices as invoice_service
from portal.payments.forms import MAX_LINES, AdjustForm, DemoForm, InvoiceForm, PromotionForm
from portal.payments.gateway import PaymentProviderError, demo_mode, get_gateway, payments_mode, payments_off

log = logging.getLogger(__name__)


# --- Template helpers (welcome pages, staff account page) ---------------------------------


@bp.app_template_global("payments_panel")
def payments_panel(account: Account) -> billing.PaymentsPanel:
    return billing.panel(get_db(), account, payments_mode())


@bp.app_template_global("payment_form")
def payment_form() -> once.OnceForm:
    """A fresh one-time form for a payment button (its id becomes the idempotency key), also on
    a page re-rendered after another form's POST (whose data it must not pick up)."""
    form = once.OnceForm(formdata=None)
    form.form_id.data = secrets.token_urlsafe(18)
    return form


@bp.app_template_global("staff_payments")
def staff_payments(account: Account) -> dict[str, object]:
    session = get_db()
    today = company_today()
    return {
        "panel": billing.panel(session, account, payments_mode()),
        "invoices": [
            (invoice, billing.shown_status(invoice, today))
            for invoice in billing.invoices_of(session, account.id)
        ],
        "can_invoice": current_user.is_authenticated and allows(current_user, Action.INVOICE),
        "can_adjust": current_user.is_authenticated and allows(current_user, Action.ADJUST_INVOICE),
        "promotions": plan_billing.promotions_of(session, account),
        "promotions_in_sale": plan_billing.promotions_in_sale(account),
    }


# --- Pay links -----------------------------------------------------------------------------


@bp.get("/pay/t/<token>")
def open_pay_link(token: str) -> Response | tuple[str, int]:
    """Check the link, start a session for its account, and drop the token from the address."""
    with unit_of_work() as session:
        check = invoice_service.check_pay_token(session, token)
        if check.ok and check.invoice is not None and check.account is not None:
            record.append(
                session,
                check.account,
                event="pay_link_opened",
                actor="customer",
                details={"invoice_id": check.invoice.id, "number": check.invoice.number},
            )
    if not check.ok or check.invoice is None or check.account is None:
        # Expired, tampered, replaced, other purpose, deleted: one answer for all.
        return render_template("welcome/link_problem.html", form=NewLinkForm()), 400
    start_pay(check.account, check.invoice.id, check.nonce_hash)
    if request.args.get("next") == "card":  # the failed-payment email's "save a new card"
        return redirect(url_for("payments.card"))
    return redirect(url_for("payments.invoice", invoice_id=check.invoice.id))


# --- Invoices ------------------------------------------------------------------------------


def _invoice_or_404(account: Account, invoice_id: int) -> Invoice:
    invoice = invoice_service.customer_invoice(get_db(), account, invoice_id)
    if invoice is None:
        abort(404)
    return invoice


def _render_invoices(account: Account, status: int = 200, error: str | None = None) -> tuple[str, int]:
    """The invoices page: open ones, the balance and its button; after a failed press, with a
    new button (a new idempotency key)."""
    session = get_db()
    today = company_today()
    rows = [
        (invoice, billing.shown_status(invoice, today))
        for invoice in billing.invoices_of(session, account.id)
    ]
    return render_template(
        "payments/invoices.html",
        account=account,
        rows=rows,
        to_pay=[r for r in rows if r[1] in ("open", "overdue", "processing")],
        paid=[r for r in rows if r[1] not in ("open", "overdue", "processing")],
        balance=statement.statement(session, account),
        error=error,
        form=payment_form(),
        panel=billing.panel(session, account, payments_mode()),
    ), status


@bp.get("/pay/invoices")
@customer_pay_required
def invoices(account: Account) -> tuple[str, int]:
    return _render_invoices(account)


@bp.get("/pay/statement")
@customer_pay_required
def statement_page(account: Account) -> str:
    """Every invoice, payment, void and refund with a running balance; prints on paper."""
    return render_template(
        "payments/statement.html",
        account=account,
        balance=statement.statement(get_db(), account),
        today=company_today(),
    )


@bp.post("/pay/balance/checkout")
@customer_pay_required
def pay_balance(account: Account) -> Response | tuple[str, int]:
    if payments_off():
        return _render_invoices(account, 503)
    form = once.OnceForm()
    if not form.validate_on_submit():
        return _render_invoices(account, 400, "That button had expired. Please press it again.")
    try:
        started = checkout.start_balance_payment(get_db(), account, form.submitted_id, get_gateway())
    except checkout.NotPayable as refused:
        return _render_invoices(account, 409, str(refused))
    except PaymentProviderError as error:
        with unit_of_work() as session:
            invoice_service.record_stripe_error(session, account, error)
        return _render_invoices(account, error.http_status, error.message)
    return redirect(started.url, 303)


@bp.get("/pay/balance/done")
@customer_pay_required
def balance_done(account: Account) -> str:
    """Back from Checkout. Only the verified webhook marks the invoices paid; this page says so."""
    return render_template(
        "payments/balance_done.html", account=account, balance=statement.statement(get_db(), account)
    )


def _render_invoice(
    account: Account,
    invoice: Invoice,
    status: int = 200,
    error: str | None = None,
    form: once.OnceForm | None = None,
) -> tuple[str, int]:
    """The invoice page; after a failed press, with a new button (a new idempotency key: Stripe
    replays a declined request's answer to the same key)."""
    session = get_db()
    return render_template(
        "payments/invoice.html",
        account=account,
        invoice=invoice,
        shown=billing.shown_status(invoice),
        error=error,
        form=form or payment_form(),
        panel=billing.panel(session, account, payments_mode()),
    ), status


@bp.get("/pay/invoices/<int:invoice_id>")
@customer_pay_required
def invoice(account: Account, invoice_id: int) -> tuple[str, int]:
    return _render_invoice(account, _invoice_or_404(account, invoice_id))


@bp.post("/pay/invoices/<int:invoice_id>/checkout")
@customer_pay_required
def pay_invoice(account: Account, invoice_id: int) -> Response | tuple[str, int]:
    found = _invoice_or_404(account, invoice_id)
    if payments_off():  # the page offers no button then; a stale one gets the same page
        return _render_invoice(account, found, 503)
    form = once.OnceForm()
    if not form.validate_on_submit():
        return _render_invoice(account, found, 400, "That button had expired. Please press it again.")
    try:
        started = checkout.start_invoice_payment(
            get_db(), account, found.id, form.submitted_id, get_gateway()
        )
    except checkout.NotPayable as refused:
        return _render_invoice(account, _invoice_or_404(account, invoice_id), 409, str(refused))
    except PaymentProviderError as error:
        with unit_of_work() as session:
            invoice_service.record_stripe_error(session, account, error, invoice=found)
        return _render_invoice(
            account, _invoice_or_404(account, invoice_id), error.http_status, error.message
        )
    return redirect(started.url, 303)


@bp.get("/pay/invoices/<int:invoice_id>/done")
@customer_pay_required
def invoice_done(account: Account, invoice_id: int) -> str:
    """Back from Checkout. Only the verified webhook marks the invoice paid; this page says so."""
    found = _invoice_or_404(account, invoice_id)
    return render_template(
        "payments/invoice_done.html", account=account, invoice=found, shown=billing.shown_status(found)
    )


# --- Card on file --------------------------------------------------------------------------


def _render_card(account: Account, status: int = 200, error: str | None = None) -> tuple[str, int]:
    return render_template(
        "payments/card.html",
        account=account,
        error=error,
        form=payment_form(),
        panel=billing.panel(get_db(), account, payments_mode()),
    ), status


@bp.get("/pay/card")
@customer_pay_required
def card(account: Account) -> tuple[str, int]:
    return _render_card(account)


@bp.post("/pay/card/setup")
@customer_pay_required
def card_setup(account: Account) -> Response | tuple[str, int]:
    if payments_off():
        return _render_card(account, 503)
    form = once.OnceForm()
    if not form.validate_on_submit():
        return _render_card(account, 400, "That button had expired. Please press it again.")
    try:
        started = checkout.start_card_setup(get_db(), account, form.submitted_id, get_gateway())
    except PaymentProviderError as error:
        with unit_of_work() as session:
            invoice_service.record_stripe_error(session, account, error)
        return _render_card(account, error.http_status, error.message)
    return redirect(started.url, 303)


@bp.get("/pay/card/done")
@customer_pay_required
def card_done(account: Account) -> str:
    """Back from Checkout: the card shows once the verified webhook has saved it."""
    return render_template(
        "payments/card_done.html", account=account, panel=billing.panel(get_db(), account, payments_mode())
    )


# --- Demo mode Checkout --------------------------------------------------------------------


def _demo_checkout(account: Account, checkout_id: str) -> dict[str, Any]:
    if not demo_mode():  # with Stripe keys, and always in production
        abort(404)
    data = demo.read_checkout(get_db(), account, checkout_id)
    if data is None:
        abort(404)
    return data


@bp.get("/pay/demo/checkout/<checkout_id>")
@customer_pay_required
def demo_checkout(account: Account, checkout_id: str) -> str:
    data = _demo_checkout(account, checkout_id)
    return render_template(
        "payments/demo_checkout.html",
        account=account,
        checkout=data,
        invoice=data.get("invoice"),
        checkout_id=checkout_id,
        form=DemoForm(),
        cancel_url=data["cancel"],
    )


@bp.post("/pay/demo/checkout/<checkout_id>/<any(succeed, decline):action>")
@customer_pay_required
def demo_action(account: Account, checkout_id: str, action: str) -> Response:
    data = _demo_checkout(account, checkout_id)
    if not DemoForm().validate_on_submit():
        abort(400)
    built = demo.success_events(data) if action == "succeed" else demo.decline_events(data)
    for delivery in demo.deliver(built):
        if delivery.status != 200:
            log.error("demo event refused: %s %s", delivery.status, delivery.message)
            abort(500)
    if action == "succeed":
        return redirect(data["success"], 303)
    flash("Demo: the card was declined. Nothing was charged or saved. Try again, or go back.", "error")
    return redirect(url_for("payments.demo_checkout", checkout_id=checkout_id), 303)


# --- Stripe webhook ------------------------------------------------------------------------


@bp.post("/stripe/webhook")
def stripe_webhook() -> tuple[Response, int]:
    """Stripe's events: the raw body, signature-verified; each event applied once."""
    delivery = stripe_events.handle_delivery(
        request.get_data(cache=False), request.headers.get("Stripe-Signature")
    )
    body = (
        {"received": True, "result": delivery.message}
        if delivery.status == 200
        else {"error": delivery.message}
    )
    return jsonify(body), delivery.status


csrf.exempt(stripe_webhook)  # signed by Stripe instead; the only exempt view, and it has no FlaskForm


# --- Staff: create an invoice --------------------------------------------------------------


@bp.route("/pay/staff/accounts/<int:account_id>/invoices/new", methods=["GET", "POST"])
@roles_required(*roles_for(Action.INVOICE))
def staff_new_invoice(account_id: int) -> str | Response | tuple[str, int]:
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.INVOICE)
    today = company_today()
    form = (
        InvoiceForm()
        if request.method == "POST"
        else InvoiceForm.prefilled(invoice_service.plan_line(found, today), today + timedelta(days=14))
    )
    if request.method == "POST" and "add_line" in request.form:
        if len(form.lines) < MAX_LINES:
            form.lines.append_entry()  # no JavaScript needed for more rows
        return render_template("payments/staff_invoice_new.html", form=form, account=found), 200
    if form.validate_on_submit():
        parsed = form.parse(today)
        if parsed is not None:
            with unit_of_work() as session:
                claim = once.claim(session, form.submitted_id, "new_invoice")
                if claim is not None:
                    lines, due = parsed
                    invoice, _ = invoice_service.create_invoice(
                        session,
                        found,
                        lines,
                        due,
                        staff_actor(current_user),
                        autopay_card=invoice_service.autopay_card(session, found),
                    )
                    once.keep_result(session, claim, url_for("staff.account", account_id=found.id))
            if claim is None:
                flash("That invoice was already created.", "info")
                return redirect(
                    once.earlier_result(session, form.submitted_id)
                    or url_for("staff.account", account_id=found.id)
                )
            flash(f"Invoice {invoice.number} created and emailed to {found.customer.email}.", "success")
            return redirect(url_for("staff.account", account_id=found.id))
    status = 400 if request.method == "POST" else 200
    return render_template("payments/staff_invoice_new.html", form=form, account=found), status


# --- Staff: void an unpaid invoice, refund a paid one --------------------------------------


def _staff_invoice_or_404(invoice_id: int) -> tuple[Account, Invoice]:
    """The invoice and its account if the user may adjust it; someone else's is a 404."""
    session = get_db()
    found = session.get(Invoice, invoice_id)
    if found is None:
        abort(404)
    account = account_or_404(session, found.account_id, current_user, Action.ADJUST_INVOICE)
    return account, found


def _render_adjust(
    account: Account,
    invoice: Invoice,
    action: str,
    form: AdjustForm,
    status: int = 200,
    error: str | None = None,
) -> tuple[str, int]:
    return render_template(
        "payments/staff_invoice_adjust.html",
        account=account,
        invoice=invoice,
        action=action,
        form=form,
        error=error,
        shown=billing.shown_status(invoice),
    ), status


@bp.route("/pay/staff/invoices/<int:invoice_id>/<any(void, refund):action>", methods=["GET", "POST"])
@roles_required(*roles_for(Action.ADJUST_INVOICE))
def staff_adjust_invoice(invoice_id: int, action: str) -> Response | tuple[str, int]:
    account, found = _staff_invoice_or_404(invoice_id)
    form = AdjustForm()
    if request.method == "GET":
        return _render_adjust(account, found, action, form)
    if not form.validate_on_submit():
        return _render_adjust(account, found, action, form, 400)
    reason = " ".join((form.reason.data or "").split())
    actor = staff_actor(current_user)
    back = url_for("staff.account", account_id=account.id) + "#payments"
    try:
        if action == "void":
            with unit_of_work() as session:
                done = adjustments.void_invoice(
                    session, account, found.id, reason, actor, form.submitted_id, back
                )
            message = f"{found.number} is void. The customer sees it on their statement."
        else:
            gateway = get_gateway()
            done = adjustments.refund_invoice(
                get_db(), account, found.id, reason, actor, form.submitted_id, back, gateway
            )
            if gateway.demo and done.refund is not None:
                demo.deliver(demo.refund_events(done.refund))
            message = (
                f"Refund of {found.number} asked of Stripe; it shows as refunded once Stripe confirms it."
            )
    except adjustments.NotAdjustable as refused:
        return _render_adjust(account, found, action, form, 409, str(refused))
    except PaymentProviderError as error:
        with unit_of_work() as session:
            invoice_service.record_stripe_error(session, account, error, invoice=found)
        return _render_adjust(
            account, found, action, form, error.http_status, error.details.get("message") or error.message
        )
    if done.repeated:
        flash(f"That was already done for {found.number}.", "info")
    else:
        flash(message, "success")
    return redirect(back)


# --- Staff: confirm a promotion from the sale ----------------------------------------------


@bp.route("/pay/staff/accounts/<int:account_id>/promotions/new", methods=["GET", "POST"])
@roles_required(*roles_for(Action.INVOICE))
def staff_new_promotion(account_id: int) -> str | Response | tuple[str, int]:
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.INVOICE)
    in_sale = plan_billing.promotions_in_sale(found)
    form = (
        PromotionForm()
        if request.method == "POST"
        else PromotionForm(data={"source": next(iter(in_sale), "")})
    )
    if form.validate_on_submit():
        parsed = form.parse(company_today())
        if parsed is not None:
            month, amount = parsed
            try:
                with unit_of_work() as session:
                    claim = once.claim(session, form.submitted_id, "new_promotion")
                    if claim is not None:
                        plan_billing.confirm_promotion(
                            session,
                            found,
                            month=month,
                            amount_cents=amount,
                            code=(form.code.data or "").strip().upper(),
                            source_text=(form.source.data or "").strip(),
                            actor=staff_actor(current_user),
                            staff_id=current_user.id,
                        )
                        once.keep_result(session, claim, url_for("staff.account", account_id=found.id))
            except plan_billing.PromotionTaken:
                form.code.errors = [f"That code is confirmed for {month:%B %Y} already."]
            else:
                if claim is None:
                    flash("That promotion was already confirmed.", "info")
                else:
                    flash(f"Promotion confirmed: it comes off the {month:%B %Y} plan invoice.", "success")
                return redirect(url_for("staff.account", account_id=found.id) + "#payments")
    status = 400 if request.method == "POST" else 200
    return render_template(
        "payments/staff_promotion_new.html", form=form, account=found, in_sale=in_sale
    ), status
