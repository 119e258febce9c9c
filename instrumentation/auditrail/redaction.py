"""No secret in any event: the always-on deny-list of keys, key normalisation, and the scrubbing of text.

A payload key is redacted when its normalised form contains a deny term as a substring: NFKC-style
compatibility folding (fullwidth letters), diacritics dropped, Cyrillic/Greek/other look-alikes of Latin
letters mapped to them (Unicode's confusables data, via `confusable_homoglyphs`), case folded, and every
character that is not a letter or digit dropped (`_`, `-`, `.`, spaces, zero-width characters). So
`x-api-key`, `api_key_id`, `OPENAI_API_KEY`, `ａｐｉ＿ｋｅｙ` and `аpi_kеy` (Cyrillic а, е) all contain `apikey`.

Text (string values at any depth, exception messages, `audit.reason`) is scrubbed for the shapes secrets
take inside it: `key=value` / `key: value` / `"key": "value"` with a denied key, `Bearer <token>`, URL
passwords (`scheme://user:pw@host`), PEM private keys, well-known credential formats, card numbers
(Luhn-valid, with a card network's prefix and length), and JSON text, which is cleaned as JSON.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

REDACTED = "[REDACTED]"

# Normalised terms (see normalise_key); a key that contains one is redacted. The idea is sentry-python's
# default deny-list (relay's), matched as substrings so `password1`, `x_api_key`, `stripe_secret_key` hit.
DENY_TERMS: tuple[str, ...] = (
    "password", "passwd", "passphrase", "passcode", "pwd",            # passwords
    "secret",                                                         # client_secret, secret_key, ...
    "token",                                                          # access/refresh/id tokens (see COUNT_TERMS)
    "apikey", "accesskey", "privatekey", "signingkey", "encryptionkey", "sessionkey", "authkey", "sshkey",
    "credential",                                                     # credentials, credential_id
    "authorization", "bearer", "jwt",                                 # auth headers, proxy-authorization
    "cookie",                                                         # cookie, set-cookie
    "csrf", "xsrf", "sessionid", "sessid", "connectsid",              # session and CSRF values
    "cardnum", "creditcard", "cvc", "cvv", "securitycode",           # card numbers and CVCs
)
# Short words that would hit ordinary keys as substrings (`author`, `company`, `spinner`): whole keys only.
DENY_EXACT = frozenset({"auth", "pan", "pin", "otp", "cc", "ccnum", "ccnumber", "cardno"})
# In an AI app `max_tokens`, `prompt_tokens`, `tokens_used` are counts: a key whose only deny term is one
# of these is redacted unless its value is a number (or a bool or None), which a secret token never is.
COUNT_TERMS = frozenset({"token"})
# Built-in exceptions, as substrings that must contain the deny term's occurrence: `tokenizer`, `secretary`.
ALLOW_TERMS: tuple[str, ...] = ("tokeniz", "secretar")

KEEP, REDACT, REDACT_UNLESS_NUMBER = 0, 1, 2
_NUMBERS = frozenset({int, float, bool, type(None)})
_VERDICTS_MAX = 8192  # keys are mostly a config's fixed names; beyond this, verdicts are computed per use


@lru_cache(maxsize=None)
def _confusables() -> dict[str, Any]:
    """Unicode's confusables table (loaded on the first non-ASCII key: ~0.1 s, once per process)."""
    from confusable_homoglyphs.confusables import confusables_data

    return confusables_data


@lru_cache(maxsize=4096)
def _latin(ch: str) -> str:
    """The ASCII letter(s) a non-ASCII character looks like or folds to, else the character case-folded."""
    folded = ch.casefold()
    if folded.isascii():
        return folded  # e.g. German sharp s -> "ss"
    data = _confusables()
    for variant in (folded, ch, ch.upper()):  # Cyrillic small ka has no Latin twin, its capital has (K)
        for glyph in data.get(variant, ()):
            latin = glyph["c"]
            if len(latin) == 1 and latin.isascii() and latin.isalpha():
                return latin.lower()
    return folded


