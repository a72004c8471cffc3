"""Inputs the fuzzer (bench/fuzz.py) found interesting, kept as regression cases: each must
end in an answer or a clean rejection, quickly."""

import time
from pathlib import Path

import pytest

from digitlab.recognize import Recognizer, Rejected

CORPUS = sorted((Path(__file__).parent / "fuzz_corpus").glob("*.bin"))


@pytest.fixture(scope="module")
def rec():
    return Recognizer.load()


def test_there_is_a_corpus():
    assert len(CORPUS) >= 20


@pytest.mark.parametrize("path", CORPUS, ids=lambda p: p.stem)
def test_answer_or_clean_rejection(rec, path):
    data = path.read_bytes()
    for read in (rec.predict, rec.read):
        started = time.perf_counter()
        try:
            read(data)
        except Rejected as exc:
            assert str(exc), "a reason is given"
        assert time.perf_counter() - started < 2.0, "no hang"
