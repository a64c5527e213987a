"""bench/RESULTS.md: each benchmark owns the sections between its own markers."""

from __future__ import annotations

from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def markers(section: str) -> tuple[str, str]:
    return f"<!-- {section}:begin -->", f"<!-- {section}:end -->"


def write_section(section: str, text: str) -> None:
    """Put `text` (which starts and ends with the section's markers) in place of the section's
    current text, or append it."""
    begin, end = markers(section)
    content = RESULTS.read_text() if RESULTS.is_file() else "# Benchmark results\n"
    if begin in content:
        head, rest = content.split(begin, 1)
        content = head + text + rest.split(end, 1)[1]
    else:
        content = content.rstrip() + "\n\n" + text + "\n"
    RESULTS.write_text(content)
