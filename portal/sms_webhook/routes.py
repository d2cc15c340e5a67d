"""POST /sms/inbound: Twilio's form-encoded `From` and `Body`, signed in `X-Twilio-Signature`
(HMAC-SHA1 of the URL Twilio called and the sorted form fields, under the account's auth token),
checked with the twilio library's RequestValidator before anything is read or written."""

from __future__ import annotations

from flask import Response, current_app, request
from twilio.request_validator import RequestValidator
from twilio.twiml.messaging_response import MessagingResponse

from portal import links, sms
from portal.company import get_company
from portal.db import unit_of_work
from portal.extensions import csrf
from portal.sms_webhook import bp


def _verified() -> bool:
    token = current_app.config.get("TWILIO_AUTH_TOKEN")
    signature = request.headers.get("X-Twilio-Signature", "")
    if not token or not signature:
        return False
    # The address Twilio was given (PUBLIC_BASE_URL), not the one a proxy handed on.
    url = links.public_url("sms_webhook.inbound")
    return bool(RequestValidator(token).validate(url, request.form.to_dict(flat=True), signature))


@bp.post("/sms/inbound")
def inbound() -> tuple[Response, int]:
    if not _verified():
        return Response("Bad signature.\n", mimetype="text/plain"), 403
    sender = (request.form.get("From") or "").strip()
    body = request.form.get("Body") or ""
    with unit_of_work() as session:
        result = sms.handle_inbound(session, sender, body, get_company())
    twiml = MessagingResponse()
    if result.reply:
        twiml.message(result.reply)
    return Response(str(twiml), mimetype="application/xml"), 200


csrf.exempt(inbound)  # signed by Twilio instead; it has no FlaskForm
