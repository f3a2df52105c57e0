"""``Responses``: the replies of a request, as Fed-BioMed v4.4's ``Responses`` holds them."""

from typing import Any, Dict, Iterable, List, Optional, Union


class Responses:
    """Replies (dicts) without duplicates, indexable, with the index of each node's reply.

    The same methods as Fed-BioMed v4.4's ``fedbiomed.researcher.responses.Responses``:
    ``data()``, ``set_data()``, ``append()``, ``dataframe()`` (with pandas), indexing, ``len()``
    and ``get_index_from_node_id()``.
    """

    def __init__(self, data: Union[List[Dict[str, Any]], Dict[str, Any]]):
        self._data: List[Dict[str, Any]] = []
        self._map_node: Dict[str, int] = {}
        if isinstance(data, dict):
            self._add(data)
        elif isinstance(data, list):
            for item in data:
                if item not in self._data:
                    self._add(item)
        else:
            raise TypeError(f"data should be a list or a dict, not {type(data).__name__}")

    def _add(self, response: Dict[str, Any]) -> None:
        self._data.append(response)
        node_id = response.get("node_id") if isinstance(response, dict) else None
        if node_id is not None:
            self._map_node[node_id] = len(self._data) - 1

    def __getitem__(self, item: int) -> Dict[str, Any]:
        return self._data[item]

    def __len__(self) -> int:
        return len(self._data)

    def __iter__(self):
        return iter(self._data)

    def __repr__(self) -> str:
        return repr(self._data)

    __str__ = __repr__

    def data(self) -> List[Dict[str, Any]]:
        """Every reply."""
        return self._data

    def set_data(self, data: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """Replaces the replies with ``data``."""
        if not isinstance(data, list):
            raise TypeError(f"data should be a list, not {type(data).__name__}")
        self._data, self._map_node = [], {}
        for item in data:
            self._add(item)
        return self._data

    def append(self, response: Union[List[Dict[str, Any]], Dict[str, Any], "Responses"]) -> List[Dict[str, Any]]:
        """Adds a reply, a list of replies or another ``Responses``; returns every reply."""
        if isinstance(response, dict):
            self._add(response)
        elif isinstance(response, (list, Responses)):
            items: Iterable[Any] = response.data() if isinstance(response, Responses) else response
            for item in items:
                self.append(item)
        else:
            raise TypeError(f"append takes a dict, a list or Responses, not {type(response).__name__}")
        return self._data

    def get_index_from_node_id(self, node_id: str) -> Optional[int]:
        """The index of the latest reply of ``node_id``, None if it sent none."""
        return self._map_node.get(node_id)

    def dataframe(self):
        """The replies as a pandas DataFrame, one row each (needs pandas)."""
        import pandas as pd

        return pd.DataFrame(self._data)
