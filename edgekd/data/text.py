"""Offline text for transformer distillation: the Debian ``fortunes`` corpus or a user's text file.

::

    splits = load_text("fortunes", teacher.tokenizer, max_length=64, n_train=20000)
    splits.train  # int64 token ids (N, 64), padded with the tokenizer's pad id
    splits.sentences["test"]  # the held-out sentences as text

Text is split into sentences (a small regex splitter: ``. ! ?`` followed by a space or the end),
whitespace-normalised, filtered by word count, deduplicated and shuffled by seed before the
train/val/test split, so no sentence appears in two splits. Tokenisation uses the *teacher's*
tokenizer (students share its vocabulary) with padding and truncation to a fixed ``max_length``.
"""

from __future__ import annotations

import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from edgekd.errors import ConfigError, DataError

STAGE = "data/text"
FORTUNES_DIR = Path("/usr/share/games/fortunes")
# not prose: pictures, and a file of foreign-language fortunes to translate
FORTUNES_SKIP = frozenset({"art", "ascii-art", "translate-me"})
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[\"'(\[]?[A-Z0-9])")
_LETTERS = re.compile(r"[A-Za-z]")


def read_fortunes(root: str | Path = FORTUNES_DIR, skip: Iterable[str] = FORTUNES_SKIP) -> list[str]:
    """Every fortune (``%``-separated entries) of every plain-text file in ``root``, in file order."""
    folder = Path(root)
    files = sorted(p for p in folder.glob("*") if p.is_file() and not p.suffix and p.name not in set(skip)) \
        if folder.is_dir() else []
    if not files:
        raise DataError(f"no fortune files in {folder}", stage=STAGE,
                        hint="apt-get install fortunes (Debian), or pass a text file of your own")
    out: list[str] = []
    for p in files:
        text = p.read_text(encoding="utf-8", errors="replace")
        out.extend(e.strip() for e in text.split("\n%\n") if e.strip())
    return out


def split_sentences(text: str, min_words: int = 4, max_words: int = 40) -> list[str]:
    """Sentences of ``text`` with ``min_words``..``max_words`` words and mostly letters."""
    flat = " ".join(text.split())
    out = []
    for s in _SENTENCE_END.split(flat):
        s = s.strip()
        words = s.split()
        if min_words <= len(words) <= max_words and len(_LETTERS.findall(s)) >= 0.6 * len(s.replace(" ", "")):
            out.append(s)
    return out


def read_sentences(source: str | Path = "fortunes", min_words: int = 4, max_words: int = 40) -> list[str]:
    """Unique sentences, in first-seen order, from ``"fortunes"`` or a UTF-8 text file (blank-line paragraphs)."""
    if str(source) == "fortunes":
        chunks = read_fortunes()
    else:
        path = Path(source)
        if not path.is_file():
            raise DataError(f"text file {path} not found", stage=STAGE,
                            hint="pass 'fortunes' (apt-get install fortunes) or the path of a UTF-8 text file")
        chunks = re.split(r"\n\s*\n", path.read_text(encoding="utf-8", errors="replace"))
    seen: dict[str, None] = {}
    for chunk in chunks:
        for s in split_sentences(chunk, min_words, max_words):
            seen.setdefault(s, None)
    return list(seen)


def tokenize(sentences: Sequence[str], tokenizer: Any, max_length: int) -> torch.Tensor:
    """int64 ids ``(N, max_length)``: [CLS] ... [SEP], padded with the tokenizer's pad id, truncated."""
    if not sentences:
        return torch.zeros((0, max_length), dtype=torch.int64)
    enc = tokenizer(list(sentences), padding="max_length", truncation=True, max_length=max_length,
                    return_tensors="pt")
    return enc["input_ids"].to(torch.int64)


@dataclass
class TextSplits:
    """Tokenised train/val/test splits of one corpus (ids int64 ``(N, max_length)``) and their text."""

    name: str
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    max_length: int
    pad_token_id: int
    sentences: dict[str, list[str]] = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"TextSplits({self.name!r}, train={len(self.train)}, val={len(self.val)}, "
                f"test={len(self.test)}, max_length={self.max_length})")


def load_text(source: str | Path, tokenizer: Any, max_length: int = 64, n_train: int | None = None,
              n_val: int = 256, n_test: int = 512, seed: int = 0, min_words: int = 4,
              max_words: int = 40) -> TextSplits:
    """Read, split, shuffle (by ``seed``) and tokenise a corpus; test and val come first, train gets the rest.

    ``n_train`` None uses every remaining sentence.
    """
    if max_length < 4:
        raise ConfigError(f"max_length={max_length} is too short for [CLS] text [SEP]", stage=STAGE,
                          hint="use max_length >= 16 (64 fits most sentences)")
    sentences = read_sentences(source, min_words, max_words)
    random.Random(seed).shuffle(sentences)
    need = n_val + n_test + (n_train or 1)
    if len(sentences) < need:
        raise DataError(f"{source} has {len(sentences)} usable sentences, fewer than the {need} asked for",
                        stage=STAGE, hint="lower n_train/n_val/n_test, relax min_words/max_words, or give more text")
    test, val = sentences[:n_test], sentences[n_test:n_test + n_val]
    rest = sentences[n_test + n_val:]
    train = rest if n_train is None else rest[:n_train]
    name = "fortunes" if str(source) == "fortunes" else Path(source).name
    return TextSplits(name=name, train=tokenize(train, tokenizer, max_length), val=tokenize(val, tokenizer, max_length),
                      test=tokenize(test, tokenizer, max_length), max_length=max_length,
                      pad_token_id=int(tokenizer.pad_token_id or 0),
                      sentences={"train": train, "val": val, "test": test})


def attach_tokenizer(bundle: Any, tokenizer: Any, max_length: int, folder: str = "tokenizer") -> Any:
    """Save ``tokenizer``'s files into ``bundle.root/folder`` and record them in ``bundle.extra``; re-save.

    An app tokenises with these files, pads/truncates to ``max_length`` with ``pad_token_id`` and
    feeds the ids (the model derives its attention mask from the padding).
    """
    out = Path(bundle.root) / folder
    files = tokenizer.save_pretrained(str(out))
    bundle.extra["tokenizer"] = {
        "path": folder, "files": sorted(Path(f).name for f in files if Path(f).exists()),
        "max_length": int(max_length), "pad_token_id": int(tokenizer.pad_token_id or 0),
        "input": f"int64 token ids (1, {max_length}): [CLS] text [SEP], padded with pad_token_id",
        "output": "L2-normalised mean-pooled sentence embedding",
    }
    bundle.save()
    return bundle
