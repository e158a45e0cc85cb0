"""`consortium schemas`: lock released fingerprints, check the catalog, list what it holds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

from events.catalog import SCHEMAS_DIR, Catalog, CatalogError, SchemaVersion
from events.compatibility import full_transitive_problems

LOCK_FILE = "lock.json"

app = typer.Typer(no_args_is_help=True, help="The schema catalog: ids, lock and compatibility.")
RootOption = Annotated[Path, typer.Option("--root", help="The schemas folder.")]


def read_lock(root: Path) -> dict[int, dict[str, Any]]:
    """The released schemas by id; an absent lock means nothing is released yet."""
    path = root / LOCK_FILE
    if not path.exists():
        return {}
    entries = json.loads(path.read_text(encoding="utf-8"))["released"]
    return {int(e["id"]): e for e in entries}


def _entry(version: SchemaVersion) -> dict[str, Any]:
    return {
        "id": version.id,
        "subject": version.subject,
        "version": version.version,
        "fingerprint": version.fingerprint,
        "content_sha256": version.content_sha256,
    }


def _lock_problems(catalog: Catalog, locked: dict[int, dict[str, Any]]) -> list[str]:
    """Released schemas must stay as they were, under the same id."""
    problems = []
    for schema_id, entry in sorted(locked.items()):
        name = f"id {schema_id} ({entry['subject']} v{entry['version']})"
        if schema_id in catalog.retired_ids:
            problems.append(f"{name}: released, so it cannot be retired (topics keep it forever)")
            continue
        try:
            current = catalog.schema_by_id(schema_id)
        except KeyError:
            problems.append(f"{name}: released but missing from the catalog")
            continue
        if (current.subject, current.version) != (entry["subject"], entry["version"]):
            problems.append(f"{name}: id reused for {current.subject} v{current.version}")
        elif current.fingerprint != entry["fingerprint"]:
            problems.append(f"{name}: released schema edited (canonical form changed)")
        elif current.content_sha256 != entry["content_sha256"]:
            problems.append(f"{name}: released schema edited (doc, default, alias or tag)")
    return problems


def check_catalog(catalog: Catalog, *, require_locked: bool = False) -> list[str]:
    """Every rule a change to schemas/ must keep; an empty list means it passes."""
    locked = read_lock(catalog.root)
    problems = _lock_problems(catalog, locked)
    highest = max([*locked, *catalog.retired_ids], default=0)
    for version in catalog.all():
        if version.id in locked:
            continue
        if require_locked:
            problems.append(f"id {version.id} ({version.subject} v{version.version}): not locked")
        if version.id <= highest:
            problems.append(
                f"id {version.id} ({version.subject} v{version.version}): new ids count up "
                f"from {highest + 1}; a lower id may have been used before"
            )
    for subject in catalog.subjects():
        versions = catalog.versions(subject)
        for i, new in enumerate(versions[1:], start=1):
            earlier = [(f"v{old.version}", old.schema) for old in versions[:i]]
            problems.extend(
                f"{subject} v{new.version}: {p}"
                for p in full_transitive_problems(new.schema, earlier)
            )
    return problems


def lock_catalog(catalog: Catalog) -> list[SchemaVersion]:
    """Add the schemas not yet locked to lock.json, never changing an entry; return them."""
    problems = check_catalog(catalog)
    if problems:
        raise CatalogError("refusing to lock:\n" + "\n".join(problems))
    locked = read_lock(catalog.root)
    added = [v for v in catalog.all() if v.id not in locked]
    entries = [*locked.values(), *(_entry(v) for v in added)]
    doc = {
        "about": "Fingerprints of released schemas (SHA-256 of the Parsing Canonical Form, and "
        "of the full resolved JSON). Entries are only ever added; see docs/schemas.md.",
        "released": sorted(entries, key=lambda e: int(e["id"])),
    }
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    (catalog.root / LOCK_FILE).write_text(text, encoding="utf-8")
    return added


def _load(root: Path) -> Catalog:
    try:
        return Catalog.load(root)
    except CatalogError as exc:
        typer.echo(f"catalog invalid: {exc}", err=True)
        raise typer.Exit(1) from None


@app.command()
def lock(root: RootOption = SCHEMAS_DIR) -> None:
    """Lock the fingerprints of schemas not yet locked (released from now on)."""
    try:
        added = lock_catalog(_load(root))
    except CatalogError as exc:
        typer.echo(str(exc), err=True)
        raise typer.Exit(1) from None
    for v in added:
        typer.echo(f"locked id {v.id}: {v.subject} v{v.version} {v.fingerprint}")
    typer.echo(f"{len(added)} schema(s) newly locked")


@app.command()
def check(
    root: RootOption = SCHEMAS_DIR,
    require_locked: Annotated[
        bool, typer.Option("--require-locked", help="Fail on schemas not yet locked (release).")
    ] = False,
) -> None:
    """Verify the lock, id assignment and FULL_TRANSITIVE compatibility of every subject."""
    catalog = _load(root)
    problems = check_catalog(catalog, require_locked=require_locked)
    for problem in problems:
        typer.echo(problem, err=True)
    if problems:
        raise typer.Exit(1)
    typer.echo(f"ok: {len(catalog.all())} schemas in {len(catalog.subjects())} subjects")


@app.command(name="list")
def list_(root: RootOption = SCHEMAS_DIR) -> None:
    """Print every subject's versions with their ids and fingerprints."""
    catalog = _load(root)
    locked = read_lock(root)
    for subject in catalog.subjects():
        for v in catalog.versions(subject):
            state = "locked" if v.id in locked else "new"
            typer.echo(f"{v.id:>5}  {subject}  v{v.version}  {v.fingerprint[:16]}  {state}")
