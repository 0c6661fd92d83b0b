"""`flowops report`: the PR comment, comparing a candidate run with the models in service.

`report.json` (flowops.report.comparison) holds the numbers and the decisions; the markdown
(GitHub-flavoured) is rendered from it, with PNGs referenced by relative path. No TensorFlow:
prediction grids come from the arrays each training run logs (`samples/samples.npz`).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from flowops import markdown as md
from flowops.errors import FlowopsError
from flowops.gitops.source import Source
from flowops.redact import redact
from flowops.report import comparison, figures
from flowops.spec.policy import RegistryPolicy
from flowops.spec.vocabulary import vocabulary

if TYPE_CHECKING:
    from flowops.registry.store import Registry

MARKER = "<!-- flowops-report: {key} -->"  # one sticky comment per experiment file
NOT_HYPERPARAMETERS = {"name", "description", "experiment_file"}


@dataclass
class Model:
    """A run to compare: the candidate, or the version holding an alias."""

    label: str
    run: Any  # the mlflow Run
    version: str | None = None


def build(
    client: Any,
    run_id: str,
    policy: RegistryPolicy,
    out: Path,
    uri: str,
    experiment_file: str | None = None,
    source: Source | None = None,
) -> str:
    """Write out/report.md and its PNGs; returns the markdown.

    Every read that decides what the report says (the run, the holders) fails the command when
    it fails: a holder that could not be read is never reported as "no model yet". The experiment
    file and the code tree come from `source` (the working tree, or the PR's head in git).
    """
    source = source or Source.working_tree()
    from flowops.registry.store import Registry

    registry = Registry(client, policy.model_name)
    client = registry.client
    run = client.absent_or_raise("get_run", run_id)
    if run is None:
        raise FlowopsError(f"run {run_id}: not found in {redact(uri)}")
    _check_experiment_file(run, experiment_file, source)
    out.mkdir(parents=True, exist_ok=True)
    candidate = Model("candidate", run)
    holders = _holders(registry, policy)
    sections = [_header(run, uri)]
    if run.info.status != "FINISHED":
        reason = run.data.tags.get("flowops.failure", "no reason recorded")
        state = "failed" if run.info.status == "FAILED" else f"is {run.info.status.lower()}"
        sections.append(
            f"> [!WARNING]\n> The training run {state}: {md.text(reason)}\n>\n"
            "> Nothing to compare; fix it and push again."
        )
        _write_json(out, comparison.build(client, run, {}, policy, None))
        return _write(out, run, sections)
    merged_tree = source.code_tree() or run.data.tags.get("flowops.code_tree")
    pairs = {a: (h.version, h.run) if h else None for a, h in holders.items()}
    data = comparison.build(client, run, pairs, policy, merged_tree)
    _write_json(out, data)
    sections.append(_claims(run))
    sections.append(_metrics_table(data, holders, policy))
    sections.append(_per_class_table(data, holders, policy))
    production = holders.get("production") or next((h for h in holders.values() if h), None)
    sections.append(_params_diff(run, production))
    holds = registry.holds() if any(holders.values()) else {}
    sections.append(_preview(run, holders, data, policy, holds))
    sections.append(figures.section(client, candidate, production, out, policy))
    return _write(out, run, sections)


def _write_json(out: Path, data: dict) -> None:
    (out / "report.json").write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def _check_experiment_file(run, experiment_file: str | None, source: Source) -> None:
    if not experiment_file:
        return
    from flowops.errors import ProblemsError

    try:
        spec = source.experiment(experiment_file)
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None
    if run.data.tags.get("flowops.spec_sha256") != spec.sha256():
        raise FlowopsError(
            f"run {run.info.run_id} was not trained from {experiment_file} as {source.where()} has it "
            f"(spec sha256 differs): pass that experiment's run"
        )


def _holders(registry: Registry, policy: RegistryPolicy) -> dict[str, Model | None]:
    if not registry.model_exists():
        return dict.fromkeys(policy.targets)
    out: dict[str, Model | None] = {}
    for alias in policy.targets:
        mv = registry.holder(alias)
        run = None if mv is None else registry.client.get_run(mv.run_id)
        out[alias] = None if mv is None else Model(f"{alias} v{mv.version}", run, str(mv.version))
    return out


def _header(run, uri: str) -> str:
    from flowops.tracking import report_link

    tags = run.data.tags
    start = datetime.fromtimestamp(run.info.start_time / 1000, UTC)
    duration = f"{(run.info.end_time - run.info.start_time) / 1000:.0f} s" if run.info.end_time else "still running"
    pr = f"PR #{tags['flowops.pr_number']}" if tags.get("flowops.pr_number") else "no PR"
    lines = [
        f"## flowops: {md.text(run.info.run_name)}",
        "",
        "| | |\n|---|---|",
        f"| experiment file | {md.text(tags.get('flowops.experiment_file', '?'))} |",
        f"| {md.text(pr)} | commit {md.text(tags.get('flowops.git_commit', '?')[:12])} on branch "
        f"{md.text(tags.get('flowops.git_branch', '?'))} (the trainer's claim) |",
        f"| run | {md.text(run.info.run_id)} **{md.text(run.info.status)}**, started {start:%Y-%m-%d %H:%M} UTC "
        f"(the trainer's claim), {duration} |",
        f"| hardware | {md.text(tags.get('flowops.hardware', '?'))} (the trainer's claim) |",
        f"| open | {md.code(report_link(uri, run), in_table=True)} |",
    ]
    return "\n".join(lines)


def _claims(run) -> str:
    """Which numbers are the trainer's word: everything the candidate's run measured."""
    tags = run.data.tags
    commit = tags.get("flowops.git_commit", "?")[:12]
    if tags.get("flowops.imported"):
        who = f"the PR's code at commit {md.code(commit)}"
    else:
        who = f"a run logged outside the PR pipeline (it says commit {md.code(commit)})"
    return (
        f"_The numbers below were computed by {who}: the candidate's metrics and its scores of the alias "
        "holders on its data are that code's claims, as good as the code reviewers read. The commit, the "
        "code and the model's code are checked against git._"
    )


def _fmt(v: float | None) -> str:
    return "–" if v is None else f"{v:.4f}"


def delta_cell(value: float | None, reference: float | None, direction: str) -> str:
    """'+0.0123 (+4.1%) ▲' with the arrow meaning better (▲) or worse (▼) for this metric."""
    if value is None or reference is None:
        return "–"
    diff = value - reference
    rel = f" ({diff / abs(reference) * 100:+.1f}%)" if reference != 0 else ""
    better = diff > 0 if direction == "max" else diff < 0
    marker = "=" if diff == 0 else ("▲ better" if better else "▼ worse")
    return f"{diff:+.4f}{rel} {marker}"


def _metrics_table(data: dict, holders: dict[str, Model | None], policy: RegistryPolicy) -> str:
    m = data["candidate"]["metrics"]
    live = [(alias, h) for alias, h in holders.items() if h is not None]
    if not live:
        return (
            "### Metrics\n\nNo model holds any alias yet: this would be the first. "
            "Absolute checks only (see the preview)."
        )
    head = "| metric | candidate | " + " | ".join(f"{h.label} | Δ vs {alias}" for alias, h in live) + " |"
    rule = "|---|---:|" + "---:|---|" * len(live)
    rows = []
    for name in [n for n in comparison.compared(m, policy) if not vocabulary().is_per_class(n)]:
        direction = policy.direction(name) if name in policy.directions() else "max"
        cells = []
        for alias, _ in live:
            cell = data["aliases"][alias]["metrics"].get(name, {})
            shown = delta_cell(cell.get("candidate"), cell.get("holder"), direction)
            cells.append(f"{_fmt(cell.get('holder'))} | {shown if cell.get('same_eval_set') else '– (other data)'}")
        bold = "**" if name == policy.primary_metric else ""
        rows.append(f"| {bold}{md.text(name)}{bold} | {_fmt(m[name])} | " + " | ".join(cells) + " |")
    for name in [n for n in vocabulary().training if m.get(n) is not None]:  # training set, last epoch: no verdict
        cells = [f"{_fmt(h.run.data.metrics.get(name))} | " for _, h in live]
        rows.append(f"| {name} (training) | {_fmt(m[name])} | " + " | ".join(cells) + " |")
    lines = [_comparability(data, alias, h) for alias, h in live]
    return "### Metrics\n\n" + "\n".join([head, rule, *rows]) + "\n\n" + "\n".join(lines)


def _comparability(data: dict, alias: str, holder: Model) -> str:
    """One line per alias: same evaluation data or not, and the interval of the primary difference."""
    row = data["aliases"][alias]
    images = data["candidate"].get("eval_images")
    if not row["same_eval_set"] and data["candidate"]["eval_set"] is None and row["holder"]["eval_set"] is None:
        return (
            f"- **Not comparable with {holder.label}**: neither run records its evaluation data (tag "
            "`flowops.eval_set`, e.g. a hash of the validation rows). No comparison check can pass."
        )
    if not row["same_eval_set"]:
        return (
            f"- **Not comparable with {holder.label}**: different evaluation data (eval set "
            f"{md.text(str(data['candidate']['eval_set'])[:12])} vs {md.text(str(row['holder']['eval_set'])[:12])}). "
            "No comparison check can pass."
        )
    empty: dict[str, Any] = {}
    name, cell = next(((n, c) for n, c in row["metrics"].items() if c.get("ci_low") is not None), ("", empty))
    if not name:
        return f"- Same evaluation data as {holder.label}; no per-example evaluation to give an interval."
    span = f"{cell['confidence']:.0%} interval [{cell['ci_low']:+.4f}, {cell['ci_high']:+.4f}]"
    verdict = f" — **not distinguishable from {holder.label}**" if cell["ci_low"] <= 0 <= cell["ci_high"] else ""
    known = vocabulary()
    over = (
        f"{images} {known.primary_examples}"
        if name == known.primary
        else f"{cell.get('examples', '?')} validation examples"
    )
    shown = md.text(name)
    delta = f"{cell['delta']:+.4f}"
    return f"- {shown} vs {holder.label}: {delta}, {span} over the same {over} (paired bootstrap){verdict}."


def _per_class_table(data: dict, holders: dict[str, Model | None], policy: RegistryPolicy) -> str:
    known = vocabulary()
    cand = {k[len(known.per_class) :]: v for k, v in data["candidate"]["metrics"].items() if known.is_per_class(k)}
    if not cand:
        return ""
    alias = "production" if holders.get("production") else next((a for a, h in holders.items() if h), None)
    prod = holders.get(alias) if alias else None
    ref = figures.per_class(prod.run) if prod else {}
    target = policy.targets.get(alias) if alias else None
    tolerance = target.per_class.tolerance if target and target.per_class else None
    rows = []
    for c, v in sorted(cand.items()):
        rows.append(f"| {md.text(c)} | {_fmt(v)} | {_fmt(ref.get(c))} | {_class_change(c, v, ref.get(c), tolerance)} |")
    head = f"| class | candidate | {prod.label if prod else 'production'} | change |\n|---|---:|---:|---|"
    body = "\n".join([head, *rows])
    return f"<details><summary>Per-class validation {known.per_class_name}</summary>\n\n{body}\n\n</details>"


def _class_change(name: str, value: float | None, reference: float | None, tolerance: float | None) -> str:
    """'dropped 0.032, within the 0.10 tolerance', in the same terms as the per-class check."""
    if value is None or reference is None:
        return "–"
    diff = value - reference
    if diff >= 0:
        return "=" if diff == 0 else f"+{diff:.4f} ▲ better"
    unguarded = name in vocabulary().unguarded  # (segmentation: background)
    if unguarded or tolerance is None:
        return f"dropped {-diff:.4f}" + (f" ({name}: not checked)" if unguarded else "")
    within = "within" if -diff <= tolerance else "over"
    return f"dropped {-diff:.4f}, {within} the {tolerance:g} tolerance" + (" ▼" if within == "over" else "")


def params_diff(params: dict[str, str], reference: dict[str, str]) -> dict[str, tuple[str | None, str | None]]:
    """Only the hyperparameters that differ: key -> (reference value, candidate value)."""
    keys = (set(params) | set(reference)) - NOT_HYPERPARAMETERS
    return {k: (reference.get(k), params.get(k)) for k in sorted(keys) if reference.get(k) != params.get(k)}


def _params_diff(run, production: Model | None) -> str:
    if production is None:
        return ""
    diff = params_diff(run.data.params, production.run.data.params)
    if not diff:
        return f"### Hyperparameters\n\nSame hyperparameters as {production.label}."
    rows = [f"| {md.code(k, True)} | {md.code(a, True)} | {md.code(b, True)} |" for k, (a, b) in diff.items()]
    return (
        f"### Hyperparameters (vs {production.label})\n\n| parameter | {production.label} | candidate "
        f"|\n|---|---|---|\n" + "\n".join(rows)
    )


def _preview(
    run, holders: dict[str, Model | None], data: dict, policy: RegistryPolicy, holds: dict[str, dict] | None = None
) -> str:
    lines, details = [], []
    for alias, row in data["aliases"].items():
        decision = row["decision"]
        was = f"v{row['holder']['version']}" if row["holder"] else "unset"
        holder = holders.get(alias)
        hold = (holds or {}).get(alias)
        failed = [c["detail"] for c in decision["checks"] if not c["passed"]]
        if hold is not None:
            lines.append(
                f"- **`{alias}`** is held at v{md.text(hold.get('version'))} by a rollback on "
                f"{md.text(hold.get('time', '?'))} ({md.text(hold.get('reason', 'no reason given'))}): merging "
                "will not move it until "
                f"`flowops release --alias {alias}`"
                + (" (this run would pass its checks)." if decision["promote"] else ".")
            )
        elif holder is not None and holder.run.info.run_id == run.info.run_id:
            lines.append(f"- **`{alias}`** already holds this run (v{holder.version}): merging changes nothing there.")
        elif decision["promote"]:
            lines.append(f"- Merging this will move **`{alias}`** from {was} to the new version.")
        else:
            lines.append(f"- **`{alias}`** stays at {was}: " + "; ".join(md.text(f) for f in failed))
        details.append(f"{alias}: {'promote' if decision['promote'] else 'keep ' + was}")
        details += [f"  {'✓' if c['passed'] else '✗'} {c['detail']}" for c in decision["checks"]]
    mode = "" if policy.mode == "enabled" else f" (policy mode: {policy.mode})"
    checks = "\n".join(details)
    return (
        f"### What merging will do{mode}\n\n"
        + "\n".join(lines)
        + f"\n\n<details><summary>All checks</summary>\n\n{md.fenced(checks)}\n\n</details>"
    )


def _write(out: Path, run, sections: list[str]) -> str:
    text = (
        marker(run.data.tags.get("flowops.experiment_file") or run.info.run_name)
        + "\n"
        + "\n\n".join(s for s in sections if s)
        + "\n"
    )
    (out / "report.md").write_text(text)
    (out / "comment.md").write_text(for_comment(text))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as fh:
            fh.write(text + "\n")
    return text


def marker(key: str) -> str:
    """The comment's first line, naming its experiment file: characters that could end the HTML
    comment or the line (`>`, `!`, a line break) are percent-encoded."""
    from urllib.parse import quote

    return MARKER.format(key=quote(key, safe="/._-~+=,@"))


def for_comment(markdown: str) -> str:
    """The report as a PR comment: images are not uploaded anywhere, so each becomes a pointer to its file.

    The PNGs stay in the report folder (the workflow artifact) and on the tracking server; no
    third-party image host sees validation images.
    """
    import re

    return re.sub(
        r"!\[([^\]]*)\]\(((?:report/)?[\w.-]+\.(?:png|jpe?g|svg))\)",
        r"*\1: `\2` in the workflow run's report artifact and the run's artifacts*",
        markdown,
    )


def sections(markdown: str, *titles: str) -> str:
    """The named `### ` sections of a report (the demo prints them in the terminal)."""
    parts = markdown.split("\n### ")
    return "\n\n".join("### " + p.strip() for p in parts[1:] if p.split("\n", 1)[0].split(" (")[0] in titles)
