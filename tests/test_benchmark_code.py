"""Which code computed a benchmark cell: the source digest, and reused results of other code named in the
tables and warned about, never silent."""

from __future__ import annotations

import json

import pytest

from cellsynth.benchmark import run_benchmark
from cellsynth.benchmark.code import code_note, code_stamp, other_code, source_digest
from cellsynth.benchmark.users import run_user_benchmark
from cellsynth.data.synthetic import synthesize_city
from tests.test_benchmark import tiny_city


def test_the_digest_follows_code_and_presets_and_nothing_else(tmp_path):
    package = tmp_path / "cellsynth"
    (package / "configs").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "model.py").write_text("x = 1\n")
    (package / "configs" / "paper.yaml").write_text("epochs: 10\n")

    def digest():
        return source_digest.__wrapped__(package)  # uncached: the files change below

    first = digest()
    assert len(first) == 12 and first == digest()
    (package / "README.md").write_text("docs")  # neither code nor a preset
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "model.cpython-311.pyc").write_bytes(b"\0")
    assert digest() == first
    (package / "model.py").write_text("x = 2\n")
    changed = digest()
    assert changed != first
    (package / "configs" / "paper.yaml").write_text("epochs: 20\n")
    assert digest() != changed


def test_the_note_names_cells_of_other_code_and_old_results():
    here = {"code": code_stamp()}
    elsewhere = {"code": {"cellsynth": "0.0.9", "source": "abcdef012345"}}
    assert other_code([("a", here)]) == []
    assert code_note([("a", here), ("b", here)]).endswith("(every cell).")
    note = code_note([("a", here), ("b", elsewhere), ("c", {})])
    assert "**2 of 3 cell(s) computed by other code**" in note
    assert "b (cellsynth 0.0.9, source abcdef012345)" in note and "c (code not recorded)" in note
    assert source_digest() in note


def test_a_station_bench_reusing_another_codes_cell_says_so(tmp_path):
    kw = {"seeds": 2, "out": tmp_path / "b", "samples": 2, "progress": False, "echo": None}
    first = run_benchmark(tiny_city(), ["seasonal-mean"], **kw)
    assert all(run["code"] == code_stamp() for run in first.runs)
    assert "(every cell)" in first.table
    cell = tmp_path / "b" / "results" / "seasonal-mean__seed1.json"
    cell.write_text(
        json.dumps(json.loads(cell.read_text()) | {"code": {"cellsynth": "0.0.9", "source": "x"}})
    )
    with pytest.warns(
        UserWarning, match=r"1 reused cell\(s\) were computed by other code .*seasonal-mean, seed 1"
    ):
        again = run_benchmark(tiny_city(), ["seasonal-mean"], **kw)
    assert "1 of 2 cell(s) computed by other code" in again.table
    assert "1 of 2 cell(s)" in (tmp_path / "b" / "table.md").read_text()
    assert json.loads((tmp_path / "b" / "results.json").read_text())["code"] == code_stamp()


def test_a_user_bench_reusing_another_codes_cell_says_so(tmp_path):
    users = synthesize_city(n_stations=10, n_users=16, weeks=1, seed=0).users
    kw = {"out": tmp_path / "u", "seeds": 1, "test_fraction": 0.25, "echo": None}
    first = run_user_benchmark(users, ["markov"], **kw)
    assert "(every cell)" in first.table
    cell = tmp_path / "u" / "results" / "markov__seed0.json"
    record = json.loads(cell.read_text())
    del record["code"]  # a result written before results recorded their code
    cell.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match=r"markov, seed 0 \(code not recorded\)"):
        again = run_user_benchmark(users, ["markov"], **kw)
    assert "1 of 1 cell(s) computed by other code" in again.table
