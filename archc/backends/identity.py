"""Sets and maps of IR items by identity, holding the items they name.

An emitter remembers facts about one occurrence of an item (this conv takes in the relu after
it), and equal frozen items at two places are two occurrences, so the key is the object, not
its value. Keying a plain dict by `id(item)` is wrong as soon as an item is a temporary (a
renamed copy made while printing): once it is freed, the next temporary can get the same id
and inherit its facts. These containers keep every key alive while they hold it, so an id in
them always names the object it was stored for."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, MutableMapping, MutableSet
from typing import Any, Generic, TypeVar

V = TypeVar("V")


class IdentitySet(MutableSet[Any]):
    """A set of objects compared by identity."""

    def __init__(self, items: Iterable[Any] = ()) -> None:
        self._items: dict[int, Any] = {id(item): item for item in items}

    def __contains__(self, item: object) -> bool:
        return id(item) in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def add(self, item: Any) -> None:
        self._items[id(item)] = item

    def discard(self, item: Any) -> None:
        self._items.pop(id(item), None)


class IdentityMap(MutableMapping[Any, V], Generic[V]):
    """A mapping from objects, compared by identity, to values."""

    def __init__(self, pairs: Iterable[tuple[Any, V]] = ()) -> None:
        self._pairs: dict[int, tuple[Any, V]] = {id(key): (key, value) for key, value in pairs}

    def __getitem__(self, key: Any) -> V:
        try:
            return self._pairs[id(key)][1]
        except KeyError:
            raise KeyError(key) from None

    def __setitem__(self, key: Any, value: V) -> None:
        self._pairs[id(key)] = (key, value)

    def __delitem__(self, key: Any) -> None:
        del self._pairs[id(key)]

    def __iter__(self) -> Iterator[Any]:
        return (key for key, _ in self._pairs.values())

    def __len__(self) -> int:
        return len(self._pairs)
