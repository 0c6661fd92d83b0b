"""CLI commands for the registry: promote, status, history, rollback, release, report, holders.
Thin: parse, call flowops.api, print, exit."""

from __future__ import annotations

from pathlib import Path

import click

from flowops.cli.base import policy_option, repo_option, tracking_option
from flowops.errors import FlowopsError


def _say(line: str) -> None:
    """A line of promote's log: it names runs, metrics and experiment files, so it is kept from being
    read as a workflow command (`::error::`)."""
    from flowops.markdown import log_line

    click.echo(log_line(line))


@click.command()
@click.option(
    "--git-range",
    required=True,
    help="BEFORE..AFTER of the push to main: the registry is reconciled to AFTER; its merges are reported.",
)
@repo_option()
@click.option("--dry-run", is_flag=True, help="Print the plan; change nothing.")
@click.option(
    "--create-model",
    is_flag=True,
    help="Create the registered model if it is missing (first set-up; automatic on the embedded store).",
)
@tracking_option
def promote(
    git_range: str,
    repo: Path,
    dry_run: bool,
    create_model: bool,
    tracking_uri: str | None,
) -> None:
    """Reconcile the registry to main: each alias gets the version main's merges decide.

    Every merge on main's first-parent history is decided in order with the policy committed
    at it (a revert or deletion gives an alias back to the earlier holder); only the difference
    from the registry is applied, so a cancelled job loses nothing and an old job re-run moves
    nothing backwards. A merged file ships the run whose own record matches it (parameters,
    tag, model, code). A rolled-back alias is held: promote leaves it and reports the drift.
    Exit status: 0 when every merged experiment was applied or kept out by the policy on
    purpose (a kept-out version is registered and tagged rejected); 1 when one was refused
    (invalid, not trained, no qualifying run, the registry failed or denied a call), with
    nothing moved for it; 2 for a bug in flowops. On a tracking server the registered model
    is created by the admin (flowops server-init); --create-model is for a first set-up.
    """
    from flowops import api

    outcome = api.promote(repo, git_range, dry_run, create_model, tracking_uri)
    for item in outcome.items:
        if item.status == "changed":
            version = (
                f"v{item.version}" + (" (new)" if item.created else "") if item.version else "not registered (dry run)"
            )
            _say(f"{item.path}: run {item.run.info.run_id} -> {version}")
            _say(f"    chosen: {item.message}")
        elif item.status in ("deleted", "superseded", "restored"):
            _say(f"{item.path}: {item.message}")
    for alias, rows in outcome.decisions.items():
        for path, td in rows:
            _say(f"  {alias} <- {path}: {'passes' if td.promote else 'fails'}")
            for check in td.checks:
                _say(f"    {'ok  ' if check.passed else 'FAIL'} {check.detail}")
    for line in outcome.moves:
        _say(line)
    if outcome.errors:
        raise FlowopsError("\n".join(outcome.errors))


@click.command()
@repo_option("The git repository whose main is the desired state.")
@click.option("--ref", default="HEAD", show_default=True, help="The commit of main to compare with (its tip).")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@tracking_option
@policy_option
def status(repo: Path, ref: str, as_json: bool, tracking_uri: str | None, policy_path: Path) -> None:
    """Show which version holds each alias, what main asks for, and any drift (a hold, a missed merge)."""
    import json

    from flowops import api

    rows = api.status(repo, ref, tracking_uri, policy_path)
    if as_json:
        click.echo(json.dumps(rows, indent=2, sort_keys=True))
        return
    for row in rows:
        if row["version"] is None:
            click.echo(f"{row['alias']}: unset")
        else:
            name, value = row["primary"]
            metric = f"{name} {value:.4f}" if value is not None else f"{name} missing"
            click.echo(
                f"{row['alias']}: v{row['version']}  {metric}  spec {row['spec_path']}  commit "
                f"{(row['commit'] or '?')[:12]}"
                f"  run {row['run_id']}" + (f"  PR #{row['pr']}" if row["pr"] else "")
            )
        if row.get("drift"):
            click.echo(f"    drift: {row['drift']}")


@click.command()
@click.option("--alias", help="Only this alias.")
@tracking_option
@policy_option
def history(alias: str | None, tracking_uri: str | None, policy_path: Path) -> None:
    """Print the audit trail of alias moves: when, who, from which version to which, and why."""
    from flowops import api
    from flowops.registry.store import describe_hold

    found = api.history(alias, tracking_uri, policy_path)
    if found.unreadable:
        click.echo(
            f"skipped {len(found.unreadable)} unreadable audit record(s): {', '.join(found.unreadable)}", err=True
        )
    if not found.records:
        click.echo("no alias has moved yet")
    for r in found.records:
        origin = f"PR #{r.pr} " if r.pr else ""
        origin += f"commit {r.commit[:12]}" if r.commit else ""
        click.echo(
            f"{r.time}  {r.alias:<11} {'v' + r.from_version if r.from_version else 'unset':>6} -> "
            f"v{r.to_version:<4} {r.kind:<8} by {r.who()}  {origin}".rstrip()
            + ("  (pending: the next promote or rollback settles it)" if r.state == "pending" else "")
        )
        click.echo(f"    {r.summary}")
    for held, hold in found.holds.items():
        click.echo(f"{held}: {describe_hold(held, hold)}")


