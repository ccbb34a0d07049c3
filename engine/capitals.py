"""Amounts in Chinese capital numerals (大写金额), as printed on a fiscal bill.

The rules are those of the People's Bank of China for financial documents
(支付结算办法 附一): 壹贰叁肆伍陆柒捌玖 with 拾佰仟 inside a group of four
digits and 万/亿 between groups; one 零 stands for any run of zeros between two
significant digits (also across a group boundary), none at the end; the yuan
part ends in 元; an amount that stops at 元 or 角 ends in 整, one with 分 does
not; 零 stands between 元 and 分 when 角 is zero. A red bill's negative amount
reads 负....
"""

from __future__ import annotations

__all__ = ["capitals"]

_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_IN_GROUP = ("", "拾", "佰", "仟")
# Group units from the right: ones, 万, 亿, 万亿 (10^12), enough for any bill.
_GROUPS = ("", "万", "亿", "万亿")


def _group(value: int) -> str:
    """0 < value < 10000 in capitals, with inner zeros but no leading/trailing 零."""
    out: list[str] = []
    zero = False
    for pos in range(3, -1, -1):
        d = value // 10**pos % 10
        if d == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_DIGITS[d] + _IN_GROUP[pos])
    return "".join(out)


def _yuan(value: int) -> str:
    """value > 0 whole yuan in capitals, without the trailing 元."""
    groups: list[int] = []
    while value:
        value, g = divmod(value, 10_000)
        groups.append(g)
    if len(groups) > len(_GROUPS):
        raise ValueError("amount too large for capitals")
    out: list[str] = []
    pending_zero = False
    for i in range(len(groups) - 1, -1, -1):
        g = groups[i]
        if g == 0:
            pending_zero = bool(out)
            continue
        # A zero group skipped, or a group without its thousands after a higher
        # group: one 零 (壹万零伍, 壹亿零壹万).
        if out and (pending_zero or g < 1000):
            out.append("零")
        pending_zero = False
        out.append(_group(g) + _GROUPS[i])
    return "".join(out)


def capitals(fen: int) -> str:
    """``fen`` (integer fen, may be negative) in Chinese capitals.

    >>> capitals(1234567)
    '壹万贰仟叁佰肆拾伍元陆角柒分'
    """
    if fen < 0:
        return "负" + capitals(-fen)
    yuan, rest = divmod(fen, 100)
    jiao, fen_digit = divmod(rest, 10)
    if fen == 0:
        return "零元整"
    out = _yuan(yuan) + "元" if yuan else ""
    if jiao:
        out += _DIGITS[jiao] + "角"
    elif fen_digit and yuan:
        out += "零"
    if fen_digit:
        return out + _DIGITS[fen_digit] + "分"
    return out + "整"
