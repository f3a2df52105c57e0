"""fedreq.Responses behaves as Fed-BioMed v4.4's Responses."""

import pytest

from fedreq import Responses


def test_responses_hold_unique_replies_indexed_by_node():
    a, b = {"node_id": "a", "x": 1}, {"node_id": "b", "x": 2}
    responses = Responses([a, b, a])
    assert len(responses) == 2 and responses[1] == b and responses.data() == [a, b]
    assert responses.get_index_from_node_id("b") == 1
    assert responses.get_index_from_node_id("c") is None
    assert Responses(a).data() == [a]
    assert repr(responses) == repr([a, b])


def test_append_takes_a_dict_a_list_or_responses():
    responses = Responses([])
    responses.append({"node_id": "a"})
    responses.append([{"node_id": "b"}, Responses({"node_id": "c"})])
    responses.append(Responses([{"node_id": "d"}]))
    assert [r["node_id"] for r in responses] == ["a", "b", "c", "d"]
    assert responses.get_index_from_node_id("d") == 3
    with pytest.raises(TypeError):
        responses.append(3)
    with pytest.raises(TypeError):
        Responses("a")


def test_set_data_and_dataframe():
    responses = Responses([])
    responses.set_data([{"node_id": "a", "v": 1}, {"node_id": "b", "v": 2}])
    assert responses.get_index_from_node_id("b") == 1
    frame = responses.dataframe()
    assert list(frame["v"]) == [1, 2]
