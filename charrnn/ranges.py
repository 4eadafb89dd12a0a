"""The numbers a config value may take: a Range per key, read by charrnn.config for its own keys and by
each optimizer's row (charrnn.optim.OPTIMIZERS) for the optimizer's."""

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Range:
    """The numbers a key may take: low < v (or low <= v with low_closed), v < high (or <= with high_closed).
    A value must also be finite, and whole where the schema says int; null passes where the schema allows it."""

    low: float = -math.inf
    high: float = math.inf
    low_closed: bool = False
    high_closed: bool = False

    def holds(self, v) -> bool:
        above = v >= self.low if self.low_closed else v > self.low
        below = v <= self.high if self.high_closed else v < self.high
        return above and below

    def describe(self) -> str:
        """What a value must be, after the key: "train.min_lr must not be negative"."""
        if self == POSITIVE:
            return "must be positive"
        if self == NON_NEGATIVE:
            return "must not be negative"
        opening, closing = "[" if self.low_closed else "(", "]" if self.high_closed else ")"
        return f"must be in {opening}{self.low:g}, {self.high:g}{closing}"


POSITIVE = Range(low=0)
NON_NEGATIVE = Range(low=0, low_closed=True)
FRACTION = Range(low=0, high=1)                                    # (0, 1)
DECAY = Range(low=0, high=1, low_closed=True)                      # [0, 1): a decay rate, or a dropout probability
PROBABILITY_MASS = Range(low=0, high=1, high_closed=True)          # (0, 1]
