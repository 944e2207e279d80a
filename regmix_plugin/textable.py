"""Fixed-width text tables for the console: one formatter for every table the CLI prints."""

from __future__ import annotations

from collections.abc import Sequence


def format_table(
    header: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    numeric: Sequence[bool] | None = None,
    footer: Sequence[Sequence[str]] = (),
    rule: bool = True,
) -> str:
    """Columns padded to their widest cell; ``numeric`` columns right-aligned.

    ``numeric`` defaults to right-aligning every column but the first. A rule of dashes goes
    under the header and above the ``footer`` rows when ``rule`` is true. Trailing spaces are cut.
    """
    ncol = len(header)
    for r in [*rows, *footer]:
        if len(r) != ncol:
            raise ValueError(f"row {list(r)} has {len(r)} cells, the header has {ncol}")
    right = list(numeric) if numeric is not None else [i > 0 for i in range(ncol)]
    widths = [max(len(str(r[i])) for r in [header, *rows, *footer]) for i in range(ncol)]

    def line(cells: Sequence[str]) -> str:
        out = [
            str(c).rjust(w) if r else str(c).ljust(w)
            for c, w, r in zip(cells, widths, right, strict=True)
        ]
        return "  ".join(out).rstrip()

    dashes = "  ".join("-" * w for w in widths)
    lines = [line(header)]
    if rule:
        lines.append(dashes)
    lines += [line(r) for r in rows]
    if footer:
        if rule:
            lines.append(dashes)
        lines += [line(r) for r in footer]
    return "\n".join(lines)
