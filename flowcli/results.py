"""What typed results share: every API result is a frozen dataclass that can be written as JSON."""

from __future__ import annotations

import dataclasses
import json


class JsonResult:
    """Mixin for result dataclasses: `as_dict()` and `to_json()` (the CLI's --json writes the latter)."""

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.as_dict(), indent=2, default=str)
