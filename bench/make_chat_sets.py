"""Build the chat eval sets (BEIR layout plus chat question files) from long, overlapping documents.

    .venv/bin/python -m bench.make_chat_sets [--out bench/data] [--only licenses-en|debian-docs-ja]

licenses-en
    The licence texts Debian ships in /usr/share/common-licenses (package base-files): Apache-2.0, Artistic,
    BSD, CC0-1.0, GFDL-1.2/1.3, GPL-1/2/3, LGPL-2/2.1/3, MPL-1.1/2.0. Fifteen documents of 1,500 to 35,000
    characters that share whole paragraphs (GPL-2 and LGPL-2.1, GFDL-1.2 and 1.3...). Licence texts may be
    copied verbatim; the only changes are that leading indentation is dropped and that lines which are headings in the text ("8. Termination.",
    "NO WARRANTY", an underlined MPL-2.0 heading) are marked as Markdown headings, so the documents carry a
    heading structure, as an uploaded Markdown, HTML or DOCX file would.

debian-docs-ja
    The Japanese Debian FAQ (package debian-faq-ja; verbatim copying and translation permitted, see its
    notice) and the Japanese Debian New Maintainers' Guide (package maint-guide-ja; GPL-2.0+), one document per
    chapter: 28 documents on overlapping subjects (packages, dpkg, apt, source packages, maintainers). The
    chapter HTML is turned into Markdown (headings, paragraphs, list items, code blocks; tables of contents and
    navigation dropped). The packages are read from /usr/share/doc when installed, else fetched with
    ``apt-get download`` and unpacked with ``dpkg -x`` into a temporary folder.

The questions are written by hand and live in each set's ``chat-dev.jsonl`` and ``chat-test.jsonl`` (one
JSON object a line: ``id``, ``question``, ``doc_ids`` or ``answerable: false``, optional ``must_contain``).
This script writes ``corpus.jsonl`` from the sources and ``queries.jsonl`` + ``qrels/{dev,test}.tsv`` from the
answerable questions, so the retrieval eval runs on the same questions (``--split dev`` or ``--split test``).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import tempfile
from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
LICENSES = Path("/usr/share/common-licenses")
LICENSE_TITLES = {
    "Apache-2.0": "Apache License, Version 2.0",
    "Artistic": "The Artistic License (Perl)",
    "BSD": "BSD License (University of California)",
    "CC0-1.0": "Creative Commons CC0 1.0 Universal",
    "GFDL-1.2": "GNU Free Documentation License, Version 1.2",
    "GFDL-1.3": "GNU Free Documentation License, Version 1.3",
    "GPL-1": "GNU General Public License, Version 1",
    "GPL-2": "GNU General Public License, Version 2",
    "GPL-3": "GNU General Public License, Version 3",
    "LGPL-2": "GNU Library General Public License, Version 2",
    "LGPL-2.1": "GNU Lesser General Public License, Version 2.1",
    "LGPL-3": "GNU Lesser General Public License, Version 3",
    "MPL-1.1": "Mozilla Public License, Version 1.1",
    "MPL-2.0": "Mozilla Public License, Version 2.0",
}
JA_PACKAGES = {
    "faq": ("debian-faq-ja", "usr/share/doc/debian/FAQ/ja", "Debian FAQ"),
    "maint-guide": ("maint-guide-ja", "usr/share/doc/maint-guide-ja/html", "Debian 新メンテナーガイド"),
}


# --- English: licence texts ---------------------------------------------------------------------------
_NUMBERED = re.compile(r"^(\d+(?:\.\d+)*)\.?\s+(\S.*)$")
_UNDERLINE = re.compile(r"^[-=]{3,}$")
_NAMED = {"preamble", "definitions:", "statement of purpose", "no warranty", "the end"}


def _heading_level(paragraph: str) -> int | None:
    """2 or 3 when a one-line paragraph is a heading of the licence, else None."""
    lines = [line.strip() for line in paragraph.strip().split("\n")]
    if len(lines) == 2 and _UNDERLINE.match(lines[1]) and len(lines[0]) <= 90:
        numbered = _NUMBERED.match(lines[0])
        return 3 if numbered and "." in numbered.group(1) else 2
    if len(lines) != 1 or len(lines[0]) > 80:
        return None
    line = lines[0]
    letters = [c for c in line if c.isalpha()]
    if line.lower() in _NAMED or line.startswith(("APPENDIX", "ADDENDUM", "EXHIBIT", "How to Apply")):
        return 2
    numbered = _NUMBERED.match(line)
    if numbered:
        rest = numbered.group(2)
        # "1.5. "Executable" means ..." is a definition, "b) use the ..." an item: not headings.
        if '"' in rest or " means" in rest or len(rest.split()) > 9 or rest[0].islower():
            return None
        return 3 if "." in numbered.group(1) else 2
    if letters and all(c.isupper() for c in letters) and len(letters) >= 6:
        return 2
    return None


def license_markdown(text: str) -> str:
    """The licence with its heading lines marked as Markdown headings; every other line as it is."""
    out: list[str] = []
    for paragraph in re.split(r"\n\s*\n", text.strip("\n")):
        level = _heading_level(paragraph)
        if level is None:
            # Indentation is dropped: Markdown would read a paragraph indented 4 spaces as code.
            out.append("\n".join(line.strip() for line in paragraph.strip("\n").split("\n")))
        else:
            title = paragraph.strip().split("\n")[0].strip()
            out.append(f"{'#' * level} {title}")
    return "\n\n".join(out) + "\n"


def licenses() -> list[dict[str, str]]:
    docs = []
    for name, title in LICENSE_TITLES.items():
        text = (LICENSES / name).read_text(encoding="utf-8")
        docs.append({"_id": name, "title": title, "text": license_markdown(text), "format": "markdown"})
    return docs


# --- Japanese: Debian FAQ and New Maintainers' Guide --------------------------------------------------
def _ja_roots() -> tuple[dict[str, Path], tempfile.TemporaryDirectory[str] | None]:
    roots: dict[str, Path] = {}
    missing = {}
    for key, (package, folder, _) in JA_PACKAGES.items():
        installed = Path("/") / folder
        if installed.is_dir():
            roots[key] = installed
        else:
            missing[key] = (package, folder)
    if not missing:
        return roots, None
    tmp = tempfile.TemporaryDirectory(prefix="ks-chat-sets-")
    for key, (package, folder) in missing.items():
        subprocess.run(["apt-get", "download", package], cwd=tmp.name, check=True, capture_output=True)
        deb = next(Path(tmp.name).glob(f"{package}_*.deb"))
        subprocess.run(["dpkg", "-x", str(deb), str(Path(tmp.name) / "x")], check=True)
        roots[key] = Path(tmp.name) / "x" / folder
    return roots, tmp


def _text(node) -> str:  # type: ignore[no-untyped-def]
    return " ".join(node.get_text(" ").split())


def chapter_markdown(html: str) -> tuple[str, str]:
    """(chapter title, Markdown) of one DocBook chapter page."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(html, "html.parser")
    for junk in soup.select("div.navheader, div.navfooter, div.toc, div.list-of-tables, div.list-of-examples"):
        junk.decompose()
    body = soup.select_one("div.chapter") or soup.body
    title = ""
    out: list[str] = []
    for node in body.find_all(["h1", "h2", "h3", "h4", "p", "li", "pre", "dt", "tr"]):
        if node.find_parent(["li", "pre", "dt"]) is not None and node.name != "li":
            continue
        if node.name == "li" and node.find_parent("li") is not None:
            continue
        text = _text(node)
        if not text:
            continue
        if node.name in ("h1", "h2", "h3", "h4"):
            level = int(node.name[1])
            title = title or text
            out.append(f"{'#' * level} {text}")
        elif node.name == "pre":
            out.append("```\n" + node.get_text().strip("\n") + "\n```")
        elif node.name == "li":
            out.append(f"- {text}")
        elif node.name == "tr":
            out.append(" | ".join(_text(c) for c in node.find_all(["td", "th"])))
        else:
            out.append(text)
    return title, "\n\n".join(out) + "\n"