def normalise_key(key: str) -> str:
    """A key reduced to lower-case Latin letters and digits, look-alikes mapped (see the module doc)."""
    if key.isascii():
        return "".join(ch for ch in key.lower() if ch.isalnum())
    out = []
    for ch in unicodedata.normalize("NFKD", key):  # compatibility forms: fullwidth, ligatures, accents apart
        if ch.isascii():
            if ch.isalnum():
                out.append(ch.lower())
        elif not unicodedata.combining(ch):
            out.extend(c for c in _latin(ch) if c.isalnum())
    return "".join(out)


def _covered(norm: str, start: int, end: int, allow: Iterable[str]) -> bool:
    """Whether norm[start:end] lies inside an occurrence of an allow term."""
    for term in allow:
        i = norm.find(term, max(0, end - len(term)))
        while i != -1 and i <= start:
            if i + len(term) >= end:
                return True
            i = norm.find(term, i + 1)
    return False


class Redactor:
    """Decides which keys are redacted (built-in list + `redact:` - `redact_allow:`) and scrubs text."""

    __slots__ = ("terms", "allow_keys", "verdicts")

    def __init__(self, redact: Iterable[str] = (), allow: Iterable[str] = ()) -> None:
        extra = (normalise_key(str(k)) for k in redact)
        self.terms = tuple(dict.fromkeys([*DENY_TERMS, *(t for t in extra if t)]))
        self.allow_keys = frozenset(normalise_key(str(k)) for k in allow)
        self.verdicts: dict[str, int] = {}

    def verdict(self, key: str) -> int:
        """KEEP, REDACT or REDACT_UNLESS_NUMBER for a raw key (cached by the raw key)."""
        verdict = self.verdicts.get(key)
        if verdict is None:
            verdict = self._decide(normalise_key(key if type(key) is str else str(key)))
            if len(self.verdicts) < _VERDICTS_MAX:
                self.verdicts[key] = verdict
        return verdict

    def _decide(self, norm: str) -> int:
        if norm in self.allow_keys:
            return KEEP
        if norm in DENY_EXACT:
            return REDACT
        verdict = KEEP
        for term in self.terms:
            i = norm.find(term)
            while i != -1:
                if not _covered(norm, i, i + len(term), ALLOW_TERMS):
                    if term not in COUNT_TERMS:
                        return REDACT
                    verdict = REDACT_UNLESS_NUMBER
                i = norm.find(term, i + 1)
        return verdict

    def value(self, key: str, value: Any) -> Any:
        """REDACTED when `key` is redacted for this value, else `value` unchanged (not cleaned)."""
        verdict = self.verdict(key)
        if verdict == KEEP or (verdict == REDACT_UNLESS_NUMBER and type(value) in _NUMBERS):
            return value
        return REDACTED

    def scrub(self, text: str) -> str:
        """`text` with the secret shapes it contains replaced by REDACTED (the same object when none)."""
        if text.isalnum() and not text.isdecimal():
            return text  # no separator, no space: only a lone card number could hide in it
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        out: list[str] = []
        last = pos = 0
        search = _SHAPES.search
        while True:
            m = search(text, pos)
            if m is None:
                break
            kind = m.lastgroup
            start, end = m.start(kind), m.end(kind)  # the part to replace
            if kind == "sep":
                verdict = self.verdict(m.group("key").strip("\"'"))
                start, end = _value_span(text, m.end(), m.group("sep")) if verdict else (0, 0)
                if start == end or (verdict == REDACT_UNLESS_NUMBER and _NUMBER.fullmatch(text, start, end)):
                    pos = m.end()
                    continue
            elif kind == "card" and not _is_card_number(m.group(kind)):
                pos = m.end()
                continue
            out.append(text[last:start])
            out.append(REDACTED)
            last = pos = end
        if not out:
            return text
        out.append(text[last:])
        return "".join(out)


