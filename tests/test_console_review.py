"""What a UI review of the console found, each pinned by a test that failed before its fix: the
console on a fresh SQLite file loaded with the tiny simulated run (``console_helpers``)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
from console_helpers import hold_policy, load, login, prepare_database
from console_helpers import simulate_run as simulate
from fastapi.testclient import TestClient

from brokerguard.service.app import create_app


class World:
    def __init__(self, client: TestClient, key: str, held: dict[str, Any]) -> None:
        self.client, self.key, self.held = client, key, held
        self.service = client.app.state.service  # type: ignore[attr-defined]

    def settle(self) -> None:
        self.service.tick()
        assert self.service.recorder.wait_idle(10)

    def as_user(self, username: str) -> str:
        self.client.cookies.clear()
        return login(self.client, username)

    def page(self, path: str, lang: str = "ja") -> str:
        answer = self.client.get(path, params={"lang": lang})
        assert answer.status_code == 200, (path, answer.status_code, answer.text[:300])
        return answer.text


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("console-review")
    events = simulate(tmp / "run")
    url = f"sqlite:///{tmp / 'service.db'}"
    key = prepare_database(url)
    app = create_app(url, hold_policy(tmp / "hold.toml"), console_run=tmp / "run")
    with TestClient(app) as client:
        held = load(lambda p, b, h: client.post(p, content=b, headers=h), key, events)
        w = World(client, key, held)
        w.settle()
        w.as_user("sup")
        yield w


def route_to_console(page: Any, world: Any) -> None:
    """Answer the browser's requests for ``http://console.test`` from the in-process console."""
    from browser_helpers import route_to_app

    route_to_app(page, world.client, "http://console.test")


def test_the_served_japanese_font_comes_before_system_ui(world: World) -> None:
    """The console's font stack put IPAex Gothic (served by the console) last, after system-ui
    and the system CJK fonts: Japanese was drawn by whatever partial font the machine had, in
    mixed shapes, or as boxes. It is now first, for Japanese characters only."""
    css = world.client.get("/console/static/console.css").text
    face = re.search(r"@font-face\s*\{([^}]*)\}", css)
    assert face is not None and "unicode-range" in face.group(1)
    body = re.search(r"body\s*\{[^}]*font:\s*[^,;]*?\s*\"([^\"]+)\"\s*,\s*system-ui", css)
    assert body is not None and body.group(1) == "BG IPAexGothic", "served font first"


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def _new_case(world: World, account: str = "A0000001") -> int:
    csrf = _csrf(world.page("/console/alerts"))
    answer = world.client.post(
        "/console/cases", data={"csrf_token": csrf, "account": account}, follow_redirects=False
    )
    assert answer.status_code == 303, answer.text
    return int(answer.headers["location"].rsplit("/", 1)[1])


def test_closing_a_case_without_an_outcome_keeps_the_form_and_says_what_is_missing(
    world: World,
) -> None:
    """Closing without an outcome was an error page (409, JSON's words): the labels typed were
    lost and the page did not point at the outcome. The case's form comes back with what was
    chosen and typed, saying the outcome is needed, in the reader's language."""
    case = _new_case(world)
    csrf = _csrf(world.page(f"/console/cases/{case}"))
    for lang, words in (("ja", "結論（不正／不正ではない）を選んで"), ("en", "choose its outcome")):
        answer = world.client.post(
            f"/console/cases/{case}?lang={lang}",
            data={"csrf_token": csrf, "status": "closed", "outcome": "", "labels": "phish, x"},
            headers={"accept": "text/html"},
            follow_redirects=False,
        )
        assert answer.status_code == 409 and words in answer.text
        assert 'value="phish, x"' in answer.text
        assert re.search(r'<option value="closed" selected>', answer.text)
        assert re.search(r'name="outcome"[^>]*aria-invalid="true"', answer.text)
    assert world.client.get(f"/console/cases/{case}").status_code == 200
    assert 'value="phish, x"' not in world.page(f"/console/cases/{case}"), "nothing saved"


