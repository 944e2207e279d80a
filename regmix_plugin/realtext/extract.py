"""Turning packaged files into documents: one function per source format.

Every extractor takes the (sorted) list of files a domain selected and returns its documents as
strings, in a deterministic order. Formats:

``text``
    A plain text file is one document (program sources, headers, reStructuredText).
``gzip_text``
    A gzip-compressed text file is one document (the kernel's ``Documentation/*.rst.gz``).
``roff``
    A gzip-compressed manual page in roff (``man`` macros) becomes one document of plain text,
    by :func:`roff_to_text`: a light, deterministic conversion (requests dropped or replaced by
    their text, font and character escapes resolved), not a typesetter. Pages that only source
    another page (``.so``) are skipped.
``dictd``
    A dictd dictionary (``NAME.index`` beside ``NAME.dict.dz``; dictzip is gzip with a random
    access table, so :mod:`gzip` reads it) gives one document per entry, in file order; the
    ``00-database-*`` metadata entries are skipped.
``fortune``
    A fortune file gives one document per fortune (entries are separated by lines holding ``%``).
``bible``
    The King James text of ``bible-kjv-text`` is stored in that package's own compressed format;
    the ``bible`` program (package ``bible-kjv``) prints it one verse per line. Each chapter is
    one document.
``wordnet``
    WordNet database files (``data.noun`` ...) give documents of ``WORDNET_RECORDS_PER_DOCUMENT``
    consecutive synset records (the licence header lines are skipped).

Bytes are decoded as UTF-8, falling back to Latin-1 for a file that is not valid UTF-8, and line
ends are normalised to ``\\n``.
"""

from __future__ import annotations

import gzip
import re
import subprocess
from collections.abc import Callable, Sequence
from pathlib import Path

from regmix_plugin.errors import DataError

#: Synset records per WordNet document.
WORDNET_RECORDS_PER_DOCUMENT = 32
#: The whole Bible, in the reference syntax of the ``bible`` program.
BIBLE_RANGE = "gen1:1-rev22:21"
_BASE64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def decode(data: bytes) -> str:
    """UTF-8 (else Latin-1) text with ``\\n`` line ends."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_gzip(path: str) -> bytes:
    try:
        with gzip.open(path, "rb") as f:
            return f.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable gzip/dictzip file ({exc})") from exc


def extract_text(files: Sequence[str]) -> list[str]:
    """One document per plain text file."""
    return [decode(Path(p).read_bytes()) for p in files]


def extract_gzip_text(files: Sequence[str]) -> list[str]:
    """One document per gzip-compressed text file."""
    return [decode(_read_gzip(p)) for p in files]


# --- manual pages -------------------------------------------------------------------------------

#: Named characters of roff (``\(xx`` and ``\[xx]``) that manual pages use most.
_ROFF_CHARS = {
    "em": "\u2014", "en": "\u2013", "hy": "-", "mi": "-", "pl": "+", "mu": "\u00d7",
    "bu": "\u2022", "co": "\u00a9", "rg": "\u00ae", "tm": "\u2122", "dq": '"', "aq": "'",
    "oq": "\u2018", "cq": "\u2019", "lq": "\u201c", "rq": "\u201d", "ga": "`", "ti": "~",
    "ha": "^", "rs": "\\", "sl": "/", "ba": "|", "br": "|", "or": "|", "lt": "<", "gt": ">",
    "<=": "\u2264", ">=": "\u2265", "!=": "\u2260", "->": "\u2192", "<-": "\u2190",
    "de": "\u00b0", "+-": "\u00b1", "sc": "\u00a7", "ul": "_", "ru": "_", "aa": "\u00b4",
}  # fmt: skip
#: Macros whose arguments alternate between two fonts: the arguments are joined without spaces.
_ALTERNATING = {"BR", "RB", "BI", "IB", "IR", "RI"}
#: Macros whose arguments are printed text.
_TEXT_MACROS = {"B", "I", "SM", "SB", "SH", "SS", "IP", "TP", "UR", "MT", "OP", "Nm", "Nd"}
#: Macros that start a new paragraph.
_BREAK_MACROS = {"PP", "LP", "P", "sp", "br", "TP", "IP", "HP", "RS", "RE", "SH", "SS", "TH"}
_ESCAPE = re.compile(
    r"\\(?:f(?:\[[^\]]*\]|\(..|.)"  # font changes
    r"|s[+-]?(?:\[[^\]]*\]|\(..|\d+)"  # size changes
    r"|\*(?:\[[^\]]*\]|\(..|.)"  # strings
    r"|\((..)"  # named characters, two letters
    r"|\[([^\]]*)\]"  # named characters, bracketed
    r"|(.))",  # one-character escapes
    re.DOTALL,
)
_SIMPLE_ESCAPES = {"-": "-", "e": "\\", "\\": "\\", " ": " ", "~": " ", "0": " ", "|": "",
                   "^": "", "&": "", "%": "", "c": "", ".": ".", "'": "\u00b4", "`": "`",
                   "t": "\t", "/": "", ",": "", ":": ""}  # fmt: skip


def _unescape(line: str) -> str:
    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        if name is not None:
            return _ROFF_CHARS.get(name, "")
        single = m.group(3)
        if single is not None:
            return _SIMPLE_ESCAPES.get(single, "")
        return ""  # fonts, sizes, strings

    if '\\"' in line:  # a comment runs to the end of the line
        line = line[: line.index('\\"')]
    return _ESCAPE.sub(repl, line)


def _macro_arguments(rest: str) -> list[str]:
    """Split a request's arguments, honouring double quotes."""
    return [a[1:-1] if a.startswith('"') else a for a in re.findall(r'"[^"]*"|\S+', rest)]


