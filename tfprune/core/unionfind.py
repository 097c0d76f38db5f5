"""Disjoint sets, for channels that must be removed together and layers ranked together."""

from __future__ import annotations


class UnionFind:
    """Disjoint sets over hashable items, with path compression.

    Example:

    >>> sets = UnionFind()
    >>> sets.union("a", "b")
    >>> sets.find("b") == sets.find("a") != sets.find("c")
    True
    """

    def __init__(self):
        self.parent = {}

    def find(self, node):
        """The representative of `node`'s set (`node` itself if it was never joined)."""
        parent = self.parent.setdefault(node, node)
        if parent == node:
            return node
        root = self.find(parent)
        self.parent[node] = root
        return root

    def union(self, a, b) -> None:
        """Merge the sets of `a` and `b`."""
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra
