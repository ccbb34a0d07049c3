"""Amounts in Chinese capitals (大写), zeros as the PBOC rules place them."""

from __future__ import annotations

import pytest

from engine.capitals import capitals


@pytest.mark.parametrize(
    ("fen", "text"),
    [
        (1234567, "壹万贰仟叁佰肆拾伍元陆角柒分"),
        (0, "零元整"),
        (1, "壹分"),
        (10, "壹角整"),
        (11, "壹角壹分"),
        (100, "壹元整"),
        (101, "壹元零壹分"),
        (110, "壹元壹角整"),
        (1000, "壹拾元整"),
        (1500, "壹拾伍元整"),
        (10000, "壹佰元整"),
        (100500, "壹仟零伍元整"),
        (105000, "壹仟零伍拾元整"),
        (100100, "壹仟零壹元整"),
        (1000000, "壹万元整"),
        (1000500, "壹万零伍元整"),
        (1010000, "壹万零壹佰元整"),
        (10000000, "壹拾万元整"),
        (10000100, "壹拾万零壹元整"),
        (100010000, "壹佰万零壹佰元整"),
        (1000000000, "壹仟万元整"),
        (10000000000, "壹亿元整"),
        (10000000100, "壹亿零壹元整"),
        (10001000000, "壹亿零壹万元整"),
        (10100000000, "壹亿零壹佰万元整"),
        (12000000000, "壹亿贰仟万元整"),
        (168032, "壹仟陆佰捌拾元叁角贰分"),
        (40702, "肆佰零柒元零贰分"),
        (-1234567, "负壹万贰仟叁佰肆拾伍元陆角柒分"),
        (-50, "负伍角整"),
    ],
)
def test_capitals(fen: int, text: str) -> None:
    assert capitals(fen) == text


def test_every_digit_and_no_double_zero() -> None:
    for fen in range(0, 10**7, 997):
        text = capitals(fen)
        assert "零零" not in text, (fen, text)
        assert not text.startswith("零") or fen == 0, (fen, text)
        assert "零元" not in text or fen == 0, (fen, text)
        assert text.endswith(("整", "分")), (fen, text)
