"""`danlu data scrub`: replace personal data with typed placeholders.

Detectors run in a fixed order over every content string, each a regular expression plus a
check where one exists, so that ordinary numbers survive:

| type | what | check |
|---|---|---|
| `<SECRET>` | credentials in URLs (`user:pass@`, `?token=`), well-known API key shapes | — |
| `<EMAIL>` | e-mail addresses | — |
| `<ID_CARD>` | Chinese resident ID numbers (18 digits) | region digit, birth date, ISO 7064 checksum |
| `<BANK_CARD>` | card numbers, 13–19 digits, grouped or not | issuer prefix and Luhn |
| `<PHONE>` | Chinese mobile (+86), Chinese landline (area code + separator), +international, North American | digit counts |
| `<IP>` | IPv4 and IPv6 addresses | parsed by `ipaddress` |

Prices (¥1,299.00), dates (2024-01-15, 2024年1月15日), times, quantities, order numbers that
fail these checks, and version numbers (v1.2.3.4) are left alone."""

from __future__ import annotations

import ipaddress
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from danlu.errors import UserError
from danlu.workbench.rowio import AtomicRowWriter, Summary, check_output, default_output, iter_good_rows
from danlu.workbench.rowtext import map_strings

_B = r"(?<![0-9A-Za-z])"  # not glued to a preceding letter or digit (CJK around is fine)
_E = r"(?![0-9A-Za-z])"

_URL_USERINFO = re.compile(r"(?<=://)[^\s/@:]+:[^\s/@]+(?=@)")
_URL_PARAM = re.compile(
    r"(?<=[?&;])((?:access_?token|refresh_?token|id_?token|api_?key|apikey|key|token|secret|client_?secret|"
    r"password|passwd|pwd|auth|sig|signature|session_?id|sessionid|sid|x-amz-signature|x-amz-credential|"
    r"awsaccesskeyid)=)[^&#\s\"'<>]+", re.I)
_API_KEY = re.compile(r"\b(?:sk-(?:proj-)?[A-Za-z0-9_-]{20,}|AKIA[0-9A-Z]{16}|gh[pousr]_[A-Za-z0-9]{36,}|"
                      r"xox[abprs]-[A-Za-z0-9-]{10,}|AIza[0-9A-Za-z_-]{35})\b|(?<=Bearer )[A-Za-z0-9._~+/-]{20,}=*")
_EMAIL = re.compile(r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9][A-Za-z0-9._%+-]*@(?:[A-Za-z0-9-]+\.)+[A-Za-z]{2,24}(?![A-Za-z0-9-])")
_ID_CARD = re.compile(_B + r"[1-8]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]" + _E)
_CARD = re.compile(_B + r"(?:\d{4}(?:[ -]\d{4}){2}(?:[ -]\d{1,4}){1,2}|\d{4}[ -]\d{6}[ -]\d{4,5}|\d{13,19})" + _E)
_NOT_IN_DIGIT_GROUPS = r"(?<!\d[ -])"  # "6222 0212 3456 7890" is one number, not a phone inside it
_CN_MOBILE = re.compile(r"(?<![0-9A-Za-z+])" + _NOT_IN_DIGIT_GROUPS + r"(?:(?:\+|00)?86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}"
                        + _E + r"(?![ -]\d)")
_CN_LANDLINE = re.compile(_B + _NOT_IN_DIGIT_GROUPS + r"(?:\(0\d{2,3}\) ?|（0\d{2,3}）|0\d{2,3}[ -])[2-9]\d{3}[ -]?\d{3,4}"
                          r"(?:(?:-|转)\d{1,5})?" + _E + r"(?![ -]\d)")
_INTL = re.compile(r"(?<![0-9A-Za-z+])\+\d{1,3}(?:[ .-]?\(\d{1,4}\))?(?:[ .-]?\d{1,5}){2,5}" + _E)
_NANP = re.compile(_B + r"(?:\([2-9]\d{2}\) ?[2-9]\d{2}[-.]|[2-9]\d{2}([-.])[2-9]\d{2}\1)\d{4}" + _E)
_IPV4 = re.compile(r"(?<![0-9A-Za-z.])(?:\d{1,3}\.){3}\d{1,3}(?![0-9A-Za-z]|\.\d)")
_IPV6 = re.compile(r"(?<![0-9A-Za-z:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?(?![0-9A-Za-z:])")

_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
_ID_CHECK = "10X98765432"


def id_card_valid(s: str) -> bool:
    """Chinese resident ID (GB 11643): 17 digits, then the ISO 7064 MOD 11-2 check character."""
    total = sum(int(c) * w for c, w in zip(s[:17], _ID_WEIGHTS))
    return _ID_CHECK[total % 11] == s[17].upper()


def luhn_valid(digits: str) -> bool:
    total = 0
    for i, c in enumerate(reversed(digits)):
        d = int(c)
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def _issuer_known(d: str) -> bool:
    """Prefixes and lengths of card networks (Visa, Mastercard, UnionPay, Amex, JCB, Discover,
    Diners): a Luhn check alone passes one random number in ten."""
    n = len(d)
    return ((d[0] == "4" and n in (13, 16, 19)) or (51 <= int(d[:2]) <= 55 and n == 16)
            or (2221 <= int(d[:4]) <= 2720 and n == 16) or (d[:2] == "62" and 16 <= n <= 19)
            or (d[:2] in ("34", "37") and n == 15) or (3528 <= int(d[:4]) <= 3589 and n == 16)
            or ((d[:4] == "6011" or d[:2] == "65") and n == 16) or (d[:2] in ("30", "36", "38") and n == 14))