def roff_to_text(source: str) -> str:
    """Plain text of a manual page written with the ``man`` macros (see the module docstring).

    Filled text (the default) is joined into one line per paragraph; no-fill regions
    (``.nf``/``.fi``, ``.EX``/``.EE``) keep their lines.
    """
    paragraphs: list[str] = []
    current: list[str] = []
    fill = True

    def flush() -> None:
        if current:
            paragraphs.append((" " if fill else "\n").join(current))
            current.clear()

    for raw in source.split("\n"):
        if raw.startswith(('.\\"', "'\\\"")) or raw.strip() in (".", "'"):
            continue
        if not raw.startswith((".", "'")):
            text = _unescape(raw).rstrip("\\")
            if text.strip() or not fill:
                current.append(text if not fill else text.strip())
            else:
                flush()
            continue
        name, _, rest = raw[1:].strip().partition(" ")
        args = [_unescape(a) for a in _macro_arguments(rest)]
        if name in _BREAK_MACROS or name in ("nf", "fi", "EX", "EE"):
            flush()
        if name in ("nf", "EX"):
            fill = False
        elif name in ("fi", "EE"):
            fill = True
        if name == "TH" and args:
            paragraphs.append(f"{args[0]}({args[1]})" if len(args) > 1 else args[0])
        elif name in ("SH", "SS") and args:
            paragraphs.append(" ".join(args))
        elif name in _ALTERNATING:
            current.append("".join(args))
        elif name in _TEXT_MACROS and args:
            current.append(" ".join(args))
    flush()
    return "\n\n".join(p for p in paragraphs if p.strip()) + "\n"


def extract_roff(files: Sequence[str]) -> list[str]:
    """One plain-text document per manual page; ``.so`` pages (aliases) are skipped."""
    docs: list[str] = []
    for p in files:
        data = _read_gzip(p) if p.endswith(".gz") else Path(p).read_bytes()
        source = decode(data)
        if source.lstrip().startswith(".so "):
            continue
        docs.append(roff_to_text(source))
    return docs


# --- dictionaries -------------------------------------------------------------------------------


