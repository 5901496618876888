"""pv's pytest ``user_properties`` as JSON text.

pytest's JUnit XML writes a property value with ``str()``, so a dict would appear
as a Python repr; pv records every property value as JSON instead, which JUnit
consumers and the gate report both read.
"""

from __future__ import annotations

import json
from typing import Any


def encode_property(value: Any) -> str:
    """The JSON text recorded for a property value (keys sorted, so equal values read the same)."""
    return json.dumps(value, sort_keys=True)


def decode_property(value: Any) -> Any:
    """A recorded property value: JSON text is parsed; a value recorded as an object is kept."""
    return json.loads(value) if isinstance(value, str) else value
