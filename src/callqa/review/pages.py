"""HTML of the review app: log-in, the queue and the call page (server-rendered, no network).

The call page is the per-call report's pieces (`qa/report.py`: header, player, figures, seekable
transcript with highlighted evidence) plus a review form per check. Every value from the
database is escaped; forms carry the session's CSRF token.
"""

from __future__ import annotations

import json
from urllib.parse import urlencode

from callqa.qa.pages import CSS, REPORT_JS, esc
from callqa.qa.report import (
    audio_section_html,
    evidence_link,
    figure_html,
    header_html,
    player_html,
    transcript_html,
)
from callqa.review.models import CheckVerdict, Review, ScoredCall
from callqa.review.store import ORDERS, QueuePage
from callqa.schemas import CHECK_IDS, Evidence, QAResult

REVIEW_CSS = """
nav.top{display:flex;gap:14px;align-items:center;padding:8px 0;border-bottom:1px solid #ddd}
nav.top .who{margin-left:auto}nav.top form{display:inline}
form.filters{display:flex;flex-wrap:wrap;gap:8px 14px;align-items:end;margin:12px 0}
form.filters label{display:flex;flex-direction:column;font-size:12px;color:#555}
.queue td,.queue th{font-size:13px}.pager{margin:10px 0;display:flex;gap:12px}
tr.rcheck.current td{outline:2px solid #0b57d0;outline-offset:-2px}
.answers button{margin:0 2px;padding:2px 8px;border:1px solid #999;border-radius:4px;
 background:#f7f7f7;cursor:pointer}
.answers button.chosen{background:#0b57d0;color:#fff;border-color:#0b57d0}
.answers input[name=comment]{width:160px}
.human.agree{color:#1b5e20}.human.disagree{color:#b71c1c}.human.na{color:#555}
.corrected{background:#e8f0fe;border-bottom:1px dashed #0b57d0}
.keys kbd{border:1px solid #bbb;border-radius:3px;padding:0 4px;font-size:11px;background:#f7f7f7}
.login{max-width:320px;margin:80px auto}.login input{display:block;width:100%;margin:4px 0 10px}
.error{color:#b71c1c}
"""
ANSWER_LABELS = {"agree": "Agree", "disagree": "Disagree", "na": "N/A"}


def frame(title: str, body: str, user: str | None = None, csrf: str = "") -> str:
    """A whole page: the report's CSS and seek script, the review script, a top bar."""
    nav = ""
    if user:
        nav = (
            '<nav class="top"><a href="/review/">Queue</a>'
            f'<span class="who muted">{esc(user)}</span>'
            f'<form method="post" action="/review/logout"><input type="hidden" name="csrf" '
            f'value="{esc(csrf)}"><button type="submit">Log out</button></form></nav>'
        )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{esc(title)}</title><style>{CSS}{REVIEW_CSS}</style></head>"
        f"<body>\n{nav}{body}\n<script>{REPORT_JS}</script>"
        '<script src="/review/static/review.js"></script></body></html>\n'
    )


def login_page(csrf: str, next_url: str, failed: bool = False) -> str:
    error = '<p class="error">Wrong user name or password.</p>' if failed else ""
    body = (
        '<div class="login"><h1>callqa review</h1>' + error
        + '<form method="post" action="/review/login">'
        f'<input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<input type="hidden" name="next" value="{esc(next_url)}">'
        '<label>User <input name="username" id="username" autocomplete="username" required>'
        '</label><label>Password <input name="password" id="password" type="password" '
        'autocomplete="current-password" required></label>'
        '<button type="submit" id="login">Log in</button></form></div>'
    )  # fmt: skip
    return frame("Log in - callqa review", body)


def _select(name: str, options: list[tuple[str, str]], chosen: str | None) -> str:
    opts = "".join(
        f'<option value="{esc(v)}"{" selected" if v == (chosen or "") else ""}>{esc(label)}'
        "</option>"
        for v, label in options
    )
    return f'<select name="{name}">{opts}</select>'


