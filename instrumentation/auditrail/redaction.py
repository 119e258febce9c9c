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
NUMBERS = frozenset({int, float, bool, type(None)})  # what a REDACT_UNLESS_NUMBER key keeps
_VERDICTS_MAX = 8192  # keys are mostly a config's fixed names; beyond this, verdicts are computed per use
_CLEAN_TEXTS_MAX, _CLEAN_TEXT_MAX = 4096, 256  # texts known to hold no secret shape (emptied when full)


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


def plain_word(text: str) -> bool:
    """ASCII letters and digits, not all digits: no secret shape fits in it (only a lone card number could).

    bytes' checks use a table (~0.1 us for a sha256 hex digest), str.isalnum the Unicode database (~0.6 us).
    """
    return text.isascii() and (raw := text.encode()).isalnum() and not raw.isdigit()


_ASCII_PUNCTUATION = bytes(c for c in range(128) if not chr(c).isalnum())


def normalise_key(key: str) -> str:
    """A key reduced to lower-case Latin letters and digits, look-alikes mapped (see the module doc)."""
    if key.isascii():
        return key.lower().encode().translate(None, _ASCII_PUNCTUATION).decode()  # bytes: a C table
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

    __slots__ = ("terms", "allow_keys", "verdicts", "clean_texts", "_any_term")

    def __init__(self, redact: Iterable[str] = (), allow: Iterable[str] = ()) -> None:
        extra = (normalise_key(str(k)) for k in redact)
        self.terms = tuple(dict.fromkeys([*DENY_TERMS, *(t for t in extra if t)]))
        self.allow_keys = frozenset(normalise_key(str(k)) for k in allow)
        # One pass finds whether any term occurs (most keys: none); only then is each occurrence examined.
        self._any_term = re.compile("|".join(map(re.escape, self.terms)))
        self.verdicts: dict[str, int] = {}
        self.clean_texts: set[str] = set()

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
        if self._any_term.search(norm) is None:
            return KEEP
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

    def scrub(self, text: str) -> str:
        """`text` with the secret shapes it contains replaced by REDACTED (the same object when none)."""
        if plain_word(text):
            return text
        # Each shape is looked for only when a substring it needs is present: `in` runs at C speed,
        # where a regex tried at every position costs ~10 ns a character here.
        spans: list[tuple[int, int]] = []
        if "=" in text or ":" in text or (not text.isascii() and ("\uff1d" in text or "\uff1a" in text)):
            self._key_values(text, spans)
        if "earer" in text or "EARER" in text:
            spans.extend(m.span(1) for m in _BEARER.finditer(text))
        if "://" in text:
            spans.extend(m.span(1) for m in _URL_PASSWORD.finditer(text))
        if "PRIVATE KEY" in text:
            spans.extend(m.span() for m in _PEM.finditer(text))
        if "_" in text or "-" in text or "eyJ" in text or "AIza" in text:  # what every format needs
            for literal, pattern in _KNOWN:
                if literal in text:
                    spans.extend(m.span() for m in pattern.finditer(text))
        raw = text.encode("ascii") if text.isascii() else text.encode("utf-8", "surrogatepass")
        if len(raw.translate(None, _NOT_DIGITS)) >= 13:
            spans.extend(m.span() for m in _CARD.finditer(text) if _is_card_number(m.group()))
        return _replace(text, spans) if spans else text

    def remember_clean(self, text: str) -> None:
        """Note a text that holds no secret shape (values repeat: plan names, reason codes); never a secret."""
        if len(text) <= _CLEAN_TEXT_MAX:
            clean = self.clean_texts
            if len(clean) >= _CLEAN_TEXTS_MAX:
                clean.clear()
            clean.add(text)

    def _key_values(self, text: str, spans: list[tuple[int, int]]) -> None:
        """Spans of the values of `key=value` / `key: value` shapes whose key is redacted."""
        reverse = text[::-1]  # the key before a separator is matched forwards in the reversed text
        n = len(text)
        for sep in _SEPARATORS.finditer(text):
            i = sep.start()
            m = _KEY_REVERSED.match(reverse, n - i)
            if m is None:
                continue
            key = m.group(m.lastindex)[::-1]
            if m.lastindex == 3 and key[0].isdigit():
                continue  # `12:30`, or a card number followed by a colon (left to the card check)
            verdict = self.verdict(key)
            if verdict == KEEP:
                continue
            start, end = _value_span(text, i + 1, sep.group())
            if start < end and not (verdict == REDACT_UNLESS_NUMBER and _NUMBER.fullmatch(text, start, end)):
                spans.append((start, end))