def debian_docs_ja() -> list[dict[str, str]]:
    roots, tmp = _ja_roots()
    docs = []
    try:
        for key, (_, _, book) in JA_PACKAGES.items():
            index = (roots[key] / "index.ja.html").read_text(encoding="utf-8")
            # Chapters in the book's own order, as its table of contents links them.
            pages = list(dict.fromkeys(re.findall(r'href="([a-z-]+\.ja\.html)"', index)))
            for page in pages:
                if page == "index.ja.html" or not (roots[key] / page).is_file():
                    continue
                title, text = chapter_markdown((roots[key] / page).read_text(encoding="utf-8"))
                if len(text) < 500:
                    continue
                doc_id = f"{key}-{page.removesuffix('.ja.html')}"
                docs.append({"_id": doc_id, "title": f"{book} {title}", "text": text, "format": "markdown"})
    finally:
        if tmp is not None:
            tmp.cleanup()
    return docs


# --- writing ---------------------------------------------------------------------------------------------
def read_questions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_set(folder: Path, corpus: list[dict[str, str]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for doc in corpus:
            f.write(json.dumps(doc, ensure_ascii=False) + "\n")
    ids = {d["_id"] for d in corpus}
    queries: list[dict[str, str]] = []
    (folder / "qrels").mkdir(exist_ok=True)
    for split in ("dev", "test"):
        path = folder / f"chat-{split}.jsonl"
        if not path.is_file():
            continue
        rows = ["query-id\tcorpus-id\tscore"]
        for q in read_questions(path):
            unknown = set(q.get("doc_ids") or []) - ids
            if unknown:
                raise SystemExit(f"{path}: question {q['id']} names documents not in the corpus: {sorted(unknown)}")
            if q.get("answerable", True):
                queries.append({"_id": q["id"], "text": q["question"]})
                rows += [f"{q['id']}\t{d}\t1" for d in q["doc_ids"]]
        (folder / "qrels" / f"{split}.tsv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as f:
        for q in queries:
            f.write(json.dumps(q, ensure_ascii=False) + "\n")
    chars = sum(len(d["text"]) for d in corpus)
    print(f"{folder.name}: {len(corpus)} documents, {chars:,} characters, {len(queries)} answerable questions")


SETS = {"licenses-en": licenses, "debian-docs-ja": debian_docs_ja}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DATA)
    parser.add_argument("--only", choices=sorted(SETS))
    args = parser.parse_args()
    for name, build in SETS.items():
        if args.only in (None, name):
            write_set(args.out / name, build())


if __name__ == "__main__":
    main()
