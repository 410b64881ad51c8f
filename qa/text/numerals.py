"""Chinese numerals read as numbers: one reader for the checks of written answers and of qualifiers."""

from __future__ import annotations

DIGITS = {c: i for i, c in enumerate("零一二三四五六七八九")} | {"〇": 0, "两": 2}
UNITS = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}


def chinese_number(run: str) -> int | None:
    """一百二十 → 120, 二〇二五 → 2025, 两万 → 20000, 十四 → 14; None for units alone (亿) and for
    anything that is not a Chinese numeral."""
    if any(c not in DIGITS and c not in UNITS for c in run):
        return None
    if not any(c in DIGITS for c in run) and not run.startswith("十"):
        return None  # 亿 in 217亿, 万 in 1.5万: a unit of the figure before it
    if all(c in DIGITS for c in run):
        return int("".join(str(DIGITS[c]) for c in run)) if len(run) > 1 or run != "零" else 0
    total, section, current = 0, 0, 0
    for char in run:
        if char in DIGITS:
            current = DIGITS[char]
        elif char in ("万", "亿"):
            total += (section + current) * UNITS[char]
            section = current = 0
        else:
            section += (current or 1) * UNITS[char]
            current = 0
    return total + section + current
