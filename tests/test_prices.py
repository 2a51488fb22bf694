"""The price table: which entry prices a model and what a call cost (controlplane/
pricing.py, no processes), then the table through the Admin API: seeded with the shipped
prices, set, deleted and imported as mutations with audit entries, every bad input
refused naming its field (an import's, the entry) with nothing written. SQLite and
PostgreSQL."""

from __future__ import annotations

import json
import math
from typing import Any

import grpc
import pytest

from aibridge.v1 import admin_pb2
from controlplane import pricing
from controlplane.errors import InvalidArgument
from controlplane.pricing import PriceEntry, PriceTable
from tests.harness import Controlplane, refused

# --- pricing.py ---------------------------------------------------------------------------

ENTRIES = [
    PriceEntry("gpt-5*", 1.25, 10, 0.125, 1.25),
    PriceEntry("gpt-5-mini*", 0.25, 2, 0.025, 0.25),
    PriceEntry("gpt-5-mini-2025-08-07", 9, 9, 9, 9),
    PriceEntry("claude-sonnet-4-5*", 3, 15, 0.3, 3.75),
    PriceEntry("claude-*", 100, 100, 100, 100),
]
TABLE = PriceTable(ENTRIES)


@pytest.mark.parametrize(
    ("model", "priced_by"),
    [
        ("gpt-5-mini-2025-08-07", "gpt-5-mini-2025-08-07"),  # exact beats any pattern
        ("gpt-5-mini-2026-01-01", "gpt-5-mini*"),  # the longest matching pattern
        ("gpt-5-mini", "gpt-5-mini*"),
        ("gpt-5.1", "gpt-5*"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5*"),
        ("claude-haiku-4-5", "claude-*"),
    ],
)
def test_the_most_specific_entry_prices_a_model(model: str, priced_by: str) -> None:
    entry = TABLE.find(model)
    assert entry is not None and entry.model == priced_by


@pytest.mark.parametrize("model", ["GPT-5", "o3", "", "xgpt-5"])
def test_a_model_no_entry_matches_is_unpriced(model: str) -> None:
    assert TABLE.find(model) is None
    assert TABLE.cost("openai", model, 10, 5, 0, 0) is None


def test_a_table_matches_the_patterns_once_per_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pricing a batch's calls matches a model's name against the patterns once, not per
    call (each one costs a pass over every pattern, inside the ingest's transaction)."""
    matched: list[str] = []
    real = pricing.fnmatchcase

    def counting(name: str, pattern: str) -> bool:
        matched.append(name)
        return real(name, pattern)

    monkeypatch.setattr(pricing, "fnmatchcase", counting)
    table = PriceTable(ENTRIES)
    for _ in range(100):
        assert table.cost("openai", "gpt-5-mini-2026-01-01", 10, 5, 0, 0) is not None
        assert table.cost("openai", "mystery", 10, 5, 0, 0) is None
    assert set(matched) == {"gpt-5-mini-2026-01-01", "mystery"}
    assert len(matched) <= 2 * len(ENTRIES)


def test_anthropic_counts_cache_tokens_apart_from_input() -> None:
    # 1M input, 1M output, 1M cache read, 1M cache write: four separate kinds of token.
    cost = TABLE.cost("anthropic", "claude-sonnet-4-5", 1_000_000, 1_000_000, 1_000_000, 1_000_000)
    assert cost == pytest.approx(3 + 15 + 0.3 + 3.75)
    assert TABLE.cost("bedrock", "claude-sonnet-4-5", 1000, 0, 0, 0) == pytest.approx(0.003)


def test_openai_counts_cached_tokens_inside_input() -> None:
    # 1M input of which 400k were read from the cache: 600k at the input price.
    cost = TABLE.cost("openai", "gpt-5", 1_000_000, 100_000, 400_000, 0)
    assert cost == pytest.approx(0.6 * 1.25 + 0.1 * 10 + 0.4 * 0.125)
    # Counts that do not add up never make a negative uncached part.
    assert TABLE.cost("openai", "gpt-5", 100, 0, 400, 0) == pytest.approx(400 * 0.125 / 1e6)


def test_a_call_that_used_no_tokens_costs_nothing_priced_or_not() -> None:
    assert TABLE.cost("openai", "gpt-5", 0, 0, 0, 0) == 0.0
    assert TABLE.cost("openai", "unknown-model", 0, 0, 0, 0) == 0.0
    assert PriceTable([]).cost("anthropic", "", 0, 0, 0, 0) == 0.0


def test_a_cache_price_left_out_is_the_input_price() -> None:
    assert pricing.entry("m", 2, 8) == PriceEntry("m", 2.0, 8.0, 2.0, 2.0)
    assert pricing.entry("m", 2, 8, 0.5) == PriceEntry("m", 2.0, 8.0, 0.5, 2.0)
    assert pricing.entry("m", 2, 8, cache_write=0) == PriceEntry("m", 2.0, 8.0, 2.0, 0.0)


@pytest.mark.parametrize(
    ("text", "field"),
    [
        ("not json", "file"),
        ('{"rows": []}', "file"),
        ('[{"model": "a", "input": 1, "output": 1}, 7]', "prices[2].entry"),
        ('[{"model": "a", "input": 1}]', "prices[1].output"),
        ('[{"model": "a", "input": 1, "output": 1, "cost": 3}]', "prices[1].cost"),
        ('[{"model": "a", "input": "1", "output": 1}]', "prices[1].input"),
        ('[{"model": "a", "input": true, "output": 1}]', "prices[1].input"),
        ('[{"model": "a", "input": -1, "output": 1}]', "prices[1].input"),
        ('[{"model": "a", "input": 1, "output": 1e7}]', "prices[1].output"),
        ('[{"model": "a b", "input": 1, "output": 1}]', "prices[1].model"),
        ('[{"model": 5, "input": 1, "output": 1}]', "prices[1].model"),
    ],
)
def test_a_bad_price_file_names_the_entry(text: str, field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        pricing.parse_file(text)
    assert caught.value.field == field


def test_a_price_file_with_a_model_twice_is_refused_naming_both() -> None:
    entries = [{"model": f"m{n}", "input": 1, "output": 1} for n in range(5)]
    entries[4]["model"] = "m1"
    with pytest.raises(InvalidArgument) as caught:
        pricing.parse_file(json.dumps({"prices": entries}))
    assert caught.value.field == "prices[5].model"
    assert caught.value.message == "'m1' is also prices[2]"


def test_the_shipped_table_parses_and_says_its_date() -> None:
    entries = pricing.shipped()
    assert len(entries) >= 20 and len({e.model for e in entries}) == len(entries)
    assert pricing.shipped_as_of()[:2] == "20" and len(pricing.shipped_as_of()) == 10
    table = PriceTable(entries)
    for model in ("gpt-5", "claude-sonnet-4-5-20250929", "claude-opus-4-5-20251101"):
        assert table.find(model) is not None, model


@pytest.mark.parametrize(
    ("model", "priced_by", "input", "output"),
    [
        ("o1-pro-2025-03-19", "o1-pro*", 150, 600),
        ("o1-mini-2024-09-12", "o1-mini*", 1.1, 4.4),
        ("o1-2024-12-17", "o1*", 15, 60),
        ("o3-deep-research-2025-06-26", "o3-deep-research*", 10, 40),
        ("o4-mini-deep-research-2025-06-26", "o4-mini-deep-research*", 2, 8),
        ("o4-mini-2025-04-16", "o4-mini*", 1.1, 4.4),
        ("gpt-4o-2024-05-13", "gpt-4o-2024-05-13", 5, 15),
        ("gpt-4o-2024-08-06", "gpt-4o*", 2.5, 10),
    ],
)
def test_the_shipped_table_prices_known_models(
    model: str, priced_by: str, input: float, output: float
) -> None:
    entry = PriceTable(pricing.shipped()).find(model)
    assert entry is not None
    assert (entry.model, entry.input, entry.output) == (priced_by, input, output)


# --- the Admin API ------------------------------------------------------------------------


def prices(cp: Controlplane) -> dict[str, tuple[float, float, float, float]]:
    listing = cp.admin.ListPrices(admin_pb2.ListPricesRequest()).prices
    return {p.model: (p.input, p.output, p.cache_read, p.cache_write) for p in listing}


def shipped() -> dict[str, tuple[float, float, float, float]]:
    return {e.model: (e.input, e.output, e.cache_read, e.cache_write) for e in pricing.shipped()}


def last_audit(cp: Controlplane) -> tuple[str, str, int, dict[str, Any]]:
    (e,) = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=1)).entries
    return e.action, e.target, e.revision, json.loads(e.details)


def test_set_and_delete_prices_over_the_shipped_table(controlplane: Controlplane) -> None:
    cp = controlplane
    listing = cp.admin.ListPrices(admin_pb2.ListPricesRequest())
    assert [p.model for p in listing.prices] == sorted(shipped())
    assert prices(cp) == shipped()
    assert all(p.HasField("updated_at") for p in listing.prices)
    start = listing.revision

    made = cp.admin.SetPrice(admin_pb2.SetPriceRequest(model="my-model*", input=2.5, output=10))
    assert made.revision == start + 1
    assert (made.price.model, made.price.cache_read, made.price.cache_write) == (
        "my-model*", 2.5, 2.5,
    )  # fmt: skip
    assert last_audit(cp) == (
        "price.set", "my-model*", start + 1,
        {"before": None,
         "after": {"input": 2.5, "output": 10.0, "cache_read": 2.5, "cache_write": 2.5}},
    )  # fmt: skip

    changed = cp.admin.SetPrice(
        admin_pb2.SetPriceRequest(
            model="my-model*", input=3, output=12, cache_read=0.3, cache_write=0
        )
    )
    assert prices(cp)["my-model*"] == (3.0, 12.0, 0.3, 0.0)
    assert last_audit(cp)[3]["before"] == {
        "input": 2.5, "output": 10.0, "cache_read": 2.5, "cache_write": 2.5,
    }  # fmt: skip

    gone = cp.admin.DeletePrice(admin_pb2.DeletePriceRequest(model="my-model*"))
    assert (gone.revision, gone.model) == (changed.revision + 1, "my-model*")
    assert last_audit(cp)[:2] == ("price.delete", "my-model*")
    assert prices(cp) == shipped()
    details = refused(
        cp, grpc.StatusCode.NOT_FOUND, cp.admin.DeletePrice,
        admin_pb2.DeletePriceRequest(model="my-model*"),
    )  # fmt: skip
    assert details == "no price for 'my-model*'"

    stale = admin_pb2.SetPriceRequest(model="x", input=1, output=1, expected_revision=start)
    refused(cp, grpc.StatusCode.ABORTED, cp.admin.SetPrice, stale)
    assert "x" not in prices(cp)


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"model": "", "input": 1, "output": 1}, "model"),
        ({"model": "gpt 5", "input": 1, "output": 1}, "model"),
        ({"model": "m" * 201, "input": 1, "output": 1}, "model"),
        ({"model": "m\x07", "input": 1, "output": 1}, "model"),
        ({"model": "m", "input": -0.5, "output": 1}, "input"),
        ({"model": "m", "input": math.nan, "output": 1}, "input"),
        ({"model": "m", "input": 1, "output": math.inf}, "output"),
        ({"model": "m", "input": 1, "output": 1_000_001}, "output"),
        ({"model": "m", "input": 1, "output": 1, "cache_read": -1}, "cache_read"),
        ({"model": "m", "input": 1, "output": 1, "cache_write": math.nan}, "cache_write"),
    ],
)
def test_a_bad_price_is_refused_naming_the_field(
    shared_controlplane: Controlplane, fields: dict[str, Any], field: str
) -> None:
    cp = shared_controlplane
    before = prices(cp)
    request = admin_pb2.SetPriceRequest(**fields)
    refused(cp, grpc.StatusCode.INVALID_ARGUMENT, cp.admin.SetPrice, request, field)
    imported = admin_pb2.ImportPricesRequest(
        prices=[
            admin_pb2.Price(model="fine", input=1, output=1),
            admin_pb2.Price(**{k: v for k, v in fields.items()}),
        ]
    )
    refused(
        cp, grpc.StatusCode.INVALID_ARGUMENT, cp.admin.ImportPrices, imported, f"prices[2].{field}"
    )
    assert prices(cp) == before


