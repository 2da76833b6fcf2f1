"""A small inventory module: loopcoder completes the function body at line 15."""

from dataclasses import dataclass


@dataclass
class Item:
    name: str
    price: float
    quantity: int


def total_value(items: list[Item]) -> float:
    """Return the total value of all items in stock."""
    
