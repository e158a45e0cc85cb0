"""`consortium empi`: evaluate the patient index on labelled identities, train its weights."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

app = typer.Typer(no_args_is_help=True)

IdentitiesOpt = Annotated[
    int, typer.Option("--identities", min=100, help="Noisy registrations to generate.")
]


@app.command("evaluate")
def evaluate(
    identities: IdentitiesOpt = 50_000,
    seed: Annotated[
        int, typer.Option(help="Labelled county to score on (weights were trained on seed 1).")
    ] = 2,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Precision and recall of the index's pairwise link decisions on a labelled county."""
    from projections.empi.evaluation import evaluation_config, labelled_identities, run_index
    from projections.empi.evaluation import score as score_index

    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    # The bar goes to stderr so that --json leaves stdout one parseable object.
    with Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as progress:
        making = progress.add_task("generating identities", total=None)
        labelled = labelled_identities(identities, seed)
        progress.update(making, total=1, completed=1)
        task = progress.add_task("indexing", total=len(labelled.registrations))
        state = run_index(labelled, evaluation_config(), lambda n: progress.advance(task, n))
    result = score_index(labelled, state, seed)
    if as_json:
        first = {"precision": result.precision, "recall": result.recall}
        typer.echo(json.dumps({**first, **asdict(result)}))
        return
    typer.echo(
        f"identities {result.identities:,} (persons {result.persons:,}, seed {seed})\n"
        f"precision  {result.precision:.5f}  ({result.correct_pairs:,} of"
        f" {result.linked_pairs:,} linked pairs are one resident)\n"
        f"recall     {result.recall:.5f}  ({result.correct_pairs:,} of"
        f" {result.true_pairs:,} true pairs linked)\n"
        f"reviews    {result.reviews:,} open (counted as not linked)"
    )


@app.command("train")
def train(
    identities: IdentitiesOpt = 50_000,
    seed: Annotated[
        int, typer.Option(help="Labelled county to estimate on (not the test one).")
    ] = 1,
) -> None:
    """Estimate the Fellegi–Sunter weights (log2 m/u per comparison cell) on a labelled county."""
    from projections.empi.evaluation import estimate_weights, evaluation_config, labelled_identities

    weights = estimate_weights(labelled_identities(identities, seed), evaluation_config().hasher)
    typer.echo(json.dumps(weights, indent=2))