def bank_card_valid(s: str) -> bool:
    d = re.sub(r"[ -]", "", s)
    return 13 <= len(d) <= 19 and _issuer_known(d) and luhn_valid(d)


def _digits(s: str) -> int:
    return sum(c.isdigit() for c in s)


def _ip_valid(s: str) -> bool:
    if ":" in s and sum(1 for g in re.split(r"[:.]", s) if g) < 3:  # "::2" in a[::2] is a slice
        return False
    try:
        ipaddress.ip_address(s)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class Detector:
    kind: str  # placeholder name
    pattern: re.Pattern
    check: Callable[[str], bool] | None = None
    needs: str = ""  # a feature of the text (see _features) without which the pattern cannot match


DETECTORS: tuple[Detector, ...] = (
    Detector("SECRET", _URL_USERINFO, needs=":"),
    Detector("SECRET", _URL_PARAM, needs="="),
    Detector("SECRET", _API_KEY),
    Detector("EMAIL", _EMAIL, needs="@"),
    Detector("ID_CARD", _ID_CARD, id_card_valid, needs="digits"),
    Detector("BANK_CARD", _CARD, bank_card_valid, needs="digits"),
    Detector("PHONE", _CN_MOBILE, needs="digits"),
    Detector("PHONE", _CN_LANDLINE, needs="digits"),
    Detector("PHONE", _INTL, lambda s: 8 <= _digits(s) <= 15, needs="+"),
    Detector("PHONE", _NANP, needs="digits"),
    Detector("IP", _IPV4, _ip_valid, needs="."),
    Detector("IP", _IPV6, _ip_valid, needs=":"),
)
KINDS = tuple(dict.fromkeys(d.kind for d in DETECTORS))
_SEVEN_DIGITS = re.compile(r"\d(?:[ ().-]{0,2}\d){6}")  # every phone, ID and card number has a run like this


def _features(text: str) -> set[str]:
    """Cheap facts about `text` that decide which detectors can match at all (most text has none)."""
    found = {c for c in ":=+@." if c in text}
    if _SEVEN_DIGITS.search(text):
        found.add("digits")
    return found


def allowed(found: str, allow: frozenset[str]) -> bool:
    """`found` is on the allow-list: the same text (case-insensitive), the same digits (a phone
    number however it is spaced), or an email at an allowed @domain."""
    if not allow:
        return False
    text = found.strip().lower()
    if text in allow:
        return True
    digits = re.sub(r"\D", "", text)
    if len(digits) >= 7 and any(re.sub(r"\D", "", a) == digits for a in allow if "@" not in a):
        return True
    return "@" in text and any(a.startswith("@") and text.endswith(a) for a in allow)


def allow_list(values: tuple[str, ...] | list[str] = (), files: tuple[str, ...] | list[str] = ()) -> frozenset[str]:
    """--allow values (comma-separated too) and --allow-file lines (# comments), lower-cased."""
    items = [v for value in values for v in value.split(",")]
    for name in files:
        try:
            lines = Path(name).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise UserError(f"cannot read the allow-list {name}: {exc.strerror}", where="--allow-file") from None
        items += [line.split("#", 1)[0] for line in lines]
    return frozenset(i.strip().lower() for i in items if i.strip())


def scrub_text(text: str, counts: Counter, kinds: frozenset[str] | None = None,
               allow: frozenset[str] = frozenset()) -> str:
    """`text` with every detected item replaced by <KIND> (except the allow-listed: a company's own
    support address or hotline); `counts` gains one per replacement, `counts['allowed']` per kept item."""
    if not text:
        return text
    features = _features(text)
    for det in DETECTORS:
        if (kinds is not None and det.kind not in kinds) or (det.needs and det.needs not in features):
            continue

        def repl(m: re.Match, det=det) -> str:
            if det.check is not None and not det.check(m.group(0)):
                return m.group(0)
            if allowed(m.group(0) if det.pattern is not _URL_PARAM else m.group(0)[len(m.group(1)):], allow):
                counts["ALLOWED"] += 1
                return m.group(0)
            counts[det.kind] += 1
            return f"<{det.kind}>" if det.pattern is not _URL_PARAM else f"{m.group(1)}<{det.kind}>"

        text = det.pattern.sub(repl, text)
    return text


def scrub_data(source: str, output: str | None = None, *, kinds: tuple[str, ...] = (),
               on_bad_row: str = "error", allow: frozenset[str] = frozenset()) -> Summary:
    """Scrub every content string of `source` into `output` (default SOURCE.scrub.jsonl)."""
    unknown = sorted(set(k.upper() for k in kinds) - set(KINDS))
    if unknown:
        raise UserError(f"unknown PII type(s) {', '.join(unknown)}", where="--types",
                        hint=f"choose from {', '.join(k.lower() for k in KINDS)}")
    wanted = frozenset(k.upper() for k in kinds) or None
    out = check_output(output or default_output(source, "scrub"), [source])
    summary = Summary("scrub", inputs=[source], outputs=[str(out)])
    total: Counter = Counter()
    with AtomicRowWriter(out) as writer:
        for raw in iter_good_rows(source, on_bad_row, summary):
            summary.rows_in += 1
            found: Counter = Counter()
            writer.write(map_strings(raw.data, lambda t: scrub_text(t, found, wanted, allow)))
            summary.rows_out += 1
            for kind in found:
                if kind != "ALLOWED":
                    summary.change(kind.lower())
            total.update(found)
    summary.counts.update({f"replaced: {k.lower()}": total[k] for k in KINDS if total[k]})
    if total["ALLOWED"]:
        summary.counts["kept (allow-list)"] = total["ALLOWED"]
    return summary.done()
