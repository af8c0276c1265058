"""The usage report: tokens per user and model per day, an SVG chart (no JS) and a CSV."""

from __future__ import annotations

import csv
import datetime as dt
import io
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from review.chart import usage_chart
from review.models import UsageRecord
from review.testing import make_personas
from review.usage import usage_rows

pytestmark = pytest.mark.django_db

REPORT = "admin:review_usagerecord_changelist"
CSV = "admin:review_usagerecord_csv"


@pytest.fixture
def people() -> dict[str, Any]:
    people = make_personas()
    today = timezone.localdate()
    rows = [
        (people["alice"], today, "deepseek-v4-flash", 100, 50),
        (people["alice"], today, "deepseek-v4-flash", 10, 5),
        (people["alice"], today - dt.timedelta(days=1), "qwq:32b", 1000, 2000),
        (people["bob"], today, "deepseek-v4-flash", 7, 3),
        (people["bob"], today - dt.timedelta(days=60), "deepseek-v4-flash", 9, 9),
    ]
    for user, day, model, prompt, completion in rows:
        UsageRecord.objects.create(
            user=user,
            day=day,
            backend_name="Sim",
            model=model,
            prompt_tokens=prompt,
            completion_tokens=completion,
        )
    return people


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_rows_are_grouped_per_day_user_and_model(people: dict[str, Any]) -> None:
    today = timezone.localdate()
    rows = usage_rows(today - dt.timedelta(days=29), today)
    flat = {(r.day, r.username, r.model): (r.total_tokens, r.messages) for r in rows}
    assert flat == {
        (today, "alice", "deepseek-v4-flash"): (165, 2),
        (today - dt.timedelta(days=1), "alice", "qwq:32b"): (3000, 1),
        (today, "bob", "deepseek-v4-flash"): (10, 1),
    }


def test_the_report_shows_tables_and_a_server_rendered_chart(people: dict[str, Any]) -> None:
    response = client_for(people["root"]).get(reverse(REPORT))
    html = response.content.decode()
    assert response.status_code == 200
    assert "<svg" in html and "<rect" in html
    assert "<script" not in html.split('id="content"')[-1]
    assert "3,000" in html and "165" in html
    assert "qwq:32b" in html and "alice" in html and "bob" in html
    # The 60-day-old row is outside the default 30 days.
    assert "18" not in [cell.strip() for cell in html.split("<td>")]


def test_the_report_filters_by_user_and_period(people: dict[str, Any]) -> None:
    today = timezone.localdate()
    client = client_for(people["root"])
    query = f"?start={today - dt.timedelta(days=90)}&end={today}&user={people['bob'].pk}&by=user"
    html = client.get(reverse(REPORT) + query).content.decode()
    assert "alice" not in html.split("Per user")[-1]
    assert html.count("<tr><td>2") >= 1  # both of bob's days


def test_the_csv_holds_every_row(people: dict[str, Any]) -> None:
    response = client_for(people["root"]).get(reverse(CSV))
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith("attachment;")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0][:4] == ["day", "user", "backend", "model"]
    assert len(rows) == 4
    assert [rows[3][1], *rows[3][3:7]] == ["alice", "qwq:32b", "1000", "2000", "3000"]


def test_a_name_cannot_become_a_spreadsheet_formula(people: dict[str, Any]) -> None:
    UsageRecord.objects.create(
        user=people["bob"], day=timezone.localdate(), model="=HYPERLINK(1)", prompt_tokens=1
    )
    text = client_for(people["root"]).get(reverse(CSV)).content.decode()
    assert "'=HYPERLINK(1)" in text


def test_an_oversized_period_is_refused(people: dict[str, Any]) -> None:
    client = client_for(people["root"])
    response = client.get(reverse(CSV) + "?start=2000-01-01&end=2020-01-01")
    assert response.status_code == 400
    assert "at most" in client.get(reverse(REPORT) + "?start=2000-01-01").content.decode()


def test_only_admins_with_the_view_permission_see_usage(people: dict[str, Any]) -> None:
    for name in ("alice", "carol"):
        for url in (reverse(REPORT), reverse(CSV)):
            response = client_for(people[name]).get(url)
            assert response.status_code in (302, 403), (name, url)
    html = client_for(people["root"]).get(reverse("admin:index")).content.decode()
    assert reverse(REPORT) in html


def test_the_chart_stacks_by_model_and_scales_to_a_round_number() -> None:
    from review.usage import UsageRow

    today = dt.date(2026, 3, 10)
    rows = [
        UsageRow(today, 1, "alice", "b", "m1", 300, 400, 1),
        UsageRow(today, 1, "alice", "b", "m2", 100, 0, 1),
    ]
    chart = usage_chart(rows, today - dt.timedelta(days=6), today)
    assert [name for _, name in chart.legend] == ["m1", "m2"]
    assert chart.ticks[-1].label == "1k"
    assert len(chart.bars) == 2 and len(chart.days) == 7
    assert not chart.empty
    assert usage_chart([], today, today).empty