def test_assign_and_snooze_come_back_to_the_page_they_were_pressed_on(world: World) -> None:
    """ "Assign to me" and "Snooze" went to the queue's first page without its filters, wherever
    they were pressed (an alert's page, page 2 of a filtered queue); they come back to it, and
    only ever to a console page."""
    page = world.page("/console/alerts?severity=&status=open")
    alert = re.search(r'action="/console/alerts/([^"/]+)/assign"', page).group(1)  # type: ignore[union-attr]
    csrf = _csrf(page)
    for where in ("/console/alerts?status=open&page=2", f"/console/alerts/{alert}"):
        assert 'name="next" value="' in world.page(where)
        answer = world.client.post(
            f"/console/alerts/{alert}/assign",
            data={"csrf_token": csrf, "next": where},
            follow_redirects=False,
        )
        assert answer.status_code == 303 and answer.headers["location"] == where
    account = re.search(r'action="/console/accounts/([^"]+)/snooze"', page).group(1)  # type: ignore[union-attr]
    answer = world.client.post(
        f"/console/accounts/{account}/snooze",
        data={"csrf_token": csrf, "next": "/console/alerts?severity=high"},
        follow_redirects=False,
    )
    assert answer.headers["location"] == "/console/alerts?severity=high"
    for foreign in ("https://evil.example/", "//evil.example/console/", "/console/../v1/x"):
        answer = world.client.post(
            f"/console/alerts/{alert}/assign",
            data={"csrf_token": csrf, "next": foreign},
            follow_redirects=False,
        )
        assert answer.headers["location"] == "/console/alerts", foreign


def test_the_header_names_the_role_in_the_readers_language_and_pages_have_an_icon(
    world: World,
) -> None:
    """The header said ``sup (supervisor)`` on the Japanese page, and no page had an icon (the
    browser asked for ``/favicon.ico``, a 404, and showed a blank tab)."""
    assert "sup (スーパーバイザー)" in world.page("/console/alerts", "ja")
    assert "sup (supervisor)" in world.page("/console/alerts", "en")
    icon = re.search(r'<link rel="icon" href="([^"]+)"', world.page("/console/cases"))
    assert icon is not None
    answer = world.client.get(icon.group(1))
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("image/svg")


def test_the_account_timeline_speaks_japanese(world: World) -> None:
    """The timeline's details showed the events' codes as they are: ``new buy``, ``phone``,
    ``oob passed``, ``portfolio``, ``password``, ``(isp)``, ``phone`` (the device) on the
    Japanese page. They are in the reader's language now."""
    page = world.page("/console/alerts")
    accounts = list(dict.fromkeys(re.findall(r'class="account-link" href="([^"]+)"', page)))
    english = re.compile(
        r"\b(new|buy|sell|passed|failed|portfolio|orders|settings|password|passkey|isp|"
        r"hosting|pc|phone|tablet)\b"
    )
    seen = 0
    for link in accounts[:5]:
        html = world.page(link, "ja")
        table = html.split('<table class="timeline">', 1)[1].split("</table>", 1)[0]
        for row in re.findall(r"<tr class=\"ev-[^\"]+\">(.*?)</tr>", table, re.S):
            cells = re.findall(r"<td>(.*?)</td>", row, re.S)[1:6]  # event .. factors
            text = re.sub(r"<[^>]+>|Mobile Safari|Safari|Chrome|Firefox|Edge", " ", " ".join(cells))
            assert not english.search(text), text
            seen += 1
    assert seen > 10
    english_page = world.page(accounts[0], "en")
    assert re.search(r"\b(sign-in|session|order|fill)\b", english_page)


def _quiet_campaign(world: World) -> str:
    """A campaign with no fills, no shared infrastructure, raised by a symbol and dismissed."""
    from datetime import UTC, datetime

    from brokerguard.service.db import write_transaction
    from brokerguard.service.models import campaigns

    at = datetime(2025, 4, 2, 0, 18, tzinfo=UTC)
    row = {
        "id": "C9999-20250402T001800Z",
        "engine_id": "C9999",
        "raised_at": at,
        "updated_at": at,
        "symbols": ["TSE:9999"],
        "accounts": ["NOBODY1"],
        "infrastructure": [],
        "counterparties": [],
        "timeline": [
            {"at": at.isoformat(), "what": "raised", "detail": "symbol TSE:9999"},
            {"at": at.isoformat(), "what": "dismissed", "detail": "analyst"},
        ],
        "status": "dismissed",
    }
    with write_transaction(world.service.db) as conn:
        conn.execute(campaigns.insert().values(**row))
    return row["id"]