def test_an_import_holds_at_most_2000_entries(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    before = prices(cp)
    too_many = admin_pb2.ImportPricesRequest(
        prices=[admin_pb2.Price(model=f"m{n}", input=1, output=1) for n in range(2001)]
    )
    details = refused(
        cp, grpc.StatusCode.INVALID_ARGUMENT, cp.admin.ImportPrices, too_many, "prices"
    )
    assert "at most 2,000 entries" in details
    assert prices(cp) == before


def test_delete_takes_a_valid_model(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    request = admin_pb2.DeletePriceRequest(model="")
    refused(cp, grpc.StatusCode.INVALID_ARGUMENT, cp.admin.DeletePrice, request, "model")


def price(model: str, input: float, output: float, cache: float = 0.0) -> admin_pb2.Price:
    return admin_pb2.Price(
        model=model, input=input, output=output, cache_read=cache, cache_write=cache
    )


def test_import_sets_all_at_once_and_replace_deletes_the_rest(controlplane: Controlplane) -> None:
    cp = controlplane
    start = cp.admin.revision()
    twice = admin_pb2.ImportPricesRequest(prices=[price("a", 1, 2), price("a", 3, 4)])
    details = refused(
        cp, grpc.StatusCode.INVALID_ARGUMENT, cp.admin.ImportPrices, twice, "prices[2].model"
    )
    assert "appears twice" in details

    done = cp.admin.ImportPrices(
        admin_pb2.ImportPricesRequest(prices=[price("new-model", 1, 2), price("gpt-5*", 9, 9, 1)])
    )
    assert (done.revision, done.imported, done.deleted) == (start + 1, 2, 0)
    assert prices(cp) == shipped() | {"new-model": (1, 2, 0, 0), "gpt-5*": (9, 9, 1, 1)}
    assert last_audit(cp) == (
        "prices.import", "2 prices", start + 1, {"imported": 2, "deleted": 0, "replace": False},
    )  # fmt: skip

    replaced = cp.admin.ImportPrices(
        admin_pb2.ImportPricesRequest(
            prices=[price("gpt-5*", 1.25, 10, 0.125), price("only-one", 1, 1)], replace=True
        )
    )
    assert (replaced.imported, replaced.deleted) == (2, len(shipped()))
    assert prices(cp) == {"gpt-5*": (1.25, 10, 0.125, 0.125), "only-one": (1, 1, 0, 0)}
    assert last_audit(cp)[3] == {"imported": 2, "deleted": len(shipped()), "replace": True}

    emptied = cp.admin.ImportPrices(admin_pb2.ImportPricesRequest(replace=True))
    assert (emptied.imported, emptied.deleted) == (0, 2)
    assert prices(cp) == {}
