"""The raters' web application (FastAPI, server-rendered Jinja2 pages, no build step).

A rater opens ``/r/<token>``: the token is checked against its stored SHA-256 and kept in an HttpOnly,
SameSite cookie, and the browser is sent on to ``/rate``, which always leads to the rater's first unrated video
(so reloading or coming back days later resumes there). ``/item/<id>`` shows one looping video with its prompt,
the criteria as rows of radio buttons and a comment; posting it writes the rating in one transaction and only then
answers with the next page. ``/video/<id>`` serves the blinded file. Every ``<id>`` is the opaque public id of one
of this rater's assignments: any other id, a revoked or unknown token, or no token at all gets the same 404.
Posts carry a CSRF token (an HMAC of the rater's token hash under the study's secret) and, when the browser sends
one, an Origin that must be this server's.
"""
from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from importlib import resources

from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from benchmarks.rating import db
from benchmarks.rating.study import OpenStudy, hash_token

__all__ = ["create_app", "COOKIE", "MAX_BODY"]

COOKIE = "rating_session"
MAX_BODY = 64 * 1024  # bytes: seven scores and a comment fit many times over
STATIC = resources.files("benchmarks.rating") / "static"
SECURITY_HEADERS = {
    "Cache-Control": "no-store",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",  # not "no-referrer": that makes browsers post with "Origin: null"
    "X-Frame-Options": "DENY",
    "Content-Security-Policy": ("default-src 'none'; script-src 'self'; style-src 'self'; media-src 'self'; "
                                "img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
}


@dataclass(frozen=True)
class CriterionView:
    id: int
    key: str
    label: str
    anchor: str
    low: int
    high: int


class _Context:
    """What every request needs, loaded once: sessions, the CSRF secret, criteria, limits, templates."""

    def __init__(self, study: OpenStudy, secure_cookies: bool):
        self.study, self.secure_cookies = study, secure_cookies
        self.sessions = db.sessions(study.engine)  # writers: BEGIN IMMEDIATE on SQLite
        self.readers = db.sessions(db.make_engine(study.engine.url.render_as_string(hide_password=False),
                                                  immediate=False))
        with self.readers() as session:
            record = session.scalar(select(db.Study))
            if record is None:
                raise RuntimeError(f"{study.folder}: the database holds no study (run init first)")
            self.secret = record.secret.encode()
            self.config = json.loads(record.config)
            self.criteria = [CriterionView(c.id, c.key, c.label, c.anchor, c.low, c.high) for c in
                             session.scalars(select(db.Criterion).order_by(db.Criterion.position))]
        self.comment_max = int(self.config.get("comment_max", 2000))
        self.templates = Environment(loader=PackageLoader("benchmarks.rating", "templates"),
                                     autoescape=select_autoescape(default=True))

    def csrf(self, rater: db.Rater) -> str:
        return hmac.new(self.secret, f"csrf:{rater.token_hash}".encode(), hashlib.sha256).hexdigest()

    def page(self, name: str, status: int = 200, **values) -> HTMLResponse:
        html = self.templates.get_template(name).render(instructions=self.config.get("instructions", ""),
                                                        **values)
        return HTMLResponse(html, status_code=status, headers=SECURITY_HEADERS)


def _rater(ctx: _Context, session, request: Request) -> db.Rater | None:
    token = request.cookies.get(COOKIE)
    if not token or len(token) > 100:
        return None
    rater = session.scalar(select(db.Rater).where(db.Rater.token_hash == hash_token(token)))
    return None if rater is None or rater.revoked_at is not None else rater


def _assignment(session, rater: db.Rater, public_id: str) -> db.Assignment | None:
    if len(public_id) > 40:
        return None
    return session.scalar(select(db.Assignment).where(db.Assignment.public_id == public_id,
                                                      db.Assignment.rater_id == rater.id))


def _latest(session, assignment_ids) -> dict[int, db.Rating]:
    """The latest revision of each rated assignment among ``assignment_ids``."""
    latest = (select(db.Rating.assignment_id, func.max(db.Rating.revision).label("revision"))
              .where(db.Rating.assignment_id.in_(assignment_ids)).group_by(db.Rating.assignment_id).subquery())
    rows = session.scalars(select(db.Rating).join(latest, (db.Rating.assignment_id == latest.c.assignment_id)
                                                  & (db.Rating.revision == latest.c.revision)))
    return {r.assignment_id: r for r in rows}


def _progress(session, rater: db.Rater) -> tuple[list[db.Assignment], set[int]]:
    assignments = list(session.scalars(select(db.Assignment).where(db.Assignment.rater_id == rater.id)
                                       .order_by(db.Assignment.position)))
    rated = set(session.scalars(select(db.Rating.assignment_id).distinct()
                                .join(db.Assignment, db.Assignment.id == db.Rating.assignment_id)
                                .where(db.Assignment.rater_id == rater.id)))
    return assignments, rated


class _BlindFile(FileResponse):
    """A file response (with range requests, which video players use) without ETag or Last-Modified: the file's
    time stamp and tag would be the same under two ids of one video (a repeat) and could date a set."""

    def set_stat_headers(self, stat_result) -> None:
        self.headers.setdefault("content-length", str(stat_result.st_size))


def _not_found(ctx: _Context) -> HTMLResponse:
    return ctx.page("invalid.html", status=404)


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers=SECURITY_HEADERS)