def _replace(text: str, spans: list[tuple[int, int]]) -> str:
    """`text` with each span (overlapping ones merged) replaced by REDACTED."""
    out: list[str] = []
    last = 0
    for start, end in sorted(spans):
        if end <= last:
            continue
        if start < last:  # runs into the previous span: one marker for both
            out.pop()
            start = last
        out.append(text[last:start])
        out.append(REDACTED)
        last = end
    out.append(text[last:])
    return "".join(out)


_STOP = "\\s=:\uff1d\uff1a\"'&,;(){}\\[\\]<>/?#|"
_SEPARATORS = re.compile("[=:\uff1d\uff1a]")
# Read backwards from a separator: up to 3 blanks, then a quoted key or a bare one (both reversed).
_KEY_REVERSED = re.compile("[ \\t]{0,3}(?:\"([^\"\\n]{1,128})\"|'([^'\\n]{1,128})'|([^" + _STOP + "]{1,128}))")
_BEARER = re.compile(r"(?<![^\W_])bearer[ \t]+([A-Za-z0-9\-._~+/]+=*)", re.I)
_URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^/\s:@]{0,256}:([^/\s@]{1,256})@")
_PEM = re.compile(r"-----BEGIN[A-Z ]{0,40} PRIVATE KEY-----.*?(?:-----END[A-Z ]{0,40} PRIVATE KEY-----|\Z)", re.S)
# Credential formats that say what they are (Stripe, GitHub, Slack, OpenAI/Anthropic, Google, JWT), each
# looked for only when its text contains the literal before it.
_KNOWN = tuple((literal, re.compile(r"(?<![A-Za-z0-9])" + pattern)) for literal, pattern in (
    ("k_live_", r"[sr]k_live_[A-Za-z0-9]{12,}"), ("k_test_", r"[sr]k_test_[A-Za-z0-9]{12,}"),
    ("whsec_", r"whsec_[A-Za-z0-9]{12,}"), ("gh", r"gh[pousr]_[A-Za-z0-9]{20,}"),
    ("github_pat_", r"github_pat_[A-Za-z0-9_]{20,}"), ("xox", r"xox[abeoprs]-[A-Za-z0-9\-]{10,}"),
    ("sk-", r"sk-[A-Za-z0-9_\-]{20,}"), ("AIza", r"AIza[0-9A-Za-z_\-]{35}"),
    ("eyJ", r"eyJ[A-Za-z0-9_\-]{4,}\.eyJ[A-Za-z0-9_\-]{4,}\.[A-Za-z0-9_\-]{4,}"),
))
# One run of digits, or groups as cards are printed (4-4-4-4[-3], Amex/Diners 4-6-5/4-6-4): never a UUID's
# 8-4-4-4-12 nor a phone number's groups.
_CARD = re.compile(r"(?<![^\W_])(?:[0-9]{13,19}|[0-9]{4}(?:[ \-][0-9]{4}){2,3}(?:[ \-][0-9]{1,4})?"
                   r"|[0-9]{4}[ \-][0-9]{6}[ \-][0-9]{4,5})(?![^\W_])")
_NOT_DIGITS = bytes(b for b in range(256) if not 0x30 <= b <= 0x39)  # UTF-8 text keeps its ASCII digits
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
