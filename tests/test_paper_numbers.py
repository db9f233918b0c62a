"""Every number typed in from a paper is found, as quoted, in the paper's text."""
import json
import re
from pathlib import Path

import pytest

from benchmark.report import PAPER_NUMBERS, load_paper_numbers

PAPERS = Path(__file__).resolve().parent.parent.parent / "shared" / "papers"
FILES = {"000": "000_a3ed05a5c4be5536.txt", "001": "001_23c0a80d273841ac.txt"}


def test_paper_numbers_load_and_have_citations():
    numbers = load_paper_numbers()
    assert len(numbers) > 50
    for n in numbers:
        assert re.match(r"paper 00[01], (Table \d|Sec\. [\d.]+)", n.citation), n
        assert n.quote


@pytest.mark.skipif(not PAPERS.is_dir(), reason="the papers are not beside the checkout")
def test_every_quote_is_in_its_paper_and_holds_its_value():
    for n in load_paper_numbers():
        paper_id = n.citation.split(",")[0].split()[1]
        text = (PAPERS / FILES[paper_id]).read_text()
        assert n.quote in text, f"quote not found in paper {paper_id}: {n.quote!r}"
        printed = [float(x) for x in re.findall(r"[-+]?\d+\.?\d*", n.quote.replace("<b>", "").replace("</b>", ""))]
        candidates = {n.value, round(n.value * 100, 6), -n.value}
        assert any(abs(p - c) < 1e-9 for p in printed for c in candidates), (n.value, n.quote)


def test_file_is_valid_json():
    json.loads(PAPER_NUMBERS.read_text())
