"""Building the real-text corpus: packages -> documents -> tokenizer -> ``.bin/.idx`` prefixes.

:func:`build_corpus` runs the steps in order:

1. install the Debian packages every domain names (as root; :mod:`.debian`);
2. list each domain's files (the packages' own file lists, filtered by the domain's ``pattern``,
   sorted) and turn them into documents with the domain's extractor (:mod:`.extract`);
3. drop documents under ``min_document_bytes``, shuffle the rest with a seed derived from
   ``seed`` and the domain's name, keep them up to ``max_bytes`` of UTF-8, and hold out the first
   ``valid_fraction`` of the kept documents as the domain's validation set;
4. train a byte-level BPE tokenizer (Hugging Face ``tokenizers``) on at most
   ``tokenizer_bytes_per_domain`` of every domain's *training* documents (never the validation
   or target documents), with one special token, ``<|endoftext|>`` (id 0), appended to every
   document as its end;
5. write ``<domain>_text_document`` (training) and ``<domain>_valid_text_document`` per domain and
   ``target_<name>_text_document`` with megatron-core's writer (``uint16`` tokens);
6. write ``manifest.json`` last: the config (less ``install``), the Debian release, every
   package's version, every file read (size and SHA-256), document, byte and token counts, and
   the SHA-256 of every output.

Same packages, same config: byte-identical outputs (sorted inputs, seeded shuffles, no times).
"""

from __future__ import annotations

import hashlib
import logging
import re
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from regmix_plugin.config import to_dict
from regmix_plugin.corpus import write_indexed_dataset
from regmix_plugin.errors import ConfigError, DataError, require
from regmix_plugin.io import atomic_write_json, atomic_write_text
from regmix_plugin.realtext import debian
from regmix_plugin.realtext.extract import EXTRACTORS

log = logging.getLogger(__name__)

#: Bumped whenever the builder's output for a given config and packages changes.
BUILDER_VERSION = 1
#: The end-of-document token, appended to every document; its id is 0.
EOD_TOKEN = "<|endoftext|>"
MANIFEST = "manifest.json"
TOKENIZER = "tokenizer.json"
_ENCODE_BATCH = 256


