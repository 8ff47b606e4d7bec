"""Every code example in README.md and docs/*.md runs as written.

Each document's fenced blocks tagged ``python`` or ``bash`` run in order, in a fresh temporary directory laid
out like the repository root (``../shared`` there is the checkout's ``../shared``), in one subprocess of this
interpreter (this file run as a script):

- the ``python`` blocks in one namespace per document, like doctest, as the ``__main__`` module of a script;
- the ``bash`` blocks under ``bash -euo pipefail``, with the venv's ``bin`` (its ``cellsynth``) first on PATH.

``CELLSYNTH_SMOKE=1`` is set, so every fit is a seconds-long smoke fit: this checks that the commands and calls
work together as written, not what a model learns.

Every fenced block names its language; blocks that are not code (layouts, formulas, pseudo-code, output shown)
are ``text``. A block is left out only by ``<!-- not run: REASON -->`` on the line before it, and each such
exemption is listed in :data:`EXEMPTIONS`. The files a user brings (``my-traffic.csv``, ...) are made by
:data:`USER_FILES` from a small synthetic city, for the documents that name them; a document whose blocks read
``../shared/data`` is skipped with a reason where that is absent.

Not run: docs/notebook/ (a dated record of past runs, with hour-long commands and the numbers they gave) and
BENCHMARKS.md (its commands are the hours-long benchmark runs whose results it records).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DOCUMENTS = ["README.md", *sorted(str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "docs").glob("*.md"))]
RUN = ("python", "bash")
# Tags of blocks that are shown, not run.
SHOWN = ("text", "yaml", "json", "csv")
EXEMPT_MARK = re.compile(r"^\s*<!--\s*not run:\s*(?P<reason>.+?)\s*-->\s*$")
FENCE = re.compile(r"^```(?P<language>[\w-]*)\s*$")

#: (document, first line of the block) -> why it is not run. Keep it short: prefer a block that runs.
EXEMPTIONS = {
    ("README.md", "make demo   # sets up .venv, then runs the main job on the built-in synthetic city"): (
        "make test runs this test; make demo is tests/test_demo.py's job"
    ),
    (
        "docs/scale.md",
        "cellsynth fit stouter --data city/traffic --out run-4gpu --set accelerator=gpu --devices 4",
    ): ("needs a machine with 4 GPUs"),
    ("docs/scale.md", "#!/bin/bash"): "needs a SLURM cluster with GPU nodes",
    (
        "docs/scale.md",
        "torchrun --nnodes 2 --node-rank 0 --nproc-per-node 4 --master-addr node0 --master-port 29500 \\",
    ): "needs two machines with GPUs",
    ("docs/scale.md", "cellsynth generate --model /shared/run --data /shared/city/traffic --samples 4 \\"): (
        "needs a Ray cluster on other machines; the block before it runs the Ray engine on a local one"
    ),
}
DOCUMENT_TIMEOUT_S = 600


@dataclass(frozen=True)
class Block:
    document: str
    line: int  # of the first line of code (1-based)
    language: str
    code: str
    exempt: str | None  # the reason, when marked not run


def blocks(document: str, text: str | None = None) -> list[Block]:
    """The fenced blocks of ``document`` (its ``text``, read from the repository when None), in order."""
    if text is None:
        text = (REPO_ROOT / document).read_text(encoding="utf-8")
    lines = text.splitlines()
    found, i = [], 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].startswith("```")), None)
        assert end is not None, f"{document}:{i + 1}: a code block that is never closed"
        exempt = EXEMPT_MARK.match(lines[i - 1]) if i else None
        found.append(
            Block(
                document,
                i + 2,
                match["language"],
                "\n".join(lines[i + 1 : end]) + "\n",
                exempt["reason"] if exempt else None,
            )
        )
        i = end + 1
    return found


# -- the files a user brings ----------------------------------------------------------------------------------
def _city():
    from cellsynth.data.synthetic import synthesize_city

    return synthesize_city(n_stations=20, n_users=10, weeks=2, seed=0)


def _long_table(traffic) -> str:
    """``station_id, timestamp, <channels>``, one row per station and hour, offsets written (the CSV format of
    docs/data-formats.md)."""
    import pandas as pd

    n, t, _ = traffic.values.shape
    frame = pd.DataFrame(
        {
            "station_id": [sid for sid in traffic.stations.ids for _ in range(t)],
            "timestamp": [stamp.isoformat() for stamp in traffic.timestamps] * n,
        }
        | {name: traffic.values[:, :, j].reshape(-1) for j, name in enumerate(traffic.channels)}
    )
    return frame.to_csv(index=False)


def _my_traffic(path: Path) -> None:
    path.write_text(_long_table(_city().traffic))


def _my_stations(path: Path) -> None:
    _city().stations.to_frame().to_csv(path, index=False)


def _planned(path: Path) -> None:
    """Two new sites: ids no station has, coordinates in the city, the stations' POI columns."""
    stations = _city().stations.to_frame()
    planned = stations.iloc[:2].copy()
    planned["station_id"] = ["planned-1", "planned-2"]
    planned["lat"] += 0.003
    planned.to_csv(path, index=False)