def queue_page(
    page: QueuePage, args: dict[str, str], versions: list[str], user: str, csrf: str
) -> str:
    """The queue: filters (GET form), one row per scored call, paging that keeps the filters."""
    yes_no = [("", "any"), ("1", "yes"), ("0", "no")]
    fields = [
        ("Failed", _select("failed", yes_no, args.get("failed"))),
        ("Critical", _select("critical", yes_no, args.get("critical"))),
        ("Failed check", _select("check", [("", "any")] + [(c, c) for c in CHECK_IDS],
                                 args.get("check"))),
        ("Agent", f'<input name="agent" value="{esc(args.get("agent", ""))}" size="10">'),
        ("From", f'<input type="date" name="date_from" value="{esc(args.get("date_from", ""))}">'),
        ("To", f'<input type="date" name="date_to" value="{esc(args.get("date_to", ""))}">'),
        ("Model", _select("model", [("", "any")] + [(v, v) for v in versions],
                          args.get("model"))),
        ("Reviewed", _select("reviewed", yes_no, args.get("reviewed"))),
        ("Random share", _select("share", yes_no, args.get("share"))),
        ("Order", _select("order", [(o, o) for o in ORDERS], args.get("order") or "teach")),
    ]  # fmt: skip
    form = (
        '<form class="filters" method="get" action="/review/">'
        + "".join(f"<label>{k}{v}</label>" for k, v in fields)
        + '<button type="submit">Filter</button> <a href="/review/">clear</a></form>'
    )
    rows = []
    for c in page.rows:
        crit = '<span class="badge fail">critical</span>' if c.critical_failed else ""
        rows.append(
            f'<tr class="{"crit" if c.critical_failed else ""}">'
            f'<td><a class="call" href="/review/calls/{c.id}">'
            f"<code>{esc(c.call_id)}</code></a></td>"
            f"<td>{c.scored_at:%Y-%m-%d %H:%M}</td><td>{esc(c.agent or '')}</td>"
            f'<td class="num">{c.score:.1f}</td><td class="num">{c.n_failed}</td><td>{crit}</td>'
            f"<td><code>{esc(c.model_version)}</code></td>"
            f'<td class="num">{c.priority:.2f}</td><td>{"yes" if c.in_random_share else ""}</td>'
            f"<td>{'yes' if c.reviewed else ''}</td></tr>"
        )
    table = (
        '<table class="grid queue"><thead><tr><th>Call</th><th>Scored</th><th>Agent</th>'
        "<th>Score</th><th>Failed</th><th>Critical</th><th>Model</th><th>Priority</th>"
        "<th>Random share</th><th>Reviewed</th></tr></thead><tbody>"
        + ("".join(rows) or '<tr><td colspan="10" class="muted">No calls match.</td></tr>')
        + "</tbody></table>"
    )
    keep = {k: v for k, v in args.items() if v and k != "page"}

    def link(n: int, label: str) -> str:
        return f'<a href="/review/?{esc(urlencode({**keep, "page": n}))}">{label}</a>'

    pager = (
        '<div class="pager">'
        + (link(page.page - 1, "&larr; previous") if page.page > 1 else "")
        + f'<span class="muted">page {page.page} of {page.pages} &middot; {page.total} calls'
        "</span>"
        + (link(page.page + 1, "next &rarr;") if page.page < page.pages else "")
        + "</div>"
    )
    body = f"<h1>Review queue</h1>{form}{pager}{table}{pager}"
    return frame("Review queue - callqa", body, user, csrf)