@click.command()
@click.option("--alias", required=True, help="The alias to move back.")
@click.option("--to", "to_version", help="Version to move it to (default: its previous holder in the audit trail).")
@click.option("--reason", help="Why, for the audit trail.")
@tracking_option
@policy_option
def rollback(
    alias: str, to_version: str | None, reason: str | None, tracking_uri: str | None, policy_path: Path
) -> None:
    """Move an alias back to its previous holder (or a named version), recorded as a rollback."""
    from flowops import api

    record = api.rollback(alias, to_version, reason, tracking_uri, policy_path)
    if record.from_version == record.to_version:
        click.echo(
            f"{alias}: v{record.to_version} already holds it; now held there (rollback: {record.summary}): "
            "promote leaves it until main agrees or flowops release"
        )
        return
    click.echo(f"{alias}: v{record.from_version} -> v{record.to_version} (rollback: {record.summary})")


@click.command()
@click.option("--run", "run_id", required=True, help="The candidate run (from flowops train).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("report"),
    show_default=True,
    help="Folder for report.md and its PNGs.",
)
@click.option("--experiment", "experiment_file", help="Check that the run was trained from this experiment file.")
@click.option(
    "--ref",
    help=(
        "Read the experiment file, the policy and the code tree from this commit (the PR's approved head) "
        "instead of the working tree: for a job that has the base branch checked out."
    ),
)
@repo_option("The git repository --ref is read from.")
@tracking_option
@policy_option
def report(
    run_id: str,
    out: Path,
    experiment_file: str | None,
    ref: str | None,
    repo: Path,
    tracking_uri: str | None,
    policy_path: Path,
) -> None:
    """Write the PR report: the run against the models holding the policy's aliases."""
    from flowops import api

    written = api.report(run_id, out, experiment_file, ref, repo, tracking_uri, policy_path)
    click.echo(f"wrote {written}")


@click.command()
@click.option("--alias", required=True, help="The held alias.")
@tracking_option
@policy_option
def release(alias: str, tracking_uri: str | None, policy_path: Path) -> None:
    """Release a rollback's hold: the next promote moves the alias to what main asks for again."""
    from flowops import api

    api.release(alias, tracking_uri, policy_path)
    click.echo(f"{alias}: hold released; the next flowops promote reconciles it to main")


@click.group()
def holders() -> None:
    """The models holding the aliases, for a PR's training job to score on its own data."""


@holders.command("export")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), required=True, help="A new folder.")
@click.option("--fork", is_flag=True, help="The PR comes from a fork: export only if the policy shares with forks.")
@tracking_option
@policy_option
def holders_export(out: Path, fork: bool, tracking_uri: str | None, policy_path: Path) -> None:
    """Download each alias's model into OUT/<alias>/ with OUT/holders.json (trusted stage)."""
    from flowops import api

    exported = api.export_holders(out, fork, tracking_uri, policy_path)
    shown = ", ".join(f"{a} v{e['version']}" for a, e in exported.holders.items()) or "none"
    said = "" if exported.scored else " (flowops.yaml names no evaluate entry point to score holders with)"
    click.echo(f"wrote {out}: {shown}{said}")


@holders.command("plan")
@click.option("--experiments", "touched", required=True, help="JSON list: the experiments the PR changes.")
@click.option("--stale", required=True, help="JSON list: the experiments its code change makes stale.")
@click.option("--github-output", type=click.Path(path_type=Path, dir_okay=False), help="Append the plan here.")
@click.option(
    "--max-experiments",
    type=int,
    envvar="FLOWOPS_MAX_EXPERIMENTS",
    default=20,
    show_default=True,
    help="Train nothing when the plan has more (one GPU job each); FLOWOPS_MAX_EXPERIMENTS.",
)
@tracking_option
@policy_option
def holders_plan(
    touched: str,
    stale: str,
    github_output: Path | None,
    max_experiments: int,
    tracking_uri: str | None,
    policy_path: Path,
) -> None:
    """What a PR trains: its experiments, and when its code changed, the aliases' holders' too (trusted stage)."""
    import json

    from flowops import api
    from flowops.gitops.changes import github_output as output_lines

    plan = api.plan_holders(touched, stale, max_experiments, tracking_uri, policy_path)
    planned, added = plan.changes, plan.retrained
    for path in added:
        click.echo(f"{path}: holds an alias and the PR changes the code: retrained on it")
    click.echo(json.dumps({"experiments": planned.experiments, "holders_retrained": added}))
    if github_output:
        with github_output.open("a") as fh:
            fh.write(output_lines(planned))


COMMANDS = [promote, status, history, rollback, release, report, holders]
