"""Privacy operations on the loaded rows, for the requests operators get: which logins came
from this ip or device (lookup), delete everything about this person (erase), read back a row's
raw values (unmask, siv mode only) and move rows off a retired key (rekey).

people.py    lookup and erase, by ip, device_id, user_id or an extra field; the erased ids
             kept for the loader
recovery.py  unmask and rekey of recoverable (siv) rows

The values asked about are never logged; erase and unmask are logged as events (counts, key
ids, message ids), so both are audited.
"""

from .people import EraseResult, LookupResult, Person, erase, extra_field, lookup
from .recovery import RekeyReport, Unmasked, rekey, unmask

__all__ = [
    "EraseResult",
    "LookupResult",
    "Person",
    "RekeyReport",
    "Unmasked",
    "erase",
    "extra_field",
    "lookup",
    "rekey",
    "unmask",
]