# One pass over the text; the first alternative that matches at a position wins, so the shapes that
# begin with a word (URL schemes, credential prefixes, Bearer) come before `key=value`, whose key may not
# start with a digit (a card number followed by ":" stays a card number). `lastgroup` names the part
# that is replaced.
_SHAPES = re.compile(
    r"(?P<pem>-----BEGIN[A-Z ]{0,40} PRIVATE KEY-----.*?(?:-----END[A-Z ]{0,40} PRIVATE KEY-----|\Z))"
    r"|(?<![^\W_])[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^/\s:@]{0,256}:(?P<urlpw>[^/\s@]{1,256})(?=@)"
    r"|(?<![^\W_])(?P<known>(?:[sr]k_(?:live|test)_|whsec_|gh[pousr]_|github_pat_|xox[abeoprs]-)[A-Za-z0-9_\-]{12,}"
    r"|sk-[A-Za-z0-9_\-]{20,}|AIza[0-9A-Za-z_\-]{35}"
    r"|eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,})"
    r"|(?<![^\W_])[Bb][Ee][Aa][Rr][Ee][Rr][ \t]+(?P<bearer>[A-Za-z0-9\-._~+/]+=*)"
    r"|(?P<key>\"[^\"\n]{1,128}\"|'[^'\n]{1,128}'|[^\s\d=:\uff1d\uff1a\"'&,;(){}\[\]<>/?#|][^\s=:\uff1d\uff1a\"'&,;(){}\[\]<>/?#|]{0,127})"
    r"[ \t]{0,3}(?P<sep>[=:\uff1d\uff1a])"
    r"|(?<![^\W_])(?P<card>\d(?:[ \-]?\d){12,18})(?![^\W_])",
    re.S,
)
_NUMBER = re.compile(r"[+-]?\d+(?:\.\d+)?")
_SCHEME = re.compile(r"(?:bearer|basic|digest|token|negotiate)[ \t]+", re.I)
_VALUE_AFTER_EQUALS = re.compile(r"[^\s&,;\"'<>)\]}]+")
_VALUE_AFTER_COLON = re.compile(r"[^\r\n&,;\"'<>)\]}]+")  # `password: two words` to the end of the line
_CLOSE = {"{": "}", "[": "]", "(": ")"}


def _value_span(text: str, pos: int, sep: str) -> tuple[int, int]:
    """Where the value after a denied key's separator starts and ends (quotes and a scheme word kept)."""
    n = len(text)
    while pos < n and text[pos] in " \t":
        pos += 1
    if pos >= n:
        return pos, pos
    ch = text[pos]
    if ch in "\"'":
        end = pos + 1
        while end < n and text[end] != ch:
            end += 2 if text[end] == "\\" else 1
        return pos + 1, min(end, n)
    if ch in _CLOSE:  # a structure as the value: all of it, brackets balanced (quotes not tracked)
        depth, end = 0, pos
        while end < n:
            c = text[end]
            depth += 1 if c == ch else -1 if c == _CLOSE[ch] else 0
            end += 1
            if depth == 0:
                break
        return pos, end
    scheme = _SCHEME.match(text, pos)
    if scheme is not None:
        pos = scheme.end()
    value = (_VALUE_AFTER_EQUALS if sep in "=\uff1d" else _VALUE_AFTER_COLON).match(text, pos)
    if value is None:
        return pos, pos
    return pos, pos + len(value.group().rstrip())


def _is_card_number(candidate: str) -> bool:
    """A payment card number: a card network's prefix and length, and a valid Luhn check digit."""
    digits = "".join(ch for ch in candidate if ch.isdigit())
    n = len(digits)
    if not _card_network(digits, n):
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _card_network(digits: str, n: int) -> bool:
    """Prefix and length of Visa, Mastercard, Amex, Discover, Diners, JCB, UnionPay (phone numbers are
    at most 15 digits and none of these lengths with these prefixes, except rare 15-digit +34/+37)."""
    two = int(digits[:2]) if n >= 2 else 0
    four = int(digits[:4]) if n >= 4 else 0
    if digits[:1] == "4":
        return n in (16, 19)
    if 51 <= two <= 55 or 2221 <= four <= 2720:
        return n == 16
    if two in (34, 37):
        return n == 15
    if two in (36, 38) or 300 <= int(digits[:3] or 0) <= 305:
        return n == 14
    if four == 6011 or two in (62, 65) or 644 <= int(digits[:3] or 0) <= 649 or 3528 <= four <= 3589:
        return 16 <= n <= 19
    return False
