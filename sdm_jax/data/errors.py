"""The one exception the data layer raises for bad input."""

from __future__ import annotations


class DataError(ValueError):
    """Bad data or a bad data spec, reported in one line naming the file, column and row."""