def test_the_campaign_page_says_when_a_section_is_empty_and_its_times_are_utc(
    world: World,
) -> None:
    """An empty "buy waves" section was a table of headers only, the infrastructure an empty
    list; the timeline said ``symbol TSE:…`` and ``analyst`` on the Japanese page, its times
    ``2025-04-02T00:18`` with no zone."""
    camp = _quiet_campaign(world)
    ja = world.page(f"/console/campaigns/{camp}", "ja")
    assert 'id="no-buy-waves"' in ja and 'id="no-infrastructure"' in ja
    assert '<table class="waves">' not in ja
    timeline = ja.split('<table class="campaign-timeline">', 1)[1].split("</table>", 1)[0]
    assert "（UTC）" in timeline and "2025-04-02 00:18" in timeline and "T00:18" not in timeline
    assert "銘柄 TSE:9999" in timeline and "分析者" in timeline
    assert "symbol" not in timeline and "analyst" not in timeline
    assert "検知時刻（UTC）: 2025-04-02 00:18" in ja
    en = world.page(f"/console/campaigns/{camp}", "en")
    assert "No buy fills" in en and "symbol TSE:9999" in en


def test_the_fill_chart_has_axes_and_the_graph_a_legend(world: World) -> None:
    """The fill chart had a price at two corners and two times, no axes, nothing saying which
    number was a price, a volume or when; the account graph had no legend (what is a dot, a
    square, a line) nor counts."""
    from datetime import UTC, datetime, timedelta

    from brokerguard.web.svg import fill_chart

    t0 = datetime(2025, 3, 18, tzinfo=UTC)
    fills = [(t0, 100.0, 10.0), (t0 + timedelta(hours=2), 150.0, 30.0)]
    chart = fill_chart(
        fills, labels={"price": "約定価格（円）", "volume": "出来高", "time": "時刻"}
    )
    assert chart.count('class="axis"') == 3  # price, volume, time
    assert "約定価格（円）" in chart and "出来高" in chart and "時刻" in chart
    for label in ("100", "125", "150", "30", "03-18 00:00", "03-18 01:00", "03-18 02:00"):
        assert f">{label}</text>" in chart, label
    assert "price (¥)" in fill_chart(fills)  # English without labels
    camp = max(
        re.findall(r'href="/console/campaigns/([^"]+)"', world.page("/console/campaigns")),
        key=lambda c: world.page(f"/console/campaigns/{c}").count("<circle"),
    )
    for lang, words in (
        ("ja", ("口座（クリックでタイムライン）", "共有インフラ", "約定価格（円）")),
        ("en", ("account (click: its timeline)", "shared infrastructure", "fill price (¥)")),
    ):
        page = world.page(f"/console/campaigns/{camp}", lang)
        legend = re.search(
            r'<figcaption class="legend" id="graph-legend">(.*?)</figcaption>', page, re.S
        )
        assert legend is not None and all(w in page for w in words), lang
        assert f"({page.count('<circle')})" in legend.group(1)  # how many accounts