@dataclass(kw_only=True, frozen=True)
class DomainSpec:
    """One domain (or the target set): which packaged files, read how, and how much."""

    name: str
    """Domain name: letters, digits and ``_``; names the output prefixes."""
    description: str
    """What the text is, in a few words (goes into the manifest and the docs)."""
    packages: tuple[str, ...]
    """Debian packages whose files are read; all are installed and their versions recorded."""
    format: str
    """How a file becomes documents: one of :data:`.extract.EXTRACTORS`."""
    pattern: str
    """Regular expression (``re.search``) a packaged file's path must match to be read."""
    exclude: str = ""
    """Regular expression of paths to skip; empty skips nothing."""
    max_bytes: int = 6_000_000
    """UTF-8 bytes kept (validation included), after the seeded shuffle of the documents."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"[A-Za-z0-9_]+", self.name):
            raise ConfigError(f"domain name {self.name!r}: use letters, digits and '_' only")
        if not self.packages:
            raise ConfigError(f"domain {self.name}: packages is empty; name a Debian package")
        if self.format not in EXTRACTORS:
            raise ConfigError(
                f"domain {self.name}: format {self.format!r} is unknown; "
                f"choose one of {sorted(EXTRACTORS)}"
            )
        for key in ("pattern", "exclude"):
            try:
                re.compile(getattr(self, key))
            except re.error as exc:
                raise ConfigError(f"domain {self.name}: {key} is not a regex ({exc})") from exc
        if self.max_bytes < 1:
            raise ConfigError(f"domain {self.name}: max_bytes must be >= 1, got {self.max_bytes}")


def _domain(
    name: str, description: str, packages: str, fmt: str, pattern: str, **kw: Any
) -> DomainSpec:
    return DomainSpec(
        name=name,
        description=description,
        packages=tuple(packages.split()),
        format=fmt,
        pattern=pattern,
        **kw,
    )


_FORTUNE_FILES = r"^/usr/share/games/fortunes/"
_NOT_INDEX = r"\.(dat|u8)$"

#: The study's training domains: ten clearly different kinds of text from Debian 12 packages.
DEFAULT_DOMAINS: tuple[DomainSpec, ...] = (
    _domain("python_code", "Python 3.11 standard library sources (.py)",
            "libpython3.11-minimal libpython3.11-stdlib", "text", r"\.py$"),
    _domain("c_headers", "C headers of glibc and the Linux UAPI (.h)",
            "libc6-dev linux-libc-dev", "text", r"\.h$"),
    _domain("kernel_docs", "Linux 6.1 Documentation/ (reStructuredText, gzip)",
            "linux-doc-6.1", "gzip_text", r"/Documentation/.*\.rst\.gz$"),
    _domain("man_pages", "Linux man-pages, sections 1-8 (roff converted to text)",
            "manpages manpages-dev", "roff", r"^/usr/share/man/man\d/.*\.gz$"),
    _domain("dictionary", "GNU Collaborative International Dictionary of English entries",
            "dict-gcide", "dictd", r"\.dict\.dz$"),
    _domain("glossaries", "computing glossaries: FOLDOC, Jargon File, V.E.R.A., Devil's Dictionary",
            "dict-foldoc dict-jargon dict-vera dict-devil", "dictd", r"\.dict\.dz$"),
    _domain("bible_kjv", "the King James Bible, one chapter per document",
            "bible-kjv-text bible-kjv", "bible", r"/bible\.data$"),
    _domain("fortunes_en", "English fortune cookies (quotes, jokes, verse)",
            "fortunes fortunes-min", "fortune", _FORTUNE_FILES + r"[^/]+$", exclude=_NOT_INDEX),
    _domain("fortunes_intl", "German, Spanish, Italian and Russian fortune cookies",
            "fortunes-de fortunes-es fortunes-it fortunes-ru", "fortune",
            _FORTUNE_FILES + r"(de|es|it|ru)/[^/]+$", exclude=_NOT_INDEX),
    _domain("wordnet", "WordNet 3.0 database records (synsets, pointers, glosses)",
            "wordnet-base", "wordnet", r"/wordnet/data\.(noun|verb|adj|adv)$"),
)  # fmt: skip

#: The target: the Python 3.11 documentation (tutorial, library reference, HOWTOs) as written,
#: in reStructuredText. Not a training domain, but related to several of them.
DEFAULT_TARGET = _domain(
    "python_docs", "Python 3.11 documentation sources (reStructuredText)",
    "python3-doc python3.11-doc", "text", r"/html/_sources/.*\.rst\.txt$", max_bytes=2_000_000,
)  # fmt: skip


@dataclass(kw_only=True, frozen=True)
class RealTextConfig:
    """Settings of a real-text corpus build."""

    domains: tuple[DomainSpec, ...] = DEFAULT_DOMAINS
    """The training domains, each written as a training and a validation prefix."""
    target: DomainSpec = DEFAULT_TARGET
    """The target set, written whole as ``target_<name>_text_document``."""
    vocab_size: int = 2048
    """Size of the BPE vocabulary, the end-of-document token and the 256 bytes included."""
    tokenizer_bytes_per_domain: int = 1_000_000
    """UTF-8 bytes of each domain's training documents the tokenizer is trained on."""
    valid_fraction: float = 0.05
    """Share of each domain's kept documents held out as its validation prefix (at least one)."""
    min_document_bytes: int = 16
    """Documents shorter than this (UTF-8 bytes, surrounding whitespace removed) are dropped."""
    seed: int = 0
    """Seed of the document shuffles."""
    install: bool = True
    """Install missing Debian packages with apt-get (needs root); false fails instead."""
    extra: dict[str, str] = field(default_factory=dict)
    """Free-form notes written into the manifest (for example the preset's name)."""

    def __post_init__(self) -> None:
        names = [d.name for d in self.domains]
        if len(names) < 2 or len(set(names)) != len(names):
            raise ConfigError(f"realtext domains {names}: give at least two, with distinct names")
        if not 257 + 1 <= self.vocab_size <= 65_000:
            raise ConfigError(f"vocab_size must be in [258, 65000], got {self.vocab_size}")
        if not 0 < self.valid_fraction < 0.5:
            raise ConfigError(f"valid_fraction must be in (0, 0.5), got {self.valid_fraction}")
        if self.tokenizer_bytes_per_domain < 1 or self.min_document_bytes < 1:
            raise ConfigError("tokenizer_bytes_per_domain and min_document_bytes must be >= 1")

    @property
    def packages(self) -> list[str]:
        """Every Debian package the build reads, sorted."""
        return sorted({p for d in (*self.domains, self.target) for p in d.packages})


