"""The portal as served in production, plus the reference routes the load benchmark needs.

    gunicorn -c gunicorn.conf.py 'bench.bench_app:create_bench_app()'   (bench/load.py starts it)

- `/bench/hello`: a bare view inside the portal app, so every request-wide hook the portal
  pages pay for (request id, security headers, rate-limit check) is in it too.
- `/bench/peer/accounts/<id>`: the **peer**, the page a user would otherwise write with plain
  Flask, SQLAlchemy's ORM and Flask-WTF (the team's PERFORMANCE.md): its own app, engine and
  session on the portal's database; GET reads one account by key and its items and renders them
  from a Jinja template extending a small layout, with a form; POST validates the form, inserts
  one answer row per item with the ORM, commits and redirects. The portal's load targets are
  ratios to its requests/s measured in the same run (bench/load.py).

The peer owns one table, `bench_peer_answers`, outside the portal's models and migrations:
`create_peer_tables` makes it in a benchmark's (or a test's) database. Nothing here is imported
by the portal itself.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from flask import Flask, abort, redirect, render_template, url_for
from flask_wtf import FlaskForm
from sqlalchemy import (
    DateTime,
    ForeignKey,
    Index,
    String,
    Text,
    create_engine,
    event,
    select,
)
from sqlalchemy.engine import Engine
from sqlalchemy.orm import (
    DeclarativeBase,
    Mapped,
    mapped_column,
    relationship,
    scoped_session,
    sessionmaker,
)
from werkzeug.middleware.dispatcher import DispatcherMiddleware
from werkzeug.wrappers import Response as BaseResponse
from wtforms import RadioField, SelectChoice, StringField
from wtforms.validators import InputRequired, Length, Optional

from portal import create_app

HELLO = "Hello, World!"
PEER_PREFIX = "/bench/peer"
PEER_EXTENSION = "bench.peer"
RECENT_ANSWERS = 13  # with an account's 7 items, the 20 related rows of PERFORMANCE.md


def create_bench_app() -> Flask:
    """The portal configured from the environment, with the benchmark's routes added."""
    app = create_app()
    add_bench_routes(app)
    return app


def add_bench_routes(app: Flask) -> None:
    """The bare route on the portal app, and the peer mounted beside it on the same database."""
    app.add_url_rule("/bench/hello", "bench_hello", lambda: HELLO)
    peer = create_peer(app.config["DATABASE_URL"], app.config["SECRET_KEY"])
    app.extensions[PEER_EXTENSION] = peer
    # Flask's documented way to wrap the WSGI app; mypy sees an assignment to a method.
    app.wsgi_app = DispatcherMiddleware(app.wsgi_app, {PEER_PREFIX: peer})  # type: ignore[method-assign]


# -- the peer: written as the Flask and SQLAlchemy tutorials would have it ----------------------
# Its own mappings of the columns it shows (a user's app would have its own models), read from
# the portal's tables.


class PeerBase(DeclarativeBase):
    pass


class PeerCustomer(PeerBase):
    __tablename__ = "customers"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))


class PeerAccount(PeerBase):
    __tablename__ = "accounts"

    id: Mapped[int] = mapped_column(primary_key=True)
    customer_id: Mapped[int] = mapped_column(ForeignKey("customers.id"))
    service_address: Mapped[str] = mapped_column(String(300))
    plan: Mapped[str] = mapped_column(String(120))
    first_visit: Mapped[date | None]

    customer: Mapped[PeerCustomer] = relationship(lazy="joined")


class PeerItem(PeerBase):
    __tablename__ = "promise_items"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    kind: Mapped[str] = mapped_column(String(20))
    label: Mapped[str] = mapped_column(String(120))
    promised_value: Mapped[str] = mapped_column(Text)
    position: Mapped[int]
    withdrawn_at: Mapped[datetime | None]


class PeerAnswer(PeerBase):
    """The only table the peer writes."""

    __tablename__ = "bench_peer_answers"
    __table_args__ = (Index("ix_bench_peer_answers_account_id", "account_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    item_id: Mapped[int] = mapped_column(ForeignKey("promise_items.id"))
    answer: Mapped[str] = mapped_column(String(10))
    comment: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), default=lambda: datetime.now(timezone.utc)
    )


def create_peer_tables(engine: Engine) -> None:
    """The peer's own table; the tables it reads are the portal's, made by its migrations."""
    PeerBase.metadata.create_all(engine, tables=[PeerBase.metadata.tables[PeerAnswer.__tablename__]])


def drop_peer_tables(engine: Engine) -> None:
    PeerBase.metadata.drop_all(engine, tables=[PeerBase.metadata.tables[PeerAnswer.__tablename__]])


def peer_engine(database_url: str) -> Engine:
    """The engine a careful user would configure: on SQLite the settings the portal runs with
    too (WAL, synchronous=NORMAL, a busy timeout), so the comparison is of the code, not of
    the database's durability settings."""
    if database_url.startswith("postgresql://"):
        database_url = "postgresql+psycopg://" + database_url.removeprefix("postgresql://")
    if not database_url.startswith("sqlite"):
        return create_engine(database_url)
    engine = create_engine(database_url, connect_args={"timeout": 30})

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.execute("PRAGMA journal_mode=WAL")
        dbapi_connection.execute("PRAGMA synchronous=NORMAL")

    return engine


ANSWERS = [SelectChoice("yes", "That's right"), SelectChoice("no", "Something's different")]


class AnswersForm(FlaskForm):
    answer = RadioField("Is all of this right?", choices=ANSWERS, validators=[InputRequired()])
    comment = StringField("Anything different?", validators=[Optional(), Length(max=500)])


def create_peer(database_url: str, secret_key: str) -> Flask:
    """The peer app: one view for the page and its POST, a session per request (removed at
    teardown), CSRF from Flask-WTF."""
    peer = Flask(__name__, template_folder=str(Path(__file__).parent / "templates"))
    # Beside the portal on one host: its own cookie name, or the two sessions would overwrite
    # each other.
    peer.config.update(SECRET_KEY=secret_key, SESSION_COOKIE_NAME="peer_session")
    engine = peer_engine(database_url)
    db = scoped_session(sessionmaker(engine))
    peer.extensions["peer.engine"] = engine

    @peer.teardown_appcontext
    def remove_session(_exc: BaseException | None) -> None:
        db.remove()

    @peer.route("/accounts/<int:account_id>", methods=["GET", "POST"])
    def account_page(account_id: int) -> str | tuple[str, int] | BaseResponse:
        account = db.get(PeerAccount, account_id)
        if account is None:
            abort(404)
        items = list(
            db.scalars(
                select(PeerItem)
                .where(PeerItem.account_id == account.id, PeerItem.withdrawn_at.is_(None))
                .order_by(PeerItem.position)
            )
        )
        form = AnswersForm()
        if form.validate_on_submit():
            db.add_all(
                PeerAnswer(
                    account_id=account.id,
                    item_id=item.id,
                    answer=form.answer.data,
                    comment=form.comment.data or "",
                )
                for item in items
            )
            db.commit()
            return redirect(url_for("account_page", account_id=account.id))
        answers = db.scalars(
            select(PeerAnswer)
            .where(PeerAnswer.account_id == account.id)
            .order_by(PeerAnswer.id.desc())
            .limit(RECENT_ANSWERS)
        ).all()
        page = render_template(
            "peer/account.html",
            account=account,
            items=items,
            form=form,
            answers=answers,
            labels={item.id: item.label for item in items},
        )
        return (page, 400) if form.is_submitted() else page

    return peer