def test_the_reports_page_sums_up_each_policy_pages_its_rows_and_charts_the_months(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The compensation calculator listed every row of every policy on one page (tens of
    thousands on a broker's losses) with no total per policy; the monthly table had no chart
    and did not say its months are Japan time."""
    from brokerguard.web import pages_reports

    ja = world.page("/console/reports", "ja")
    summary = ja.split('<table class="summary">', 1)[1].split("</table>", 1)[0]
    rows = re.findall(r'<tr id="summary-([^"]+)">(.*?)</tr>', summary, re.S)
    assert {name for name, _ in rows} >= {"full-restoration"}
    csv = world.client.get("/console/reports/compensation.csv").content.decode("utf-8-sig")
    lines = [line.split(",") for line in csv.splitlines()[1:]]
    for name, row in rows:  # the summary is the CSV's rows added up
        cells = re.findall(r'<td class="num">([^<]*)</td>', row)
        mine = [line for line in lines if name in line]
        assert int(cells[0].replace(",", "")) + int(cells[1].replace(",", "")) == len(mine)
    assert 'class="chart monthly-chart"' in ja and "金額（百万円）" in ja and "日本時間" in ja
    en = world.page("/console/reports", "en")
    assert "¥ million" in en and "month (Japan time)" in en and "Summary by policy" in en
    monkeypatch.setattr(pages_reports, "PAGE", 2)
    first = world.client.get("/console/reports?lang=en").text
    table = first.split('<table class="compensation">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + 2  # header and two rows
    assert 'class="pager-next"' in first
    later = world.client.get("/console/reports?page=2&lang=en").text
    assert 'class="pager-prev"' in later and "Page 2 /" in later


def test_serve_computes_the_report_tables_at_start_up(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The reports page's first visit computed its tables while the analyst waited (2.5–6 s on
    the demo's run). ``serve`` (``Settings.warm_reports``) computes them in the background at
    start-up; the page then reads them from memory."""
    from brokerguard.service import reporting
    from brokerguard.service.runtime import Settings

    run = tmp_path / "run"
    simulate(run)
    url = f"sqlite:///{tmp_path / 'service.db'}"
    prepare_database(url)
    app = create_app(url, console_run=run, settings=Settings(warm_reports=True))
    with TestClient(app) as client:
        app.state.report_warmer.join(60)
        assert not app.state.report_warmer.is_alive()

        def computed_again(*_args: object, **_kw: object) -> None:
            raise AssertionError("the tables were computed at the request")

        monkeypatch.setattr(reporting, "monthly_table", computed_again)
        monkeypatch.setattr(reporting, "victim_losses", computed_again)
        login(client, "ana")
        page = client.get("/console/reports?lang=en")
        assert page.status_code == 200 and "Summary by policy" in page.text


def test_every_time_the_console_shows_says_it_is_utc(world: World) -> None:
    """The console shows times in UTC (the records' clock) but most pages did not say so: an
    analyst in Tokyo read 00:18 as Japan time, nine hours off."""
    alerts = world.page("/console/alerts", "ja")
    assert "<th>時刻（UTC）</th>" in alerts
    assert "<th>Time (UTC)</th>" in world.page("/console/alerts", "en")
    alert = re.search(r'class="alert-link" href="([^"]+)"', alerts).group(1)  # type: ignore[union-attr]
    assert re.search(r"<p>\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · ", world.page(alert))
    assert "<th>検知時刻（UTC）</th>" in world.page("/console/campaigns")
    account = re.search(r'class="account-link" href="([^"]+)"', alerts).group(1)  # type: ignore[union-attr]
    assert '<table class="timeline">\n<thead><tr><th>時刻（UTC）</th>' in world.page(account)


def test_case_titles_the_service_wrote_are_in_the_readers_language(world: World) -> None:
    """A case opened from an alert, a campaign or an account got an English title
    (``login challenge: A…``, ``campaign C…``, ``account A…``) shown as is on the Japanese
    pages; a title an analyst typed is still shown as typed."""
    page = world.page("/console/alerts")
    csrf = _csrf(page)
    alert = re.search(r'name="alert_id" value="([^"]+)"', page).group(1)  # type: ignore[union-attr]
    opened = []
    for fields in ({"alert_id": alert}, {"account": "A0000002"}, {"account": "A3", "title": "x y"}):
        answer = world.client.post(
            "/console/cases", data={"csrf_token": csrf, **fields}, follow_redirects=False
        )
        opened.append(answer.headers["location"])
    ja = [world.page(path, "ja") for path in opened]
    en = [world.page(path, "en") for path in opened]
    title = [re.search(r'<h1 class="case-title">(.*?)</h1>', p).group(1) for p in ja + en]  # type: ignore[union-attr]
    assert re.search(
        r"(ログイン|注文|出金|設定変更) \((許可|追加認証|保留|拒否|ロック)\): ", title[0]
    )
    assert title[1].endswith(": 口座 A0000002")
    assert title[2].endswith(": x y") and title[5].endswith(": x y")
    assert re.search(r"(sign-in|order|withdrawal|settings change) \(\w+\): ", title[3])
    assert title[4].endswith(": Account A0000002")
    listing = world.page("/console/cases", "ja")
    assert "口座 A0000002" in listing and ">account A0000002<" not in listing


LINES = """el => { const r = document.createRange(); r.selectNodeContents(el);
  return new Set([...r.getClientRects()].filter(x => x.width > 0)
                 .map(x => Math.round(x.top))).size; }"""


def test_table_headings_and_short_cells_never_break_inside_a_word(
    world: World, browser: Any
) -> None:
    """In a browser, the account timeline broke its headings and short cells inside words:
    "イベン|ト", "追加認|証の結|果", the decision badges. Headings, times, kinds of event and
    badges keep to one line; Japanese cells break between phrases (``auto-phrase``)."""
    base = "http://console.test"
    alerts = world.page("/console/alerts")
    account = re.search(r'class="account-link" href="([^"]+)"', alerts).group(1)  # type: ignore[union-attr]

    page = browser.new_page(viewport={"width": 900, "height": 900})
    route_to_console(page, world)
    for lang in ("ja", "en"):
        page.goto(f"{base}{account}?lang={lang}")
        page.evaluate("document.fonts.ready")
        broken = []
        for selector in (
            "table.timeline th",
            "table.timeline td:nth-child(1)",
            "table.timeline td:nth-child(2)",
            "table.timeline .badge",
        ):
            for cell in page.query_selector_all(selector):
                if cell.evaluate(LINES) > 1:
                    broken.append((lang, selector, cell.inner_text()))
        assert not broken, broken[:5]
        if lang == "ja":
            style = page.eval_on_selector("table.timeline td", "e => getComputedStyle(e).wordBreak")
            assert style == "auto-phrase"


def test_chart_labels_are_placed_where_their_svg_says(world: World) -> None:
    """The stylesheet set ``text-anchor`` for every SVG text, which beats the attribute: the
    charts' right-aligned and legend labels were drawn centred, over their colour keys and off
    their ticks."""
    css = world.client.get("/console/static/console.css").text
    for rule in re.findall(r"([^{}]*)\{([^}]*)\}", css):
        selector, body = rule
        if "text-anchor" in body:
            assert "graph" in selector, selector  # only the graph, whose texts name none


def test_the_served_font_does_not_claim_every_weight(world: World) -> None:
    """IPAex Gothic has one weight; its ``@font-face`` said ``font-weight: 100 900``, so the
    browser took it for a bold face too and drew Japanese headings regular (no synthetic
    bold). Checked for the console's stylesheet and the demo site's."""
    site_css = Path(__file__).resolve().parents[1] / "src/brokerguard/frontdoor/static/site.css"
    for css in (world.client.get("/console/static/console.css").text, site_css.read_text()):
        face = re.search(r"@font-face\s*\{([^}]*)\}", css)
        assert face is not None and "font-weight" not in face.group(1)


def test_an_alert_page_is_titled_as_one_alert_and_names_its_columns(world: World) -> None:
    """One alert's page was headed "Alerts: …" and its signal table's column "LLR", a word
    neither language's reader is told the meaning of."""
    alerts = world.page("/console/alerts", "en")
    alert = re.search(r'class="alert-link" href="([^"]+)"', alerts).group(1)  # type: ignore[union-attr]
    en = world.page(alert, "en")
    assert "<h1>Alert: " in en and "<th>Weight (log-likelihood ratio)</th>" in en
    assert "<th>重み（対数尤度比）</th>" in world.page(alert, "ja")


def test_cases_say_when_they_were_opened_and_an_empty_campaign_list_says_so(
    tmp_path: Path,
) -> None:
    """The case list and a case's page did not say when the case was opened or last changed;
    the campaign list of a service without campaigns was a table of headers only."""
    url = f"sqlite:///{tmp_path / 'service.db'}"
    prepare_database(url)
    with TestClient(create_app(url)) as client:
        login(client, "ana")
        assert 'id="no-campaigns"' in client.get("/console/campaigns?lang=ja").text
        csrf = _csrf(client.get("/console/alerts").text)
        where = client.post(
            "/console/cases", data={"csrf_token": csrf, "account": "A1"}, follow_redirects=False
        ).headers["location"]
        case = client.get(f"{where}?lang=en").text
        assert re.search(r"Opened at \(UTC\): \d{4}-\d\d-\d\d \d\d:\d\d", case)
        assert "Last change (UTC): " in case
        listing = client.get("/console/cases?lang=ja").text
        assert "<th>作成日時（UTC）</th>" in listing
        assert re.search(r"<td>\d{4}-\d\d-\d\d \d\d:\d\d</td></tr>", listing)


def test_numbers_in_the_report_tables_are_right_aligned(world: World) -> None:
    """The monthly table's counts and yen were left-aligned: the digits of 776,970,164 and
    66,141,688 did not line up, so the larger was not seen at a glance."""
    page = world.page("/console/reports", "en")
    table = page.split('<table class="monthly">', 1)[1].split("</table>", 1)[0]
    cells = re.findall(r"<td( class=\"num\")?>([^<]*)</td>", table)
    assert cells and all(bool(num) == ("-" not in value[4:5]) for num, value in cells), cells
    css = world.client.get("/console/static/console.css").text
    assert re.search(r"td\.num\s*\{[^}]*text-align:\s*right", css)


def test_each_policys_compensation_is_worked_out_once_per_losses(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every request worked every victim's compensation out again under every policy (0.4 s
    a request on a run of 600 victims, every page of the list). The rows are kept with the
    losses, per policy text: an edited policy is worked out anew."""
    from brokerguard.service import reporting

    run = Path(world.client.app.state.console_run)  # type: ignore[attr-defined]
    policies = list(reporting.compensation_policies().values())
    _, first = reporting.report_tables(world.service, run, False, policies)
    assert first

    def again(*_args: object) -> None:
        raise AssertionError("compensation worked out again")

    monkeypatch.setattr(reporting, "compensate", again)
    assert reporting.report_tables(world.service, run, False, policies)[1] == first
    edited = msgspec.structs.replace(policies[0], title_en=policies[0].title_en + " (edited)")
    with pytest.raises(AssertionError, match="worked out again"):
        reporting.report_tables(world.service, run, False, [edited])


def test_japanese_headings_and_buttons_are_drawn_in_the_served_font(
    world: World, browser: Any
) -> None:
    """In a browser: the Japanese of a heading, a table heading and a button is drawn in IPAex
    Gothic served by the console, and nothing else (no glyph from a fallback font)."""
    from browser_helpers import platform_fonts

    base = "http://console.test"

    page = browser.new_page()
    route_to_console(page, world)
    page.goto(f"{base}/console/alerts?lang=ja")
    page.evaluate("document.fonts.ready")
    for selector in ("h1", "table.alerts th:nth-child(2)", "td.row-actions button"):
        fonts = platform_fonts(page, selector)
        assert fonts == {"IPAexGothic"}, (selector, fonts)


def test_a_note_field_and_its_button_do_not_touch(world: World, browser: Any) -> None:
    """On an account's page the note field and "Lock account" were drawn touching, as one
    control; there is a gap between a field and its button."""
    base = "http://console.test"
    alerts = world.page("/console/alerts")
    account = re.search(r'class="account-link" href="([^"]+)"', alerts).group(1)  # type: ignore[union-attr]

    page = browser.new_page(viewport={"width": 1280, "height": 800})
    route_to_console(page, world)
    page.goto(f"{base}{account}?lang=ja")
    gaps = page.eval_on_selector_all(
        "section.actions form.inline",
        """forms => forms.flatMap(f => {
             const field = f.querySelector('input[name=note], select');
             const button = f.querySelector('button');
             if (!field || !button) return [];
             return [button.getBoundingClientRect().left - field.getBoundingClientRect().right];
           })""",
    )
    assert gaps and min(gaps) >= 3, gaps


def test_the_pager_counts_in_lower_case_words(world: World) -> None:
    """The pager said "Page 1 / 1 (1 Cases)" and "(1407 Alerts)": the page's title word, not
    a count's."""
    assert re.search(r"\(\d+ alerts\)", world.page("/console/alerts", "en"))
    assert re.search(r"\(\d+ 件\)", world.page("/console/alerts", "ja"))
    assert re.search(r"\(\d+ cases\)", world.page("/console/cases", "en"))


def test_the_snoozed_filter_says_what_it_does(world: World) -> None:
    """The queue's checkbox that shows snoozed alerts was labelled "Snoozed until (0)", a
    column's name, not what ticking it does."""
    assert re.search(
        r'name="snoozed" value="1"[^>]*> Show snoozed \(\d+\)', world.page("/console/alerts", "en")
    )
    assert "スヌーズ中も表示" in world.page("/console/alerts", "ja")


def test_the_header_never_breaks_a_word_in_a_narrow_window(world: World, browser: Any) -> None:
    """At 820 px the header broke "ブロックリスト|審査", "demo (管|理者)" and "ログア|ウト"
    over two lines; its items now wrap whole."""
    base = "http://console.test"

    page = browser.new_page(viewport={"width": 820, "height": 700})
    route_to_console(page, world)
    for lang in ("ja", "en"):
        page.goto(f"{base}/console/alerts?lang={lang}")
        page.evaluate("document.fonts.ready")
        broken = [
            (lang, item.inner_text())
            for item in page.query_selector_all("header nav a, header .who, header button")
            if item.evaluate(LINES) > 1
        ]
        assert not broken, broken


def _post_events(world: World, events: list[Any]) -> None:
    from brokerguard.events import encode

    body = b"".join(encode(e) + b"\n" for e in events)
    answer = world.client.post(
        "/v1/events",
        content=body,
        headers={"Authorization": f"Bearer {world.key}", "content-type": "application/x-ndjson"},
    )
    assert answer.status_code == 200, answer.text


def test_the_account_timeline_pages_through_every_event(world: World) -> None:
    """The timeline showed the newest 300 items and left the rest out without a word. It
    shows 100 a page now, says which ("events 101–200 of 232"), and the held order and the
    sign-in device the actions offer are there on every page, though they are on the last."""
    from datetime import timedelta

    from brokerguard.events import LoginAttempt, Order, SessionActivity, encode

    account, session, ua = "PAGED1", "s-paged-1", "Mozilla/5.0 (Windows NT 10.0) Chrome/126.0"
    start = world.service.host.last_ts + timedelta(minutes=1)
    login_ = LoginAttempt(
        id="e-paged-login", ts=start, account=account, session=session, ip="203.0.113.7",
        user_agent=ua, device="ck-paged", factors=["password"], success=True,
    )  # fmt: skip
    _post_events(world, [login_])
    order = Order(
        id="e-paged-order", ts=start + timedelta(seconds=5), account=account, session=session,
        order_id="o-paged-1", symbol="7203", market="TSE", side="buy", quantity=100,
        price_type="limit", limit_price=2500.0,
    )  # fmt: skip
    decided = world.client.post(
        "/v1/decide",
        content=encode(order),
        headers={"Authorization": f"Bearer {world.key}", "content-type": "application/json"},
    )
    assert decided.status_code == 200 and decided.json()["action"] == "hold", decided.text
    views = [
        SessionActivity(
            id=f"e-paged-view-{n:03}",
            ts=start + timedelta(seconds=10 + n),
            account=account,
            session=session,
            ip="203.0.113.7",
            user_agent=ua,
            device="ck-paged",
        )  # fmt: skip
        for n in range(230)
    ]
    _post_events(world, views)
    world.settle()
    total = 232
    seen: list[str] = []
    for page, (first, last) in enumerate(((1, 100), (101, 200), (201, 232)), start=1):
        for lang, said in (
            ("en", f"events {first}–{last} of {total}"),
            ("ja", f"イベント {first}–{last}（全 {total} 件中）"),
        ):
            answer = world.client.get(
                f"/console/accounts/{account}", params={"lang": lang, "page": page}
            )
            html = answer.text
            assert said in html, (page, lang)
            assert 'id="held-e-paged-order"' in html  # the release form, on every page
            assert "<option>ck-paged</option>" in html
        table = html.split('<table class="timeline">', 1)[1].split("</table>", 1)[0]
        rows = re.findall(r'<tr class="ev-(\w+)">', table)
        assert len(rows) == last - first + 1
        seen += re.findall(r"<td>(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)</td>", table)
        assert ("pager-next" in html) == (page < 3) and ("pager-prev" in html) == (page > 1)
    assert len(seen) == total and seen == sorted(seen, reverse=True)
    assert "ev-login" in table and "ev-order" in table  # the oldest two, on the last page
    beyond = world.client.get(f"/console/accounts/{account}", params={"lang": "en", "page": 9})
    assert f"events 201–232 of {total}" in beyond.text  # past the last page: the last


def test_an_alert_page_says_each_signal_in_the_readers_language_with_its_evidence(
    world: World,
) -> None:
    """The alert page showed each signal as its code and its evidence as a dict
    (``ip=… country=… new=n``). Each signal now says the policy's sentence for its code (the
    one decisions' reasons carry) in the reader's language, with the code small under it, and
    its evidence as a table of names and values."""
    from brokerguard.engine.policy import load_policy

    texts = load_policy().reasons
    alerts = world.client.get(
        "/v1/alerts?limit=1000", headers={"Authorization": f"Bearer {world.key}"}
    ).json()
    alert = next(
        a
        for a in alerts
        if any(s["code"] == "login_network" and s["llr"] > 0 for s in a["signals"])
    )
    signal = next(s for s in alert["signals"] if s["code"] == "login_network")
    for lang, country in (("ja", "国"), ("en", "country")):
        html = world.page(f"/console/alerts/{alert['id']}", lang)
        assert html.startswith("<!doctype html>") and html.count('<table class="signals">') == 1
        main = html.split("<main", 1)[1].split("</main>", 1)[0]
        table = main.split('<table class="signals">', 1)[1].rsplit("</table>", 1)[0]
        assert "</code>=" not in html  # no evidence as key=value anywhere on the page
        row = next(r for r in table.split('<tr id="signal-') if "<code>login_network</code>" in r)
        assert getattr(texts["login_network"], lang) in row
        assert '<small class="signal-code"><code>login_network</code></small>' in row
        assert '<table class="evidence">' in row
        said = signal["evidence"]["country"]
        assert f'<th scope="row">{country} <code>country</code></th><td>{said}</td>' in row
        assert "{" not in row and "=" not in re.sub(r"<[^>]+>", "", row)  # no dict, no key=value
        for s in alert["signals"]:  # every signal has its sentence or says it has none
            assert f"<code>{s['code']}</code>" in table
    quiet = next(s for s in alert["signals"] if s["llr"] <= 0 and s["code"] in texts)
    html = world.page(f"/console/alerts/{alert['id']}", "en")
    assert f"Not the case (points to the customer): {texts[quiet['code']].en}" in html


def test_the_alert_queue_fits_a_narrow_window(world: World, tmp_path: Path, browser: Any) -> None:
    """Below about 1,070 px the alerts table was wider than the window and the whole page
    scrolled sideways. At 1,024 px the table fits now (long cells wrap, the score and assignee
    columns give way); on a 390 px phone it scrolled inside its own box: now each alert is a card
    of lines, each value with its column's name beside it, and nothing scrolls sideways."""
    base = "http://console.test"

    for width in (1024, 390):
        page = browser.new_page(viewport={"width": width, "height": 800})
        route_to_console(page, world)
        for lang in ("ja", "en"):
            page.goto(f"{base}/console/alerts?lang={lang}")
            page.evaluate("document.fonts.ready")
            page.screenshot(path=str(tmp_path / f"alerts-{width}-{lang}.png"))
            body = page.evaluate(
                "[document.documentElement.scrollWidth, document.documentElement.clientWidth]"
            )
            assert body[0] <= body[1], (width, lang, body)
            table = page.evaluate(
                "(() => { const t = document.querySelector('table.alerts');"
                " return [t.getBoundingClientRect().right, t.parentElement.clientWidth,"
                " t.parentElement.getBoundingClientRect().right]; })()"
            )
            # the table itself fits: nothing hidden to the right, not even in its box
            assert table[0] <= table[2] + 0.5, (width, lang, table)
            if width >= 1024:
                shown = page.evaluate(
                    "[...document.querySelectorAll('table.alerts thead th')]"
                    ".filter(th => th.offsetWidth > 0).length"
                )
                assert shown >= 9, (width, lang, shown)
                continue
            # a phone: each alert a card, each shown value with its column's name beside it
            cells = page.evaluate(
                "[...document.querySelectorAll('table.alerts tbody td')]"
                ".filter(td => td.offsetWidth > 0 && !td.classList.contains('row-actions'))"
                ".map(td => [td.dataset.label || '',"
                " getComputedStyle(td, '::before').content,"
                " td.getBoundingClientRect().right])"
            )
            assert len(cells) >= 7 * page.locator("table.alerts tbody tr").count()
            for label, before, right in cells:
                assert label and before == f'"{label}"', (lang, label, before)
                assert right <= width, (lang, label, right)
        page.close()
    world.client.get("/console/alerts?lang=ja")
