"""Fusion methods: hand-computed scores, ties, empty lists, one-sided documents, the weight extremes."""

from __future__ import annotations

import math

import pytest

from app.search.fusion import Fusion, min_max, reciprocal_rank_fusion, weighted_sum, z_scores

KEYWORD = [("a", 12.0), ("b", 8.0), ("c", 4.0)]
VECTOR = [("c", 0.9), ("d", 0.8), ("a", 0.5)]


def ids(fused: list[tuple[str, float]]) -> list[str]:
    return [i for i, _ in fused]


# --- RRF ---------------------------------------------------------------------------------------------
def test_rrf_scores_by_hand():
    fused = dict(reciprocal_rank_fusion([["a", "b", "c"], ["c", "d", "a"]], k=60))
    assert fused["a"] == pytest.approx(1 / 61 + 1 / 63)
    assert fused["c"] == pytest.approx(1 / 63 + 1 / 61)
    assert fused["b"] == pytest.approx(1 / 62)
    assert fused["d"] == pytest.approx(1 / 62)


def test_rrf_ties_keep_first_seen_order():
    # a and c tie, b and d tie: the earlier list's id comes first
    assert ids(reciprocal_rank_fusion([["a", "b", "c"], ["c", "d", "a"]], k=60)) == ["a", "c", "b", "d"]


def test_rrf_k_changes_the_order():
    # x: rank 1 in one list only; y: rank 3 in both. A small k favours the single top rank.
    lists = [["x", "p", "y"], ["q", "r", "y"]]
    assert ids(reciprocal_rank_fusion(lists, k=1))[0] == "x"
    assert ids(reciprocal_rank_fusion(lists, k=60))[0] == "y"


def test_rrf_empty_lists():
    assert reciprocal_rank_fusion([[], []]) == []
    assert ids(reciprocal_rank_fusion([[], ["a", "b"]])) == ["a", "b"]


# --- normalization -------------------------------------------------------------------------------------
def test_min_max_by_hand():
    assert min_max(KEYWORD) == [("a", 1.0), ("b", 0.5), ("c", 0.0)]
    assert min_max([("a", 3.0), ("b", 3.0)]) == [("a", 1.0), ("b", 1.0)]  # no spread: all best
    assert min_max([("a", -2.0)]) == [("a", 1.0)]
    assert min_max([]) == []


def test_z_scores_by_hand():
    # mean 8, population standard deviation sqrt(32 / 3)
    sd = math.sqrt(32 / 3)
    assert z_scores(KEYWORD) == [("a", pytest.approx(4 / sd)), ("b", 0.0), ("c", pytest.approx(-4 / sd))]
    # nothing to standardize against: the candidates are the top, as min-max says (not 0.0, "average")
    assert z_scores([("a", 5.0), ("b", 5.0)]) == [("a", 1.0), ("b", 1.0)]
    assert z_scores([("a", 0.83)]) == [("a", 1.0)]
    assert z_scores([]) == []


# --- weighted sums -----------------------------------------------------------------------------------
def test_minmax_weighted_sum_by_hand():
    # keyword a 1, b .5, c 0; vector c 1, d .75, a 0 (absent: the list's floor, 0)
    fused = dict(Fusion("minmax", weight_vector=0.5).fuse(KEYWORD, VECTOR))
    assert fused == pytest.approx({"a": 0.5, "b": 0.25, "c": 0.5, "d": 0.375})
    fused = dict(Fusion("minmax", weight_vector=0.8).fuse(KEYWORD, VECTOR))
    assert fused == pytest.approx({"a": 0.2, "b": 0.1, "c": 0.8, "d": 0.6})


def test_a_document_in_one_list_gets_the_other_lists_floor():
    fused = dict(weighted_sum([("a", 1.0), ("b", -1.0)], [("c", 2.0)], 0.5))
    assert fused == {"a": 0.5 * 2.0 + 0.5 * 1.0, "b": 0.5 * 2.0 + 0.5 * -1.0, "c": 0.5 * 2.0 + 0.5 * -1.0}
    # b and c tie: at weight 0.5 the keyword list's order decides first, so b (in it) precedes c
    assert ids(weighted_sum([("a", 1.0), ("b", -1.0)], [("c", 2.0)], 0.5)) == ["a", "b", "c"]


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_weight_0_is_the_keyword_order_and_1_the_vector_order(method):
    keyword = [("k1", 9.0), ("shared", 7.5), ("k3", 7.0), ("k4", 1.0)]
    vector = [("v1", 0.91), ("v2", 0.9), ("shared", 0.5), ("v4", 0.2)]
    only_keyword = ids(Fusion(method, weight_vector=0.0).fuse(keyword, vector))
    assert only_keyword[:4] == ids(keyword)
    assert only_keyword[4:] == ["v1", "v2", "v4"]  # the other retriever's extras, in its order, after
    only_vector = ids(Fusion(method, weight_vector=1.0).fuse(keyword, vector))
    assert only_vector[:4] == ids(vector)
    assert only_vector[4:] == ["k1", "k3", "k4"]


@pytest.mark.parametrize("method", ["rrf", "minmax", "zscore"])
def test_empty_lists(method):
    fusion = Fusion(method)  # type: ignore[arg-type]
    assert fusion.fuse([], []) == []
    assert ids(fusion.fuse([], VECTOR)) == ids(VECTOR)
    assert ids(fusion.fuse(KEYWORD, [])) == ids(KEYWORD)


@pytest.mark.parametrize("method", ["minmax", "zscore"])
def test_ties_are_deterministic(method):
    keyword = [("b", 1.0), ("a", 1.0)]
    vector = [("a", 1.0), ("b", 1.0)]
    first = Fusion(method, weight_vector=0.5).fuse(keyword, vector)
    assert first == Fusion(method, weight_vector=0.5).fuse(keyword, vector)
    assert ids(first) == ["b", "a"]  # equal scores: keyword rank decides at weight 0.5
    assert ids(Fusion(method, weight_vector=0.6).fuse(keyword, vector)) == ["a", "b"]  # vector rank above 0.5


def test_fusion_validates_and_labels():
    assert Fusion().label == "rrf k=60"
    assert Fusion("minmax", weight_vector=0.3).label == "minmax w=0.3"
    with pytest.raises(ValueError, match="weight_vector"):
        Fusion("minmax", weight_vector=1.5)
    with pytest.raises(ValueError, match="k must be"):
        Fusion("rrf", k=0)
    with pytest.raises(ValueError, match="method"):
        Fusion("borda")  # type: ignore[arg-type]


def test_a_lone_result_of_both_retrievers_does_not_score_zero():
    fused = Fusion("zscore", weight_vector=0.5).fuse([("only", 7.2)], [("only", 0.81)])
    assert fused == [("only", pytest.approx(1.0))]