def _base64_number(field: str, where: str) -> int:
    value = 0
    for ch in field:
        digit = _BASE64.find(ch)
        if digit < 0:
            raise DataError(f"{where}: {field!r} is not a dictd base64 number")
        value = value * 64 + digit
    return value


def extract_dictd(files: Sequence[str]) -> list[str]:
    """One document per dictionary entry; ``files`` holds ``*.dict.dz`` and/or ``*.index``."""
    docs: list[str] = []
    for dz in (p for p in files if p.endswith(".dict.dz")):
        index = dz[: -len(".dict.dz")] + ".index"
        if not Path(index).is_file():
            raise DataError(f"{dz}: its index {index} is missing; reinstall the package")
        data = _read_gzip(dz)
        spans = set()
        for number, line in enumerate(decode(Path(index).read_bytes()).split("\n"), 1):
            fields = line.split("\t")
            if (
                len(fields) < 3
                or fields[0].startswith("00-database")
                or fields[0].startswith("00database")
            ):
                continue
            where = f"{index} line {number}"
            spans.add((_base64_number(fields[1], where), _base64_number(fields[2], where)))
        for offset, length in sorted(spans):  # several headwords may share one entry
            docs.append(decode(data[offset : offset + length]))
    return docs


# --- fortunes, the Bible, WordNet ---------------------------------------------------------------


def extract_fortune(files: Sequence[str]) -> list[str]:
    """One document per fortune."""
    docs: list[str] = []
    for p in files:
        text = decode(Path(p).read_bytes())
        docs.extend(part.strip("\n") + "\n" for part in re.split(r"(?m)^%\n", text + "\n"))
    return docs


def extract_bible(files: Sequence[str]) -> list[str]:
    """One document per chapter, printed by the ``bible`` program from ``bible.data``."""
    data = [p for p in files if p.endswith("/bible.data")]
    if not data:
        raise DataError(
            "the bible domain selected no bible.data file; is bible-kjv-text installed?"
        )
    folder = str(Path(data[0]).parent)
    try:
        done = subprocess.run(
            ["bible", "-f", "-p", folder, BIBLE_RANGE],
            capture_output=True,
            stdin=subprocess.DEVNULL,
            check=True,
        )
    except FileNotFoundError as exc:
        raise DataError(
            "the `bible` program is missing: install the Debian package bible-kjv"
        ) from exc
    except subprocess.CalledProcessError as exc:
        raise DataError(
            f"`bible` failed on {folder}: {exc.stderr.decode(errors='replace')}"
        ) from exc
    chapters: dict[str, list[str]] = {}
    verse = re.compile(r"^(\d?[A-Za-z]+\d+):(\d+) (.*)$")
    for line in decode(done.stdout).split("\n"):
        m = verse.match(line)
        if m:
            chapters.setdefault(m.group(1), []).append(f"{m.group(2)} {m.group(3)}")
    if not chapters:
        raise DataError(f"`bible` printed no verses from {folder}")
    return [f"{ref}\n" + "\n".join(lines) + "\n" for ref, lines in chapters.items()]


def extract_wordnet(files: Sequence[str]) -> list[str]:
    """Documents of consecutive synset records of the WordNet ``data.*`` files."""
    docs: list[str] = []
    n = WORDNET_RECORDS_PER_DOCUMENT
    for p in files:
        records = [r for r in decode(Path(p).read_bytes()).split("\n") if r and r[0] != " "]
        docs.extend("\n".join(records[i : i + n]) + "\n" for i in range(0, len(records), n))
    return docs


#: format name -> extractor.
EXTRACTORS: dict[str, Callable[[Sequence[str]], list[str]]] = {
    "text": extract_text,
    "gzip_text": extract_gzip_text,
    "roff": extract_roff,
    "dictd": extract_dictd,
    "fortune": extract_fortune,
    "bible": extract_bible,
    "wordnet": extract_wordnet,
}
