"""Realistic, seeded eSIM identifiers: Luhn-valid ICCIDs, matching ids, SM-DP+ hosts, PIN/PUK.

A factory given a `generation` (a number claimed per simulator start and reset, see `generations.py`)
writes it into every ICCID and matching id, so two generations never issue the same identifiers, even from
the same seed:
ICCID = 8944 + generation (5 digits, more when it grows) + 9 seeded digits + Luhn digit, 19 digits for
the first 100,000 starts; matching id = generation in base 36 + three seeded groups. Without a generation
the identifiers are exactly those of the seed alone (reproducible tests).
"""

import random
import string

ICCID_PREFIX = "8944"  # 89 = telecom, 44 = UK country code, as on eSIM Go's own eSIMs
ICCID_LENGTH = 19
GENERATION_DIGITS = 5  # the generation's field in an ICCID; wider (so the ICCID longer) past 99,999
ICCID_MAX_LENGTH = 22  # ITU-T E.118 (and our database's CHECK): 18 to 22 digits
# Reserved `.test` hosts: obviously fake, never resolvable on the internet.
SMDP_ADDRESSES: tuple[str, ...] = ("rsp.sim.esim-go.test", "rsp2.sim.esim-go.test")
_MATCHING_ALPHABET = string.ascii_uppercase + string.digits


def luhn_check_digit(payload: str) -> str:
    total = 0
    # Double every second digit starting from the rightmost digit of the payload.
    for i, ch in enumerate(reversed(payload)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def is_luhn_valid(number: str) -> bool:
    return number.isdigit() and len(number) > 1 and luhn_check_digit(number[:-1]) == number[-1]


def _base36(n: int) -> str:
    digits = ""
    while True:
        n, r = divmod(n, 36)
        digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[r] + digits
        if n == 0:
            return digits


class IdentifierFactory:
    def __init__(self, rng: random.Random, generation: int | None = None) -> None:
        self._rng = rng
        self._issued_iccids: set[str] = set()
        self._issued_matching: set[str] = set()
        if generation is None:
            self._iccid_head, self._matching_head = ICCID_PREFIX, ""
        else:
            # Equal-length ICCIDs carry equal-width generation fields, so distinct generations never clash.
            head = ICCID_PREFIX + f"{generation:0{GENERATION_DIGITS}d}"
            if generation < 0 or len(head) + 9 + 1 > ICCID_MAX_LENGTH:
                raise ValueError(f"identifier generation {generation} does not fit in an ICCID")
            self._iccid_head = head
            self._matching_head = _base36(generation).rjust(4, "0") + "-"
        self._random_digits = max(ICCID_LENGTH - 1 - len(self._iccid_head), 9)
        self._matching_groups = 4 if generation is None else 3

    def iccid(self) -> str:
        while True:
            body = self._iccid_head + "".join(
                self._rng.choice(string.digits) for _ in range(self._random_digits)
            )
            iccid = body + luhn_check_digit(body)
            if iccid not in self._issued_iccids:
                self._issued_iccids.add(iccid)
                return iccid

    def matching_id(self) -> str:
        while True:
            mid = self._matching_head + "-".join(
                "".join(self._rng.choice(_MATCHING_ALPHABET) for _ in range(4))
                for _ in range(self._matching_groups)
            )
            if mid not in self._issued_matching:
                self._issued_matching.add(mid)
                return mid

    def smdp_address(self) -> str:
        return self._rng.choice(SMDP_ADDRESSES)

    def pin(self) -> str:
        return f"{self._rng.randrange(10_000):04d}"

    def puk(self) -> str:
        return f"{self._rng.randrange(100_000_000):08d}"
