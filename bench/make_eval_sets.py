"""Build the retrieval eval sets (BEIR layout) from text already on this machine, deterministically.

    .venv/bin/python -m bench.make_eval_sets [--out bench/data] [--only python-docstrings-en|rust-by-example-ja]

python-docstrings-en
    Python standard-library docstrings (PSF licence). Query: a docstring's first sentence. Relevant passage: the
    rest of that docstring (so the query is not a trivial exact match), cut to about one chunk at a sentence or
    paragraph end. Docstrings whose rest is under 100 characters, queries that occur more than once and
    repeated passages are skipped. Up to 3,000 passages are drawn by a stable hash of their name (2,127 qualify
    on Python 3.11); 1,000 of them give the queries, the rest are distractors. Docstrings differ between Python versions: the committed
    set was made with the Python named in its README.

rust-by-example-ja
    The Japanese translation of Rust By Example (rust-lang-ja, MIT or Apache-2.0), which rustup installs with
    the `rust-docs` component. Query: the first sentence of a paragraph with two or more sentences. Relevant
    passage: the rest of that paragraph (30 characters at least). Every other paragraph is a distractor.
    Title: the section heading.

Each set: corpus.jsonl (_id, title, text), queries.jsonl (_id, text), qrels/test.tsv (query-id corpus-id
score) and a README with its source and size.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import platform
import re
import sysconfig
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
SKIP_PARTS = {"test", "tests", "idlelib", "lib2to3", "turtledemo", "site-packages", "__phello__"}
MAX_PASSAGE_CHARS = 540  # with the title line, about one 600-character chunk
RBE_GLOB = ".rustup/toolchains/*/share/doc/rust/html/rust-by-example/ja/print.html"


@dataclass(slots=True)
class Item:
    """One query and its relevant passage (or a distractor passage, with no query)."""

    id: str
    title: str
    passage: str
    query: str | None


# --- English: standard-library docstrings -------------------------------------------------------------
_SENTENCE_END = re.compile(r"(?<!\be\.g)(?<!\bi\.e)(?<!\betc)(?<!\bvs)[.!?](?=\s|$)")
_SIGNATURE = re.compile(r"^[\w.]+\(.*\)\s*(->|$)")


def first_sentence(doc: str) -> tuple[str, str] | None:
    """(first sentence, rest) of a docstring; the sentence must end inside the first paragraph."""
    paragraph = doc.split("\n\n", 1)[0]
    m = _SENTENCE_END.search(paragraph)
    end = m.end() if m else len(paragraph)
    sentence = " ".join(doc[:end].split())
    return sentence, doc[end:].strip()


def cut_passage(text: str, limit: int = MAX_PASSAGE_CHARS) -> str:
    """At most ``limit`` characters, ending at a paragraph, sentence or line end when there is one."""
    if len(text) <= limit:
        return text
    head = text[:limit]
    for sep in ("\n\n", ". ", "。", "\n"):
        cut = head.rfind(sep)
        if cut > limit // 2:
            return head[: cut + (1 if sep in (". ", "。") else 0)].rstrip()
    return head.rstrip()


def _docstrings(tree: ast.Module, module: str) -> Iterator[tuple[str, str]]:
    doc = ast.get_docstring(tree)
    if doc:
        yield module, doc

    def visit(node: ast.AST, prefix: str) -> Iterator[tuple[str, str]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}.{child.name}"
                doc = ast.get_docstring(child)
                if doc:
                    yield name, doc
                yield from visit(child, name)

    yield from visit(tree, module)


def python_docstrings(n_passages: int = 3000, n_queries: int = 1000) -> list[Item]:
    root = Path(sysconfig.get_paths()["stdlib"])
    found: list[Item] = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root)
        if any(part in SKIP_PARTS for part in rel.parts):
            continue
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, ValueError):
            continue
        module = ".".join(rel.with_suffix("").parts).removesuffix(".__init__")
        for name, doc in _docstrings(tree, module):
            sentence, rest = first_sentence(doc)
            if len(rest) < 100 or len(sentence) < 20 or len(sentence.split()) < 4 or len(sentence) > 300:
                continue
            if _SIGNATURE.match(sentence) or rest.startswith(">>>"):
                continue
            found.append(Item(name, name, cut_passage(rest), sentence))
    # An ambiguous query (the same first sentence in several places) has no single right answer: drop it.
    queries = Counter(_norm(i.query or "") for i in found)
    passages: set[str] = set()
    unique: list[Item] = []
    for item in found:
        key = _norm(item.passage)
        if queries[_norm(item.query or "")] > 1 or key in passages:
            continue
        passages.add(key)
        unique.append(item)
    chosen = sorted(unique, key=lambda i: _stable_hash(i.id))[:n_passages]
    for item in chosen[n_queries:]:
        item.query = None  # a distractor: in the corpus, not asked about
    return sorted(chosen, key=lambda i: i.id)


# --- Japanese: Rust By Example (ja) ------------------------------------------------------------------
_JA_SENTENCE = re.compile(r"(?<=[。！？])")
_HIRAGANA = re.compile(r"[\u3041-\u309f]")


def find_rust_by_example_ja(home: Path | None = None) -> Path | None:
    found = sorted((home or Path.home()).glob(RBE_GLOB), key=lambda p: ("stable" not in str(p), str(p)))
    return found[0] if found else None


def rust_by_example_ja(path: Path, min_rest: int = 30) -> list[Item]:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")
    main = soup.find("main") or soup
    items: list[Item] = []
    seen: set[str] = set()
    heading = ""
    for node in main.find_all(["h1", "h2", "h3", "p"]):
        text = " ".join(node.get_text(" ", strip=True).split())
        if node.name != "p":
            heading = text
            continue
        if not _HIRAGANA.search(text) or len(text) < 20 or text in seen:
            continue
        seen.add(text)
        n = len(items) + 1
        sentences = [s for s in _JA_SENTENCE.split(text) if s.strip()]
        rest = "".join(sentences[1:]).strip()
        if len(sentences) >= 2 and len(rest) >= min_rest:
            items.append(Item(f"rbe-ja-{n:04d}", heading, rest, sentences[0].strip()))
        else:
            items.append(Item(f"rbe-ja-{n:04d}", heading, text, None))
    repeated = Counter(i.query for i in items if i.query)
    for item in items:
        if item.query and repeated[item.query] > 1:  # ambiguous: keep the paragraph whole, as a distractor
            item.passage, item.query = f"{item.query}{item.passage}", None
    return items


# --- output ------------------------------------------------------------------------------------------
def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _stable_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def write_set(out: Path, items: list[Item], readme: str) -> None:
    (out / "qrels").mkdir(parents=True, exist_ok=True)
    with (out / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for i in items:
            f.write(json.dumps({"_id": i.id, "title": i.title, "text": i.passage}, ensure_ascii=False) + "\n")
    asked = [i for i in items if i.query]
    with (out / "queries.jsonl").open("w", encoding="utf-8") as f:
        for i in asked:
            f.write(json.dumps({"_id": f"q-{i.id}", "text": i.query}, ensure_ascii=False) + "\n")
    with (out / "qrels" / "test.tsv").open("w", encoding="utf-8") as f:
        f.write("query-id\tcorpus-id\tscore\n")
        for i in asked:
            f.write(f"q-{i.id}\t{i.id}\t1\n")
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file() and p.name != "README.md")
    summary = f"{len(items)} passages, {len(asked)} queries, {size / 1e6:.2f} MB"
    (out / "README.md").write_text(readme.strip() + f"\n\nSize: {summary}.\n", encoding="utf-8")
    print(f"{out}: {summary}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=DATA)
    ap.add_argument("--only", choices=["python-docstrings-en", "rust-by-example-ja"])
    args = ap.parse_args()
    regenerate = "Regenerate with `.venv/bin/python -m bench.make_eval_sets`."
    if args.only in (None, "python-docstrings-en"):
        write_set(
            args.out / "python-docstrings-en",
            python_docstrings(),
            f"""# python-docstrings-en
