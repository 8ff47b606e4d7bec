"""``cellsynth demo``: the main job on the built-in synthetic city (:func:`cellsynth.demo.run_demo`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cellsynth.cli._common import Progress, app, bold, console, say
from cellsynth.cli.errors import seed_option

__all__ = []


@app.command("demo")
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Where the demo writes its outputs.")] = Path(
        "demo-output"
    ),
    seed: Annotated[int, typer.Option(help="Seed of the whole pipeline.", callback=seed_option)] = 0,
    user_model: Annotated[
        str,
        typer.Option(
            "--user-model",
            help="User generator trained on the city's users (mstdiff or markov); 'none' skips the user part.",
        ),
    ] = "mstdiff",
    progress: Progress = True,
) -> None:
    """Run the main job on the built-in synthetic city: station traffic for held-out sites (STOUTER), then
    users' trajectories and traffic (MSTDiff); each scored against held-out real data. Writes OUT/report.html
    with both evaluations, and prints where every output is."""
    from cellsynth.demo import run_demo

    result = run_demo(
        out,
        seed=seed,
        progress=progress,
        echo=say,
        user_model=None if user_model.strip().lower() == "none" else user_model,
    )
    say(result.summary())
    report = result.outputs["report (all evaluations)"]
    console.print(f"report with every evaluation: {bold(report)}", soft_wrap=True)  # one line, whole path
