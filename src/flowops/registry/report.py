"""`flowops report`: the PR comment, comparing a candidate run with the models in service.

Markdown (GitHub-flavoured) plus PNGs referenced by relative path, so
`cml comment update --publish report/report.md` uploads them. No TensorFlow: prediction
grids come from the arrays each training run logs (`samples/samples.npz`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from flowops import plots
from flowops.errors import FlowopsError
from flowops.redact import redact
from flowops.registry.decide import Candidate, Holder, decide, explain
from flowops.spec.policy import PER_CLASS_PREFIX, RegistryPolicy

if TYPE_CHECKING:
    from flowops.registry.store import Registry

MARKER = "<!-- flowops-report: {key} -->"  # one sticky comment per experiment file
NOT_HYPERPARAMETERS = {"name", "description", "experiment_file"}
HISTORY_KEYS = ("val_iou", "val_loss", "iou", "loss")


@dataclass
class Model:
    """A run to compare: the candidate, or the version holding an alias."""

    label: str
    run: Any  # the mlflow Run
    version: str | None = None


def build(
    client: Any, run_id: str, policy: RegistryPolicy, out: Path, uri: str, experiment_file: str | None = None
) -> str:
    """Write out/report.md and its PNGs; returns the markdown.

    Every read that decides what the report says (the run, the holders) fails the command when
    it fails: a holder that could not be read is never reported as "no model yet".
    """
    from flowops.registry.store import Registry

    registry = Registry(client, policy.model_name)
    client = registry.client
    run = client.absent_or_raise("get_run", run_id)
    if run is None:
        raise FlowopsError(f"run {run_id}: not found in {redact(uri)}")
    _check_experiment_file(run, experiment_file)
    out.mkdir(parents=True, exist_ok=True)
    candidate = Model("candidate", run)
    holders = _holders(registry, policy)
    sections = [_header(run, uri)]
    if run.info.status != "FINISHED":
        reason = run.data.tags.get("flowops.failure", "no reason recorded")
        state = "failed" if run.info.status == "FAILED" else f"is {run.info.status.lower()}"
        sections.append(
            f"> [!WARNING]\n> The training run {state}: {reason}\n>\n> Nothing to compare; fix it and push again."
        )
        return _write(out, run, sections)
    sections.append(_metrics_table(candidate, holders, policy))
    sections.append(_per_class_table(candidate, holders))
    production = holders.get("production") or next((h for h in holders.values() if h), None)
    sections.append(_params_diff(run, production))
    holds = registry.holds() if any(holders.values()) else {}
    sections.append(_preview(run, holders, policy, holds))
    sections.append(_figures(client, candidate, production, out))
    return _write(out, run, sections)


def _check_experiment_file(run, experiment_file: str | None) -> None:
    if not experiment_file:
        return
    from flowops.errors import ProblemsError
    from flowops.spec.load import load_experiment

    try:
        spec = load_experiment(experiment_file)
    except ProblemsError as exc:
        raise FlowopsError(str(exc.problems[0])) from None
    if run.data.tags.get("flowops.spec_sha256") != spec.sha256():
        raise FlowopsError(
            f"run {run.info.run_id} was not trained from {experiment_file} (spec sha256 differs): pass that "
            f"experiment's run"
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
        f"## flowops: `{run.info.run_name}`",
        "",
        "| | |\n|---|---|",
        f"| experiment file | `{tags.get('flowops.experiment_file', '?')}` |",
        f"| {pr} | commit `{tags.get('flowops.git_commit', '?')[:12]}` on `{tags.get('flowops.git_branch', '?')}` |",
        f"| run | `{run.info.run_id}` **{run.info.status}**, started {start:%Y-%m-%d %H:%M} UTC, {duration} |",
        f"| hardware | {tags.get('flowops.hardware', '?')} |",
        f"| open | `{report_link(uri, run)}` |",
    ]
    return "\n".join(lines)


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


def _metrics_table(candidate: Model, holders: dict[str, Model | None], policy: RegistryPolicy) -> str:
    m = candidate.run.data.metrics
    names = [n for n in ("val_iou", "val_miou", "val_f1", "val_loss", "iou", "f1", "loss") if n in m]
    live = [(alias, h) for alias, h in holders.items() if h is not None]
    if not live:
        return (
            "### Metrics\n\nNo model holds any alias yet: this would be the first. "
            "Absolute checks only (see the preview)."
        )
    head = "| metric | candidate | " + " | ".join(f"{h.label} | Δ vs {alias}" for alias, h in live) + " |"
    rule = "|---|---:|" + "---:|---|" * len(live)
    rows = []
    for name in names:
        direction = policy.direction(name) if name in policy.directions() else "max"
        cells = [
            f"{_fmt(h.run.data.metrics.get(name))} | {delta_cell(m[name], h.run.data.metrics.get(name), direction)}"
            for _, h in live
        ]
        bold = "**" if name == policy.primary_metric else ""
        rows.append(f"| {bold}{name}{bold} | {_fmt(m[name])} | " + " | ".join(cells) + " |")
    return "### Metrics\n\n" + "\n".join([head, rule, *rows])


def _per_class(run) -> dict[str, float]:
    return {k[len(PER_CLASS_PREFIX) :]: v for k, v in run.data.metrics.items() if k.startswith(PER_CLASS_PREFIX)}


def _per_class_table(candidate: Model, holders: dict[str, Model | None]) -> str:
    cand = _per_class(candidate.run)
    if not cand:
        return ""
    prod = holders.get("production")
    ref = _per_class(prod.run) if prod else {}
    rows = [
        f"| {c} | {_fmt(v)} | {_fmt(ref.get(c))} | {delta_cell(v, ref.get(c), 'max')} |"
        for c, v in sorted(cand.items())
    ]
    head = f"| class | candidate | {prod.label if prod else 'production'} | Δ |\n|---|---:|---:|---|"
    body = "\n".join([head, *rows])
    return f"<details><summary>Per-class validation IoU</summary>\n\n{body}\n\n</details>"


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
    rows = [f"| `{k}` | `{a}` | `{b}` |" for k, (a, b) in diff.items()]
    return (
        f"### Hyperparameters (vs {production.label})\n\n| parameter | {production.label} | candidate "
        f"|\n|---|---|---|\n" + "\n".join(rows)
    )


def _preview(
    run, holders: dict[str, Model | None], policy: RegistryPolicy, holds: dict[str, dict] | None = None
) -> str:
    from flowops.gitops.git import code_tree

    tags = run.data.tags
    candidate = Candidate(
        "this run", dict(run.data.metrics), tags.get("flowops.code_tree"), code_tree() or tags.get("flowops.code_tree")
    )
    held = {a: Holder(str(h.version), dict(h.run.data.metrics)) if h else None for a, h in holders.items()}
    decision = decide(candidate, held, policy)
    lines = []
    for alias, td in decision.targets.items():
        holder = holders.get(alias)
        hold = (holds or {}).get(alias)
        if hold is not None:
            lines.append(
                f"- **`{alias}`** is held at v{hold.get('version')} by a rollback on {hold.get('time', '?')} "
                f"({hold.get('reason', 'no reason given')}): merging will not move it until "
                f"`flowops release --alias {alias}`" + (" (this run would pass its checks)." if td.promote else ".")
            )
        elif holder is not None and holder.run.info.run_id == run.info.run_id:
            lines.append(f"- **`{alias}`** already holds this run (v{holder.version}): merging changes nothing there.")
        elif td.promote:
            lines.append(
                f"- Merging this will move **`{alias}`** from {'v' + td.holder if td.holder else 'unset'} to "
                f"the new version."
            )
        else:
            lines.append(
                f"- **`{alias}`** stays at {'v' + td.holder if td.holder else 'unset'}: "
                + "; ".join(c.detail for c in td.checks if not c.passed)
            )
    details = "\n".join(explain(decision))
    mode = "" if policy.mode == "enabled" else f" (policy mode: {policy.mode})"
    return (
        f"### What merging will do{mode}\n\n"
        + "\n".join(lines)
        + f"\n\n<details><summary>All checks</summary>\n\n```\n{details}\n```\n\n</details>"
    )


def _figures(client, candidate: Model, production: Model | None, out: Path) -> str:
    models = [candidate] + ([production] if production else [])
    histories = {
        m.label: {k: [p.value for p in client.get_metric_history(m.run.info.run_id, k)] for k in HISTORY_KEYS}
        for m in models
    }
    plots.learning_curves(histories, out / "learning_curves.png", metrics=("iou", "loss"))
    plots.per_class_bars({m.label: _per_class(m.run) for m in models}, out / "per_class_iou.png")
    parts = ["### Plots", "", "![learning curves](learning_curves.png)", "", "![per-class IoU](per_class_iou.png)"]
    drawn, note = _prediction_grid(client, candidate, production, out / "predictions.png")
    if drawn:
        parts += [
            "",
            f"<details><summary>Predictions on fixed validation "
            f"images</summary>\n\n![predictions](predictions.png)\n\n{note}\n\n</details>",
        ]
    return "\n".join(parts)


def _samples(client, run) -> dict | None:
    import mlflow

    try:
        path = mlflow.artifacts.download_artifacts(run_id=run.info.run_id, artifact_path="samples/samples.npz")
    except Exception:
        return None
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def _prediction_grid(client, candidate: Model, production: Model | None, path: Path) -> tuple[bool, str]:
    """(drawn, note): image | truth | production | candidate for the run's fixed samples."""
    cand = _samples(client, candidate.run)
    if cand is None:
        return False, ""
    prod = _samples(client, production.run) if production else None
    same = (
        production is not None
        and prod is not None
        and list(prod["file_names"]) == list(cand["file_names"])
        and prod["truth"].shape == cand["truth"].shape
    )
    held = [production.label] if same and production else []
    titles = ["image", "truth", *held, "candidate"]
    rows = [
        [img, truth, *([prod["predicted"][i]] if same and prod else []), cand["predicted"][i]]
        for i, (img, truth) in enumerate(zip(cand["images"], cand["truth"], strict=False))
    ]
    names = [str(n) for n in cand["class_names"]]
    plots.mask_grid(rows, titles, len(names), names, path)
    if prod is not None and not same:
        return (
            True,
            "Production was evaluated on other images (other data, categories or size): its column is left out.",
        )
    return True, ""


def _write(out: Path, run, sections: list[str]) -> str:
    key = run.data.tags.get("flowops.experiment_file") or run.info.run_name
    text = MARKER.format(key=key) + "\n" + "\n\n".join(s for s in sections if s) + "\n"
    (out / "report.md").write_text(text)
    (out / "comment.md").write_text(for_comment(text))
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if summary:
        with open(summary, "a") as fh:
            fh.write(text + "\n")
    return text


def for_comment(markdown: str) -> str:
    """The report as a PR comment: images are not uploaded anywhere, so each becomes a pointer to its file.

    The PNGs stay in the report folder (the workflow artifact) and on the tracking server; no
    third-party image host sees validation images.
    """
    import re

    return re.sub(
        r"!\[([^\]]*)\]\(([\w.-]+\.png)\)",
        r"*\1: `\2` in the workflow run's report artifact and the run's artifacts*",
        markdown,
    )


def sections(markdown: str, *titles: str) -> str:
    """The named `### ` sections of a report (the demo prints them in the terminal)."""
    parts = markdown.split("\n### ")
    return "\n\n".join("### " + p.strip() for p in parts[1:] if p.split("\n", 1)[0].split(" (")[0] in titles)
