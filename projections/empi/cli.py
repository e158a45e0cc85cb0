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


BootstrapOpt = Annotated[
    str | None,
    typer.Option("--bootstrap", help="Kafka bootstrap servers (default: settings, then infra up)."),
]


@app.command("run")
def run_index(
    bootstrap: BootstrapOpt = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Records per batch at most.")] = 2_000,
    within: Annotated[float, typer.Option(help="Seconds to wait for a batch to fill.")] = 0.05,
    strict: Annotated[
        bool, typer.Option("--strict/--lenient", help="Strict: canonical bytes and every rule.")
    ] = False,
) -> None:
    """Run the index on the patient and person topics until stopped; relay its decisions."""
    from consortium.endpoints import database_url, kafka_bootstrap
    from consortium.settings import get_settings
    from processors.empi import RunnerConfig, run_until_signalled

    config = RunnerConfig(
        bootstrap_servers=kafka_bootstrap(bootstrap),
        database_url=database_url(),
        consortium_id=get_settings().consortium_id,
        batch_size=batch_size,
        batch_within_s=within,
        strict_decoding=strict,
    )
    run_until_signalled(config)


@app.command("rebuild")
def rebuild_index(
    bootstrap: BootstrapOpt = None,
    switch: Annotated[
        bool, typer.Option("--switch/--no-switch", help="Make it the live index once caught up.")
    ] = True,
) -> None:
    """Replay the live index's batches from offset 0 into a new schema; switch once caught up."""
    from consortium.endpoints import database_url, kafka_bootstrap
    from consortium.settings import get_settings
    from events.catalog import Catalog
    from events.replay import log_codec
    from projections.empi.config import index_config
    from projections.empi.rebuild import rebuild
    from projections.frame.deadletters import KafkaDeadLetters

    consortium_id = get_settings().consortium_id
    servers = kafka_bootstrap(bootstrap)
    columns = (TextColumn("rebuilding the index"), BarColumn(), MofNCompleteColumn())
    with (
        Progress(*columns, TimeElapsedColumn(), console=Console(stderr=True)) as bar,
        KafkaDeadLetters(servers, consortium_id, "empi") as dead_letters,
    ):
        task = bar.add_task("batches", total=None)
        result = rebuild(
            index_config(),
            log_codec(Catalog.load()),
            bootstrap_servers=servers,
            database_url=database_url(),
            consortium_id=consortium_id,
            dead_letters=dead_letters,
            switch=switch,
            progress=lambda done, known: bar.update(task, completed=done, total=known),
        )
    o = result.outcome
    where = f"live (the old index is {result.retired})" if result.switched else "built"
    typer.echo(
        f"{result.schema} {where}: {o.batches:,} batches, {o.indexed:,} events indexed,"
        f" {o.decisions:,} decisions, {o.dead_lettered:,} dead letters"
    )
    if result.switched:
        typer.echo(
            f"{result.republished:,} decisions published for the person topic's readers"
            " (a change of the index's logic; docs/empi.md)"
        )
    if result.stranded:
        typer.echo(
            f"{len(result.stranded):,} persons merged on the person topic are kept apart now and"
            f" cannot be un-merged there: {', '.join(result.stranded)}",
            err=True,
        )


@app.command("digest")
def digest_index(
    schema: Annotated[str, typer.Option(help="A generation's schema (default: the live one).")] = (
        "empi"
    ),
) -> None:
    """Print a SHA-256 digest of the index's content (bookkeeping excluded)."""
    import psycopg

    from consortium.endpoints import database_url
    from projections.empi.generations import digest

    with psycopg.connect(database_url()) as conn:
        typer.echo(f"{digest(conn, schema)}  {schema}")