def _same_origin(request: Request) -> bool:
    """False when the browser says the post comes from another site (Sec-Fetch-Site, else Origin); clients
    that send neither still need the CSRF token."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    return origin.split("://", 1)[-1] == request.headers.get("host", "")


def _parse(ctx: _Context, form) -> tuple[dict[int, int], str, list[str]]:
    """Scores by criterion id, the comment, and what is wrong with them (empty when valid)."""
    scores, errors = {}, []
    for criterion in ctx.criteria:
        raw = form.get(f"score_{criterion.key}")
        if raw is None or raw == "":
            errors.append(f"{criterion.label}: choose a score")
            continue
        try:
            value = int(str(raw))
        except ValueError:
            value = None
        if value is None or not criterion.low <= value <= criterion.high:
            errors.append(f"{criterion.label}: the score must be a whole number from {criterion.low} to "
                          f"{criterion.high}")
            continue
        scores[criterion.id] = value
    comment = str(form.get("comment") or "").replace("\r\n", "\n").strip()
    if len(comment) > ctx.comment_max:
        errors.append(f"The comment is {len(comment)} characters long; at most {ctx.comment_max} are kept")
    return scores, comment, errors


def _save(ctx: _Context, assignment_id: int, scores: dict[int, int], comment: str) -> int:
    """Write one rating (a new revision) in one transaction; return its revision."""
    for attempt in range(3):
        try:
            with ctx.sessions.begin() as session:
                revision = (session.scalar(select(func.max(db.Rating.revision))
                                           .where(db.Rating.assignment_id == assignment_id)) or 0) + 1
                rating = db.Rating(assignment_id=assignment_id, revision=revision, comment=comment,
                                   created_at=db.now())
                session.add(rating)
                session.flush()
                session.add_all(db.Score(rating_id=rating.id, criterion_id=cid, value=value)
                                for cid, value in scores.items())
            return revision
        except IntegrityError:  # two saves of one video at once (another database than SQLite): number again
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def _item_page(ctx: _Context, session, rater, assignment, status=200, errors=(), chosen=None, comment=None):
    assignments, rated = _progress(session, rater)
    position = assignment.position
    latest = _latest(session, [assignment.id]).get(assignment.id)
    if chosen is None:
        chosen = {s.criterion_id: s.value for s in latest.scores} if latest else {}
    if comment is None:
        comment = latest.comment if latest else ""
    previous = assignments[position - 1].public_id if position > 0 else None
    return ctx.page("item.html", status=status, public_id=assignment.public_id, prompt=assignment.video.prompt,
                    criteria=ctx.criteria, chosen=chosen, comment=comment, errors=list(errors),
                    csrf=ctx.csrf(rater), number=position + 1, total=len(assignments), rated=len(rated),
                    revision=latest.revision if latest else 0, previous=previous, comment_max=ctx.comment_max,
                    percent=round(100 * len(rated) / max(1, len(assignments))))


def create_app(study: OpenStudy, secure_cookies: bool = False) -> FastAPI:
    """The application for ``study``. ``secure_cookies``: mark the session cookie Secure (serving behind TLS)."""
    ctx = _Context(study, secure_cookies)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)

    @app.middleware("http")
    async def limit_body(request: Request, call_next):
        length = request.headers.get("content-length")
        if request.method == "POST" and (length is None or not length.isdigit() or int(length) > MAX_BODY):
            return Response("request body missing or too large", status_code=413, headers=SECURITY_HEADERS)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse)
    def home():
        return _not_found(ctx)

    @app.get("/favicon.ico")
    def favicon():
        return Response(status_code=204)

    @app.get("/static/{name}")
    def static(name: str):
        if name not in ("rate.css", "rate.js"):
            return Response(status_code=404)
        kind = "text/css" if name.endswith(".css") else "text/javascript"
        return Response((STATIC / name).read_bytes(), media_type=kind,
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    @app.get("/r/{token}")
    def land(token: str):
        with ctx.readers() as session:
            rater = None
            if len(token) <= 100:
                rater = session.scalar(select(db.Rater).where(db.Rater.token_hash == hash_token(token)))
            if rater is None or rater.revoked_at is not None:
                return _not_found(ctx)
        response = _redirect("/rate")
        response.set_cookie(COOKIE, token, httponly=True, samesite="lax", secure=ctx.secure_cookies, path="/",
                            max_age=60 * 60 * 24 * 90)
        return response

    @app.get("/rate")
    def next_item(request: Request):
        with ctx.readers() as session:
            rater = _rater(ctx, session, request)
            if rater is None:
                return _not_found(ctx)
            assignments, rated = _progress(session, rater)
            for assignment in assignments:
                if assignment.id not in rated:
                    return _redirect(f"/item/{assignment.public_id}")
        return _redirect("/finish")

    @app.get("/item/{public_id}")
    def item(public_id: str, request: Request):
        with ctx.readers() as session:
            rater = _rater(ctx, session, request)
            assignment = _assignment(session, rater, public_id) if rater else None
            if assignment is None:
                return _not_found(ctx)
            return _item_page(ctx, session, rater, assignment)

    @app.post("/item/{public_id}")
    async def rate(public_id: str, request: Request):
        form = await request.form(max_files=0, max_fields=len(ctx.criteria) + 8)
        return await run_in_threadpool(_rate, public_id, request, form)  # the database work leaves the event loop

    def _rate(public_id: str, request: Request, form):
        with ctx.readers() as session:
            rater = _rater(ctx, session, request)
            assignment = _assignment(session, rater, public_id) if rater else None
            if assignment is None:
                return _not_found(ctx)
            sent = str(form.get("csrf") or "")
            if not hmac.compare_digest(sent, ctx.csrf(rater)) or not _same_origin(request):
                return ctx.page("invalid.html", status=403, reason="This form has expired. Reload the page.")
            scores, comment, errors = _parse(ctx, form)
            if errors:
                chosen = {c.id: form.get(f"score_{c.key}") for c in ctx.criteria}
                chosen = {k: int(v) for k, v in chosen.items() if isinstance(v, str) and v.isdigit()}
                return _item_page(ctx, session, rater, assignment, status=422, errors=errors, chosen=chosen,
                                  comment=comment[:ctx.comment_max])
            assignment_id = assignment.id
        _save(ctx, assignment_id, scores, comment)
        return _redirect("/rate")

    @app.get("/video/{public_id}")
    def video(public_id: str, request: Request):
        with ctx.readers() as session:
            rater = _rater(ctx, session, request)
            assignment = _assignment(session, rater, public_id) if rater else None
            if assignment is None:
                return Response(status_code=404, headers=SECURITY_HEADERS)
            media = study.media / f"{assignment.video.media}.mp4"
        return _BlindFile(media, media_type="video/mp4", headers={
            "Cache-Control": "private, no-store", "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer"})

    @app.get("/finish")
    def finish(request: Request):
        with ctx.sessions.begin() as session:
            rater = _rater(ctx, session, request)
            if rater is None:
                return _not_found(ctx)
            assignments, rated = _progress(session, rater)
            remaining = len(assignments) - len(rated)
            if remaining == 0 and rater.finished_at is None:
                rater.finished_at = db.now()
            last = assignments[-1].public_id if assignments else None
            return ctx.page("finish.html", total=len(assignments), remaining=remaining, last=last)

    return app