def _their_output(path: Path) -> None:
    """Another generator's traffic for every station: the city's weeks times log-normal noise."""
    import numpy as np

    traffic = _city().traffic
    noisy = traffic.values * np.random.default_rng(1).lognormal(0, 0.3, traffic.values.shape)
    path.write_text(
        _long_table(type(traffic)(noisy, traffic.start, traffic.step, traffic.channels, traffic.stations))
    )


#: File name -> how it is made, for the files the docs tell users to bring.
USER_FILES: dict[str, Callable[[Path], None]] = {
    "my-traffic.csv": _my_traffic,
    "my-stations.csv": _my_stations,
    "planned.csv": _planned,
    "their-output.csv": _their_output,
}


def _environment() -> dict[str, str]:
    import cellsynth

    venv_bin = Path(sys.executable).parent
    assert (venv_bin / "cellsynth").exists(), (
        f"no cellsynth script beside {sys.executable}: install cellsynth"
    )
    source = str(Path(cellsynth.__file__).resolve().parents[1])  # this checkout's cellsynth, not another
    env = dict(os.environ)
    env.update(
        CELLSYNTH_SMOKE="1",
        PATH=f"{venv_bin}{os.pathsep}{env.get('PATH', '')}",
        PYTHONPATH=os.pathsep.join(filter(None, [source, env.get("PYTHONPATH")])),
        MPLBACKEND="Agg",
    )
    env.setdefault("OMP_NUM_THREADS", "1")
    return env


# -- the tests ------------------------------------------------------------------------------------------------
def test_every_block_names_its_language_and_every_exemption_is_listed():
    exempted = {}
    for document in DOCUMENTS:
        for block in blocks(document):
            where = f"{document}:{block.line - 1}"
            assert block.language in RUN + SHOWN, (
                f"{where}: a block tagged {block.language!r}; tag code python or bash (it then runs in "
                f"tests/test_docs.py) and everything else {' or '.join(SHOWN)}"
            )
            if block.exempt:
                assert block.language in RUN, f"{where}: only python or bash blocks can be marked not run"
                exempted[(document, block.code.splitlines()[0])] = block.exempt
    assert exempted == EXEMPTIONS


@pytest.mark.parametrize("document", [d for d in DOCUMENTS if any(b.language in RUN for b in blocks(d))])
def test_document_runs_as_written(document, tmp_path):
    to_run = [b for b in blocks(document) if b.language in RUN and not b.exempt]
    shared = REPO_ROOT.parent / "shared"
    if any("../shared/data" in b.code for b in to_run) and not (shared / "data").is_dir():
        pytest.skip(
            f"{document} reads ../shared/data, which is absent beside the checkout ({shared / 'data'})"
        )
    root = tmp_path / "repo"
    root.mkdir()
    if shared.is_dir():
        (tmp_path / "shared").symlink_to(shared, target_is_directory=True)
    text = (REPO_ROOT / document).read_text(encoding="utf-8")
    for name, make in USER_FILES.items():
        if name in text:
            make(root / name)
    plan = tmp_path / "blocks.json"
    plan.write_text(json.dumps([asdict(b) for b in to_run]))
    done = subprocess.run(
        [sys.executable, __file__, str(plan)],
        cwd=root,
        env=_environment(),
        capture_output=True,
        text=True,
        timeout=DOCUMENT_TIMEOUT_S,
    )
    output = (done.stdout + done.stderr)[-6000:]
    assert done.returncode == 0, f"{document}: a block failed\n{output}"
    assert f"ran {len(to_run)} block(s)" in done.stdout, output