def small_config() -> RealTextConfig:
    """A few small packages and caps: a complete build in seconds (the tests use it).

    Its packages are listed in ``.ci/system-packages.sh``; none is tied to a Python or kernel
    version, so the preset builds on any recent Debian release.
    """
    cap = 150_000
    return RealTextConfig(
        domains=(
            _domain("c_headers", "glibc headers", "libc6-dev", "text", r"\.h$", max_bytes=cap),
            _domain("man_pages", "Linux man-pages (roff)", "manpages", "roff",
                    r"^/usr/share/man/man\d/.*\.gz$", max_bytes=cap),
            _domain("devil", "The Devil's Dictionary (dictd)", "dict-devil", "dictd",
                    r"\.dict\.dz$", max_bytes=cap),
            _domain("bible_kjv", "the King James Bible", "bible-kjv-text bible-kjv", "bible",
                    r"/bible\.data$", max_bytes=cap),
            _domain("fortunes_it", "Italian fortunes", "fortunes-it", "fortune",
                    _FORTUNE_FILES + r"it/[^/]+$", exclude=_NOT_INDEX, max_bytes=cap),
        ),
        target=_domain("fortunes_es", "Spanish fortunes", "fortunes-es", "fortune",
                       _FORTUNE_FILES + r"es/[^/]+$", exclude=_NOT_INDEX, max_bytes=60_000),
        vocab_size=512,
        tokenizer_bytes_per_domain=60_000,
        valid_fraction=0.1,
        extra={"preset": "small"},
    )  # fmt: skip


PRESETS = {"full": RealTextConfig, "small": small_config}


# --- documents ----------------------------------------------------------------------------------


@dataclass
class DomainText:
    """A domain's selected files and documents."""

    spec: DomainSpec
    files: list[str]
    num_extracted: int
    """Documents the extractor produced (before the length filter and the cap)."""
    train: list[str]
    valid: list[str]


def select_files(spec: DomainSpec) -> list[str]:
    """The packaged files of ``spec`` that match its pattern and not its exclude, sorted."""
    keep = re.compile(spec.pattern)
    skip = re.compile(spec.exclude) if spec.exclude else None
    files = sorted(
        {
            f
            for package in spec.packages
            for f in debian.package_files(package)
            if keep.search(f) and not (skip and skip.search(f))
        }
    )
    if not files:
        raise DataError(
            f"domain {spec.name}: no file of {list(spec.packages)} matches {spec.pattern!r}"
        )
    return files


def _shuffle_seed(seed: int, name: str) -> list[int]:
    return [seed, zlib.crc32(name.encode())]


def split_documents(
    docs: Sequence[str], spec: DomainSpec, cfg: RealTextConfig, *, holdout: bool = True
) -> tuple[list[str], list[str]]:
    """Filter, shuffle, cap and split ``docs`` into (train, validation) lists.

    With ``holdout=False`` every kept document goes to the first list (the target set).
    """
    kept = [d for d in docs if len(d.strip().encode()) >= cfg.min_document_bytes]
    order = np.random.default_rng(_shuffle_seed(cfg.seed, spec.name)).permutation(len(kept))
    chosen: list[str] = []
    total = 0
    for i in order:
        size = len(kept[i].encode())
        if chosen and total + size > spec.max_bytes:
            break
        chosen.append(kept[i])
        total += size
    if not holdout:
        return chosen, []
    num_valid = max(1, round(cfg.valid_fraction * len(chosen)))
    if len(chosen) - num_valid < 1:
        raise DataError(
            f"domain {spec.name}: only {len(chosen)} document(s) kept; raise max_bytes "
            "or pick a package with more text"
        )
    return chosen[num_valid:], chosen[:num_valid]


def read_domain(spec: DomainSpec, cfg: RealTextConfig, *, holdout: bool = True) -> DomainText:
    """List, extract and split the documents of one domain."""
    files = select_files(spec)
    docs = EXTRACTORS[spec.format](files)
    train, valid = split_documents(docs, spec, cfg, holdout=holdout)
    return DomainText(spec=spec, files=files, num_extracted=len(docs), train=train, valid=valid)


# --- tokenizer and outputs ----------------------------------------------------------------------


