"""The usage page's SVG charts (console/charts.py) and its choice of range and buckets,
as pure functions: no browser, no process."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from console.charts import Chart, figure, nice_top, time_label
from console.pages.usage import MAX_BUCKETS, Period, bucket_for, custom_period

SVG = "{http://www.w3.org/2000/svg}"
T0 = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BUCKETS = [T0 + timedelta(minutes=10 * i) for i in range(6)]


def chart(**fields: object) -> Chart:
    values = {
        ("gpt-4o", BUCKETS[0]): 3.0, ("o3", BUCKETS[0]): 1.0,
        ("o3", BUCKETS[2]): 4.0, ("<b>&evil\"", BUCKETS[5]): 2.0,
    }  # fmt: skip
    defaults: dict[str, object] = {
        "title": "Requests", "keys": ["gpt-4o", "o3", '<b>&evil"'], "buckets": BUCKETS,
        "bucket_seconds": 600, "values": values,
    }  # fmt: skip
    return Chart(**{**defaults, **fields})  # type: ignore[arg-type]


def parsed(c: Chart) -> ET.Element:
    """The figure as XML: whatever a key holds, the markup is well formed."""
    return ET.fromstring(str(figure(c)))


def points(root: ET.Element) -> list[ET.Element]:
    return [r for r in root.iter(f"{SVG}rect") if "data-key" in r.attrib]


def test_every_value_is_one_rect_with_its_data_and_tooltip() -> None:
    root = parsed(chart())
    found = {(r.get("data-key"), r.get("data-bucket"), r.get("data-value")) for r in points(root)}
    assert found == {
        ("gpt-4o", "2026-03-01T12:00:00Z", "3.0"),
        ("o3", "2026-03-01T12:00:00Z", "1.0"),
        ("o3", "2026-03-01T12:20:00Z", "4.0"),
        ('<b>&evil"', "2026-03-01T12:50:00Z", "2.0"),
    }
    titles = [r.findtext(f"{SVG}title") for r in points(root)]
    assert "o3 · 2026-03-01 12:20 UTC · Requests: 4" in titles
    assert root.findtext("figcaption") == "Requests"
    legend = ["".join(li.itertext()).strip() for li in root.iter("li")]
    assert legend == ["gpt-4o", "o3", '<b>&evil"']


def test_keys_stack_in_order_with_heights_in_proportion() -> None:
    rects = {(r.get("data-key"), r.get("data-bucket")): r for r in points(parsed(chart()))}
    bottom = rects[("gpt-4o", "2026-03-01T12:00:00Z")]
    above = rects[("o3", "2026-03-01T12:00:00Z")]
    alone = rects[("o3", "2026-03-01T12:20:00Z")]
    height = {k: float(r.get("height", "0")) for k, r in rects.items()}
    # The first key at the bottom, the next on top of it, touching.
    assert float(above.get("y", "0")) + float(above.get("height", "0")) == pytest.approx(
        float(bottom.get("y", "0"))
    )
    assert float(bottom.get("height", "0")) == pytest.approx(3 * float(above.get("height", "0")))
    assert float(alone.get("height", "0")) == pytest.approx(4 * float(above.get("height", "0")))
    assert min(height.values()) > 0
    # The same key has the same colour everywhere, different keys different ones.
    assert above.get("fill") == alone.get("fill") != bottom.get("fill")


def test_no_inline_style_or_script() -> None:
    markup = str(figure(chart()))
    assert "style=" not in markup and "<script" not in markup and " on" not in markup.lower()
    assert "<b>" not in markup  # a key is text, escaped


def test_a_bucket_without_calls_has_no_point_and_an_empty_chart_has_axes() -> None:
    empty = parsed(chart(values={}))
    assert points(empty) == []
    labels = [t.text for t in empty.iter(f"{SVG}text")]
    assert "0" in labels and "Requests" in labels


def test_money_ticks_and_tooltips() -> None:
    root = parsed(chart(money=True, title="Cost (USD)", values={("o3", BUCKETS[1]): 0.00025}))
    labels = [t.text for t in root.iter(f"{SVG}text")]
    assert {"$0.0000", "$0.0001", "$0.0004"} <= set(labels)  # the ticks' precision
    (point,) = points(root)
    assert point.get("data-value") == "0.00025"
    assert (point.findtext(f"{SVG}title") or "").endswith("Cost (USD): $0.0003")


def test_names_replace_keys_in_the_legend_and_tooltips_only() -> None:
    root = parsed(chart(values={("", BUCKETS[0]): 2.0}, keys=[""], names={"": "(no user)"}))
    (point,) = points(root)
    assert point.get("data-key") == ""
    assert (point.findtext(f"{SVG}title") or "").startswith("(no user) ·")
    assert ["".join(li.itertext()).strip() for li in root.iter("li")] == ["(no user)"]


@pytest.mark.parametrize(
    ("highest", "whole", "top"),
    [(0, True, 4), (1, True, 4), (3, True, 4), (5, True, 8), (85, True, 100), (101, True, 200),
     (0.000249, False, 0.0004), (0.06, False, 0.08), (2.4, False, 4)],
)  # fmt: skip
def test_the_y_axis_top_is_round_and_above_the_highest_stack(
    highest: float, whole: bool, top: float
) -> None:
    assert nice_top(highest, whole) == pytest.approx(top)


def test_time_labels_fit_the_span() -> None:
    moment = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
    assert time_label(moment, timedelta(hours=1)) == "09:30"
    assert time_label(moment, timedelta(days=2)) == "03-01 09:30"
    assert time_label(moment, timedelta(days=30)) == "03-01"


@pytest.mark.parametrize(
    ("span", "seconds"),
    [(timedelta(hours=1), 60), (timedelta(hours=24), 600), (timedelta(days=7), 3600),
     (timedelta(days=30), 14400), (timedelta(days=1000), 604800)],
)  # fmt: skip
def test_the_bucket_is_the_shortest_within_200_bars(span: timedelta, seconds: int) -> None:
    until = datetime(2026, 3, 1, 9, 30, 17, tzinfo=UTC)
    assert bucket_for(until - span, until) == seconds
    buckets = Period(until - span, until, seconds).buckets()
    assert len(buckets) <= MAX_BUCKETS
    assert buckets[0] <= until - span < buckets[0] + timedelta(seconds=seconds)
    assert buckets[-1] < until <= buckets[-1] + timedelta(seconds=seconds)
    assert all(b.timestamp() % seconds == 0 for b in buckets)


def test_a_custom_range_is_read_as_utc() -> None:
    period, errors = custom_period({"since": "2026-03-01T08:00", "until": "2026-03-01T10:30"})
    assert errors == {} and period is not None
    assert period.since == datetime(2026, 3, 1, 8, 0, tzinfo=UTC)
    assert period.until == datetime(2026, 3, 1, 10, 30, tzinfo=UTC)
    assert period.bucket_seconds == 60
    _, errors = custom_period({"since": "2026-03-01T08:00+02:00", "until": "2026-03-02T08:00"})
    assert set(errors) == {"since"}
    _, errors = custom_period({"since": "2020-01-01T00:00", "until": "2026-01-01T00:00"})
    assert set(errors) == {"until"}
