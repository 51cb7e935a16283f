"""Realistic, seeded eSIM identifiers: Luhn-valid ICCIDs, matching ids, SM-DP+ hosts, PIN/PUK."""

import random
import string

ICCID_PREFIX = "8944"  # 89 = telecom, 44 = UK country code, as on eSIM Go's own eSIMs
ICCID_LENGTH = 19
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


class IdentifierFactory:
    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._issued_iccids: set[str] = set()
        self._issued_matching: set[str] = set()

    def iccid(self) -> str:
        while True:
            body = ICCID_PREFIX + "".join(
                self._rng.choice(string.digits) for _ in range(ICCID_LENGTH - 1 - len(ICCID_PREFIX))
            )
            iccid = body + luhn_check_digit(body)
            if iccid not in self._issued_iccids:
                self._issued_iccids.add(iccid)
                return iccid

    def matching_id(self) -> str:
        while True:
            mid = "-".join("".join(self._rng.choice(_MATCHING_ALPHABET) for _ in range(4)) for _ in range(4))
            if mid not in self._issued_matching:
                self._issued_matching.add(mid)
                return mid

    def smdp_address(self) -> str:
        return self._rng.choice(SMDP_ADDRESSES)

    def pin(self) -> str:
        return f"{self._rng.randrange(10_000):04d}"

    def puk(self) -> str:
        return f"{self._rng.randrange(100_000_000):08d}"