Python {platform.python_version()} standard-library docstrings (Python Software Foundation License).
Query: a docstring's first sentence. Relevant passage: the rest of the same docstring, cut to about
{MAX_PASSAGE_CHARS} characters at a sentence or paragraph end; title: the qualified name. Distractors: other
docstrings' passages. {regenerate}""",
        )
    if args.only in (None, "rust-by-example-ja"):
        path = find_rust_by_example_ja()
        if path is None:
            raise SystemExit(
                f"rust-by-example-ja: no ~/{RBE_GLOB} here (install it with `rustup component add rust-docs`); "
                "the committed copy in bench/data/rust-by-example-ja stays valid"
            )
        write_set(
            args.out / "rust-by-example-ja",
            rust_by_example_ja(path),
            f"""# rust-by-example-ja
Rust By Example, Japanese translation (https://github.com/rust-lang-ja/rust-by-example-ja; MIT or Apache-2.0,
Copyright (c) 2014 Jorge Aparicio and the translators), read from the copy rustup installs with `rust-docs`
({path.name} of the `{path.parts[-8] if len(path.parts) > 8 else "?"}` toolchain). Query: the first sentence of
a paragraph of two or more sentences. Relevant passage: the rest of that paragraph; title: the section heading.
Distractors: every other paragraph. {regenerate}""",
        )


if __name__ == "__main__":
    main()