def call_page(
    call: ScoredCall,
    result: QAResult,
    verdicts: list[CheckVerdict],
    latest: dict[str, Review],
    corrected: dict[int, str],
    next_id: int | None,
    user: str,
    csrf: str,
) -> str:
    """One call: the report's header, player, figures and transcript, plus the review forms."""
    base = f"/review/calls/{call.id}"
    parts = [header_html(result, result.duration_s)]
    figures = ""
    if call.audio_path:  # the checks come before the figures: they are what is reviewed
        parts.append(player_html(f"{base}/audio", f"call {call.call_id}"))
        roles = sorted({s.role for s in result.segments}) or ["agent", "customer"]
        figs = [figure_html(r, f"{base}/figure/{r}.png", result.duration_s) for r in roles]
        figures = audio_section_html(figs)
    else:
        parts.append('<p class="muted">No audio was stored for this call.</p>')
    parts.append(_checks_form(base, verdicts, latest, csrf))
    parts.append(figures)
    failed = [c for c in result.checks if c.passed is False]
    parts.append(transcript_html(result.segments, failed, corrected))
    parts.append(_correction_form(base, result, corrected, csrf))
    nxt = (
        f'<a id="next-call" href="/review/calls/{next_id}">next call &rarr;</a>'
        if next_id
        else '<span class="muted">no more unreviewed calls</span>'
    )
    keys = (
        '<p class="keys muted"><kbd>space</kbd> play/pause &middot; <kbd>j</kbd>/<kbd>k</kbd> '
        "next/previous check &middot; <kbd>a</kbd> agree &middot; <kbd>d</kbd> disagree "
        "&middot; <kbd>x</kbd> N/A &middot; <kbd>n</kbd> next call</p>"
    )
    body = f"{keys}<p>{nxt}</p>" + "\n".join(parts)
    return frame(f"Review {call.call_id} - callqa", body, user, csrf)


def _checks_form(
    base: str, verdicts: list[CheckVerdict], latest: dict[str, Review], csrf: str
) -> str:
    rows = []
    for v in verdicts:
        state, label = {True: ("pass", "passed"), False: ("fail", "failed")}.get(
            v.passed, ("na", "not evaluated")
        )
        evidence = "".join(
            f"<li>{evidence_link(Evidence.model_validate(e))}</li>"
            for e in json.loads(v.evidence_json)
        )
        figures = f"score {v.score:.2f}"
        if v.probability is not None:
            figures = f"p={v.probability:.2f} (threshold {v.threshold:.2f})"
        mine = latest.get(v.check_id)
        now = (
            f'<span class="human {mine.human_answer}">{ANSWER_LABELS[mine.human_answer]}'
            f"</span> <span class=muted>{esc(mine.reviewer)}</span>"
            if mine
            else '<span class="muted">not reviewed</span>'
        )
        buttons = "".join(
            f'<button type="submit" name="answer" value="{a}" class="{a}'
            f'{" chosen" if mine and mine.human_answer == a else ""}">{label}</button>'
            for a, label in ANSWER_LABELS.items()
        )
        crit = ' <span class="badge fail">critical</span>' if v.critical else ""
        rows.append(
            f'<tr class="rcheck {state}" id="check-{esc(v.check_id)}" '
            f'data-check="{esc(v.check_id)}"><td><code>{esc(v.check_id)}</code>{crit}</td>'
            f'<td><span class="badge {state}">{label}</span><br>'
            f'<span class="muted">{esc(v.method)} &middot; {figures}</span></td>'
            f"<td>{'<ul class=ev>' + evidence + '</ul>' if evidence else ''}</td>"
            f'<td class="now">{now}</td><td><form class="answers" method="post" '
            f'action="{base}/review"><input type="hidden" name="csrf" value="{esc(csrf)}">'
            f'<input type="hidden" name="check" value="{esc(v.check_id)}">'
            f'<input name="comment" placeholder="comment (optional)" maxlength="2000" '
            f'value="{esc(mine.comment if mine else "")}">{buttons}</form></td></tr>'
        )
    return (
        "<section><h2>Checks</h2><table class=grid><thead><tr><th>Check</th><th>System</th>"
        "<th>Evidence</th><th>Review</th><th>Your answer</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></section>"
    )


def _correction_form(base: str, result: QAResult, corrected: dict[int, str], csrf: str) -> str:
    if not result.segments:
        return ""
    options = "".join(
        f'<option value="{i}">{s.start:.1f} s {esc(s.role)}: '
        f"{esc(corrected.get(i, s.text)[:80])}</option>"
        for i, s in enumerate(result.segments)
    )
    return (
        '<section><h2>Correct a transcript line</h2><form id="correct" method="post" '
        f'action="{base}/transcript"><input type="hidden" name="csrf" value="{esc(csrf)}">'
        f'<select name="segment" id="segment">{options}</select> '
        '<input name="text" id="corrected-text" size="60" maxlength="5000" required> '
        '<button type="submit">Save correction</button></form></section>'
    )