SAMPLE = """\
Intro.

```python
x = 1
```

<!-- not run: needs a cluster -->
```bash
make everything
```

```text
x -> y
```

```bash
echo "bash runs"
false | true
```

```python
print("not reached")
```
"""


def test_blocks_are_read_with_their_language_line_and_exemption():
    found = blocks("sample.md", SAMPLE)
    assert [(b.language, b.line, b.exempt) for b in found] == [
        ("python", 4, None),
        ("bash", 9, "needs a cluster"),
        ("text", 13, None),
        ("bash", 17, None),
        ("python", 22, None),
    ]
    assert found[3].code == 'echo "bash runs"\nfalse | true\n'


def _run_plan(tmp_path, plan: list[Block]) -> subprocess.CompletedProcess:
    (tmp_path / "plan.json").write_text(json.dumps([asdict(b) for b in plan]))
    return subprocess.run(
        [sys.executable, __file__, str(tmp_path / "plan.json")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_runner_shares_one_namespace_and_stops_at_the_first_failing_block(tmp_path):
    python, _, _, bash, last = blocks("sample.md", SAMPLE)
    check = Block("sample.md", 30, "python", "assert x == 1 and __name__ == '__main__'\n", None)
    done = _run_plan(tmp_path, [python, check, bash, last])
    # the python blocks share a namespace; bash runs with pipefail, so a failure inside a pipe fails the block
    assert done.returncode == 1, done.stdout + done.stderr
    assert "bash runs" in done.stdout
    assert "FAILED (exit 1): the bash block at sample.md:17" in done.stdout
    assert "not reached" not in done.stdout

    failing = Block("sample.md", 40, "python", "y = 2\nassert y == 3, 'y is not 3'\n", None)
    done = _run_plan(tmp_path, [failing, last])
    assert done.returncode == 1
    assert "FAILED: the python block at sample.md:40" in done.stdout
    assert 'sample.md", line 41' in done.stderr and "AssertionError: y is not 3" in done.stderr
    assert "not reached" not in done.stdout


# -- the runner (this file as a script, in the temporary directory) -------------------------------------------
def _run_blocks(plan: Path) -> int:
    """Run the blocks of ``plan`` in order; print which one failed and why, and return the exit status."""
    main = types.ModuleType("__main__")  # what a user's script or notebook runs in: a plug-in registers there
    sys.modules["__main__"] = main
    to_run = [Block(**b) for b in json.loads(plan.read_text())]
    for block in to_run:
        print(f"--- {block.document}:{block.line} ({block.language})", flush=True)
        began = time.perf_counter()
        if block.language == "python":
            # Padded so that a traceback gives the line in the document.
            code = compile("\n" * (block.line - 1) + block.code, str(REPO_ROOT / block.document), "exec")
            try:
                exec(code, main.__dict__)
            except BaseException:
                traceback.print_exc()
                print(f"FAILED: the python block at {block.document}:{block.line}\n{block.code}", flush=True)
                return 1
        else:
            sys.stdout.flush()
            status = subprocess.run(["bash", "-euo", "pipefail", "-c", block.code]).returncode
            if status:
                print(
                    f"FAILED (exit {status}): the bash block at {block.document}:{block.line}\n{block.code}"
                )
                return 1
        print(f"--- {block.document}:{block.line} took {time.perf_counter() - began:.1f} s", flush=True)
    print(f"ran {len(to_run)} block(s)")
    return 0


if __name__ == "__main__":
    sys.exit(_run_blocks(Path(sys.argv[1])))
