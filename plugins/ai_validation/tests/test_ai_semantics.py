"""Semantic validation on the labelled pairs, against the lexical baseline."""

from __future__ import annotations

import json

import pytest
from conftest import DATA
from pulse_ai_validation.catalog import ANALYTICS_CATALOG, catalog_from_document
from pulse_ai_validation.semantics import judge, lexical_overlap, words


def _figures(name: str) -> dict[str, float]:
    pairs = json.loads((DATA / name).read_text())
    rows = []
    for pair in pairs:
        right = judge(pair["question"], pair["right"], ANALYTICS_CATALOG).confidence
        wrong = judge(pair["question"], pair["wrong"], ANALYTICS_CATALOG).confidence
        rows.append((right, wrong, lexical_overlap(pair["question"], pair["right"]),
                     lexical_overlap(pair["question"], pair["wrong"])))

    def paired(i: int, j: int) -> float:
        return sum(1.0 if r[i] > r[j] else 0.5 if r[i] == r[j] else 0 for r in rows) / len(rows)

    def auroc(i: int, j: int) -> float:
        wins = sum(1.0 if a[i] > b[j] else 0.5 if a[i] == b[j] else 0
                   for a in rows for b in rows)
        return wins / len(rows) ** 2

    return {"pairs": len(rows), "paired": paired(0, 1), "auroc": auroc(0, 1),
            "lexical_paired": paired(2, 3), "lexical_auroc": auroc(2, 3)}


@pytest.mark.parametrize("name", ["semantic_pairs.json", "semantic_pairs_holdout.json"])
def test_targets_are_met_and_the_baseline_is_beaten(name: str) -> None:
    figures = _figures(name)
    assert figures["pairs"] >= 30
    assert figures["paired"] >= 0.75 and figures["auroc"] >= 0.70, figures
    assert figures["paired"] > figures["lexical_paired"] + 0.15, figures
    assert figures["auroc"] > figures["lexical_auroc"] + 0.15, figures


def test_deterministic_and_explained() -> None:
    question = "Top 5 repositories by number of commits in the last 30 days"
    sql = ("SELECT r.name, count(*) AS n FROM commits c JOIN repositories r ON r.id = "
           "c.repository_id WHERE c.authored_at >= now() - interval '30 days' GROUP BY r.name "
           "ORDER BY n DESC LIMIT 5")
    first, second = judge(question, sql, ANALYTICS_CATALOG), judge(question, sql,
                                                                     ANALYTICS_CATALOG)
    assert first.as_dict() == second.as_dict()
    assert first.confidence > 0.9
    assert {r["aspect"] for r in first.reasons} >= {"entity", "measure", "ordering", "limit",
                                                    "time_window"}
    wrong = judge(question, sql.replace("LIMIT 5", "LIMIT 50"), ANALYTICS_CATALOG)
    assert wrong.confidence < first.confidence
    [limit] = [r for r in wrong.reasons if r["aspect"] == "limit"]
    assert limit["effect"] < 0 and "LIMIT 50" in limit["message"]


def test_unparsable_sql_scores_low() -> None:
    assert judge("How many commits?", "SELEC count(*) FROM", ANALYTICS_CATALOG).confidence < 0.1
    assert judge("How many commits?", "SELECT 1; SELECT 2", ANALYTICS_CATALOG).confidence < 0.1


def test_words_match_case_snake_case_plurals_and_synonyms() -> None:
    assert words("Deploys of PRs by Repos") == ["deployment", "pull_request", "per_by",
                                                 "repository"]
    catalog = catalog_from_document({"tables": [{"name": "WorkOrders", "columns": [
        {"name": "OrderId", "type": "number"}, {"name": "CustomerName", "type": "text"},
        {"name": "amount", "type": "number"}]}]})
    answer = judge("Mean amount per customer name", "SELECT CustomerName, avg(amount) FROM "
                   "WorkOrders GROUP BY CustomerName", catalog)
    worse = judge("Mean amount per customer name", "SELECT avg(amount) FROM WorkOrders",
                  catalog)
    assert answer.confidence > 0.8 > 0.5 > worse.confidence


def test_recorded_feedback_moves_the_confidence() -> None:
    question = "How many production deployments?"
    sql = "SELECT count(*) FROM deployments WHERE environment = 'prod'"
    fixed = "SELECT count(*) FROM deployments WHERE environment = 'production'"
    memory = [{"question": "production deployments count", "failed_sql": sql,
               "corrected_sql": fixed, "outcome": "fixed"}]
    plain = judge(question, sql, ANALYTICS_CATALOG).confidence
    learned = judge(question, sql, ANALYTICS_CATALOG, memory)
    assert learned.confidence < plain
    assert [r["aspect"] for r in learned.reasons].count("learned") == 1
    assert judge(question, fixed, ANALYTICS_CATALOG, memory).confidence > judge(
        question, fixed, ANALYTICS_CATALOG).confidence