def train_tokenizer(texts: dict[str, list[str]], cfg: RealTextConfig) -> Any:
    """A byte-level BPE tokenizer trained on up to ``tokenizer_bytes_per_domain`` per domain."""
    tk = require("tokenizers", extra="realtext")

    def sample() -> Iterator[str]:
        for name in sorted(texts):
            used = 0
            for doc in texts[name]:
                if used >= cfg.tokenizer_bytes_per_domain:
                    break
                yield doc
                used += len(doc.encode())

    tokenizer = tk.Tokenizer(tk.models.BPE())
    tokenizer.pre_tokenizer = tk.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tk.decoders.ByteLevel()
    trainer = tk.trainers.BpeTrainer(
        vocab_size=cfg.vocab_size,
        min_frequency=2,
        special_tokens=[EOD_TOKEN],
        initial_alphabet=tk.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(sample(), trainer=trainer)
    return tokenizer


def encode_documents(tokenizer: Any, docs: Sequence[str]) -> Iterator[np.ndarray]:
    """Token arrays (``uint16``) of ``docs``, each ending with the end-of-document token."""
    eod = tokenizer.token_to_id(EOD_TOKEN)
    for start in range(0, len(docs), _ENCODE_BATCH):
        batch = tokenizer.encode_batch(
            list(docs[start : start + _ENCODE_BATCH]), add_special_tokens=False
        )
        for enc in batch:
            yield np.array([*enc.ids, eod], dtype=np.uint16)


def _sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_prefix(out: Path, stem: str, tokenizer: Any, docs: list[str]) -> dict[str, Any]:
    tokens = write_indexed_dataset(out / stem, encode_documents(tokenizer, docs), dtype=np.uint16)
    num_bytes = sum(len(d.encode()) for d in docs)
    return {"prefix": stem, "documents": len(docs), "bytes": num_bytes, "tokens": tokens}


def _files_record(files: list[str]) -> list[dict[str, Any]]:
    return [{"path": f, "bytes": Path(f).stat().st_size, "sha256": _sha256(f)} for f in files]


def _debian_release() -> str:
    p = Path("/etc/debian_version")
    return p.read_text().strip() if p.is_file() else "unknown"


def build_corpus(out_dir: str | Path, cfg: RealTextConfig | None = None) -> dict[str, Any]:
    """Build the corpus into ``out_dir``; return the manifest (also written as manifest.json)."""
    cfg = cfg or RealTextConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    require("tokenizers", extra="realtext")
    installed = debian.install_packages(cfg.packages, install=cfg.install)
    if installed:
        log.info("installed %s", " ".join(installed))
    domains = []
    for spec in cfg.domains:
        domains.append(read_domain(spec, cfg))
        log.info(
            "%s: %d files, %d documents", spec.name, len(domains[-1].files), len(domains[-1].train)
        )
    target = read_domain(cfg.target, cfg, holdout=False)
    tokenizer = train_tokenizer({d.spec.name: d.train for d in domains}, cfg)
    atomic_write_text(out / TOKENIZER, tokenizer.to_str(pretty=True) + "\n")
    records: dict[str, Any] = {}
    for d in domains:
        records[d.spec.name] = {
            "description": d.spec.description,
            "packages": list(d.spec.packages),
            "num_documents_extracted": d.num_extracted,
            "train": _write_prefix(out, f"{d.spec.name}_text_document", tokenizer, d.train),
            "valid": _write_prefix(out, f"{d.spec.name}_valid_text_document", tokenizer, d.valid),
            "files": _files_record(d.files),
        }
        log.info("%s: %d training tokens", d.spec.name, records[d.spec.name]["train"]["tokens"])
    target_record = {
        "name": cfg.target.name,
        "description": cfg.target.description,
        "packages": list(cfg.target.packages),
        "num_documents_extracted": target.num_extracted,
        "set": _write_prefix(
            out, f"target_{cfg.target.name}_text_document", tokenizer, target.train
        ),
        "files": _files_record(target.files),
    }
    outputs = sorted(
        p.name for p in out.iterdir() if p.suffix in (".bin", ".idx") or p.name == TOKENIZER
    )
    expected = {TOKENIZER} | {
        f"{r['prefix']}{ext}"
        for r in [
            *(v[s] for v in records.values() for s in ("train", "valid")),
            target_record["set"],
        ]
        for ext in (".bin", ".idx")
    }
    manifest = {
        "builder_version": BUILDER_VERSION,
        # ``install`` only decides whether apt-get may run; it does not change the outputs
        "config": {k: v for k, v in to_dict(cfg).items() if k != "install"},
        "debian_version": _debian_release(),
        "packages": {p: debian.package_version(p) for p in cfg.packages},
        "tokenizer": {
            "file": TOKENIZER,
            "library": "tokenizers " + require("tokenizers").__version__,
            "vocab_size": tokenizer.get_vocab_size(),
            "eod_token": EOD_TOKEN,
            "eod_id": tokenizer.token_to_id(EOD_TOKEN),
        },
        "domains": records,
        "target": target_record,
        "outputs": {name: _sha256(out / name) for name in outputs if name in expected},
    }
    atomic_write_json(out / MANIFEST, manifest)
    return manifest


def load_manifest(out_dir: str | Path) -> dict[str, Any]:
    """The manifest of a built corpus; a missing one is a :class:`DataError`."""
    import json

    p = Path(out_dir) / MANIFEST
    if not p.is_file():
        raise DataError(
            f"{p} is missing: build the corpus first (python -m regmix_plugin.realtext build)"
        )
    return json.loads(p.read_text(encoding="utf-8"))
