"""Agreements and consents for staff: the stored signed PDF, the signature certificate, and
the consent records (CSV) for a date range."""

from __future__ import annotations

from flask import Response, abort, redirect, render_template, request, url_for
from flask_login import current_user
from werkzeug.wrappers import Response as WerkzeugResponse

from portal import agreement, consents
from portal.access import Action, account_or_404, roles_for
from portal.auth import roles_required
from portal.csv_export import csv_text
from portal.db import get_db
from portal.models import RecordEntry
from portal.staff import bp
from portal.staff.forms import ConsentExportForm


@bp.get("/accounts/<int:account_id>/agreement.pdf")
@roles_required(*roles_for(Action.SEE))
def agreement_pdf(account_id: int) -> Response:
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.SEE)
    signature = agreement.signature_of(session, found.id)
    if signature is None:
        abort(404)
    return agreement.pdf_download(signature)


@bp.get("/accounts/<int:account_id>/signature")
@roles_required(*roles_for(Action.SEE))
def signature_certificate(account_id: int) -> str:
    """Who signed what, when, from where, authenticated how, with the hashes that prove it."""
    session = get_db()
    found = account_or_404(session, account_id, current_user, Action.SEE)
    signature = agreement.signature_of(session, found.id)
    if signature is None:
        abort(404)
    entry = session.get(RecordEntry, signature.record_entry_id)
    return render_template(
        "staff/signature.html",
        account=found,
        signature=signature,
        entry=entry,
        amendments=agreement.amendments(session, found, signature),
    )


@bp.get("/consents")
@roles_required(*roles_for(Action.REPORTS))
def consent_records() -> tuple[str, int] | WerkzeugResponse:
    """Choose a date range; the CSV holds every consent given or withdrawn in it."""
    form = ConsentExportForm(request.args)
    if not request.args:
        return render_template("staff/consents.html", form=form), 200
    if form.validate() and form.start.data and form.end.data:
        return redirect(
            url_for("staff.consent_csv", start=form.start.data.isoformat(), end=form.end.data.isoformat())
        )
    return render_template("staff/consents.html", form=form), 400


@bp.get("/consents.csv")
@roles_required(*roles_for(Action.REPORTS))
def consent_csv() -> Response:
    form = ConsentExportForm(request.args)
    if not form.validate() or form.start.data is None or form.end.data is None:
        errors = "; ".join(error for field in form for error in field.errors)
        return Response(f"{errors}\n", status=400, mimetype="text/plain")
    rows = consents.export_rows(get_db(), current_user, form.start.data, form.end.data)
    response = Response(csv_text(consents.EXPORT_HEADER, rows), mimetype="text/csv")
    name = f"consents-{form.start.data.isoformat()}-to-{form.end.data.isoformat()}.csv"
    response.headers["Content-Disposition"] = f'attachment; filename="{name}"'
    return response
