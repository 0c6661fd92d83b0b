"""Lineage facts from real git repositories in temp dirs."""

import json
import re
import subprocess

import pytest

from flowops.gitops import lineage


def sh(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    sh("git", "init", "-q", "-b", "main", cwd=tmp_path)
    sh("git", "config", "user.email", "t@example.invalid", cwd=tmp_path)
    sh("git", "config", "user.name", "t", cwd=tmp_path)
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.py").write_text("x = 1\n")
    (tmp_path / "MLproject").write_text("name: p\n")
    (tmp_path / "conda.yaml").write_text("name: c\n")
    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "e.yaml").write_text("name: e\n")
    sh("git", "add", "-A", cwd=tmp_path)
    sh("git", "commit", "-qm", "init", cwd=tmp_path)
    return tmp_path


def test_code_tree_of_working_tree_equals_commit_when_clean(repo):
    committed = lineage.code_tree("HEAD", repo=repo)
    assert committed and len(committed) == 40
    assert lineage.code_tree(repo=repo) == committed


def test_code_tree_ignores_experiments_but_sees_code_edits(repo):
    before = lineage.code_tree(repo=repo)
    (repo / "experiments" / "e.yaml").write_text("name: changed\n")
    assert lineage.code_tree(repo=repo) == before
    (repo / "src" / "a.py").write_text("x = 2\n")
    edited = lineage.code_tree(repo=repo)
    assert edited != before
    sh("git", "commit", "-qam", "edit", cwd=repo)
    assert lineage.code_tree("HEAD", repo=repo) == edited  # what trained is what was committed
    # the real index was not touched by computing the working-tree hash
    assert subprocess.run(["git", "status", "--porcelain"], cwd=repo, capture_output=True, text=True).stdout == ""


def test_a_nested_code_path_has_a_code_tree_of_its_own(repo):
    """Hardening 3 item 8: `code: [src/model]` validated, but git mktree refused the name with a
    slash, so the code tree was None and every run was refused."""
    (repo / "src" / "model").mkdir()
    (repo / "src" / "model" / "net.py").write_text("layers = 3\n")
    (repo / "src" / "other.py").write_text("unrelated = 1\n")
    (repo / "ünïcode dir").mkdir()
    (repo / "ünïcode dir" / 'a "quoted" name.py').write_text("x = 1\n")  # git C-quotes such names without -z
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "model", cwd=repo)
    paths = ("src/model", "MLproject", "ünïcode dir")
    tree = lineage.code_tree("HEAD", repo=repo, paths=paths)
    assert tree and len(tree) == 40
    assert lineage.code_tree(repo=repo, paths=paths) == tree  # the clean working tree: the same
    listed = subprocess.run(
        ["git", "ls-tree", "-r", "-z", "--name-only", tree], cwd=repo, capture_output=True, text=True
    )
    assert sorted(listed.stdout.split("\0")[:-1]) == ["MLproject", "src/model/net.py", 'ünïcode dir/a "quoted" name.py']
    (repo / "src" / "other.py").write_text("unrelated = 2\n")
    assert lineage.code_tree(repo=repo, paths=paths) == tree  # outside the code paths
    (repo / "src" / "model" / "net.py").write_text("layers = 4\n")
    assert lineage.code_tree(repo=repo, paths=paths) not in (tree, None)  # inside them


def test_top_level_code_paths_keep_the_identity_runs_were_logged_with(repo):
    """A tree of top-level paths is git's own tree of that listing, as before nested paths."""
    listing = subprocess.run(
        ["git", "ls-tree", "HEAD", "--", "src", "MLproject", "conda.yaml"], cwd=repo, capture_output=True, text=True
    ).stdout
    old = subprocess.run(["git", "mktree"], cwd=repo, input=listing, capture_output=True, text=True).stdout.strip()
    assert lineage.code_tree("HEAD", repo=repo, paths=("src", "MLproject", "conda.yaml")) == old


def test_pull_request_number(tmp_path):
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 42}}))
    assert lineage.pull_request_number({"GITHUB_EVENT_PATH": str(event)}) == "42"
    assert lineage.pull_request_number({"GITHUB_REF": "refs/pull/7/merge"}) == "7"
    assert lineage.pull_request_number({"GITHUB_REF": "refs/heads/main"}) is None


def test_run_tags(repo, monkeypatch):
    monkeypatch.setenv("GITHUB_REF", "refs/pull/9/merge")
    monkeypatch.setenv("GITHUB_HEAD_REF", "feature/x")
    tags = lineage.run_tags("abc", "experiments/e.yaml", "fp", repo=repo)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    assert tags["flowops.git_commit"] == head
    assert tags["flowops.code_tree"] == lineage.code_tree("HEAD", repo=repo)
    assert (tags["flowops.pr_number"], tags["flowops.git_branch"], tags["flowops.code_dirty"]) == (
        "9",
        "feature/x",
        "false",
    )
    assert tags["flowops.spec_sha256"] == "abc" and tags["flowops.dataset_fingerprint"] == "fp"
    assert "python==" in tags["flowops.versions"] and tags["flowops.hardware"]


def test_outside_a_repository_the_code_is_not_known_clean(tmp_path):
    """Hardening 3 item 6: a failed `git status` read as "clean"."""
    tags = lineage.run_tags("abc", "experiments/e.yaml", None, repo=tmp_path)
    assert (tags["flowops.git_commit"], tags["flowops.code_tree"], tags["flowops.code_dirty"]) == (
        "unknown",
        "unknown",
        "true",
    )


def test_changed_experiments_reads_names_as_they_are_and_a_failed_diff_is_an_error(repo):
    """Hardening 3 item 6: a failed `git diff` meant "no experiment changed", so replaying main
    skipped that merge; and git C-quoted names that are not ASCII, which matched no file."""
    from flowops.errors import FlowopsError
    from flowops.gitops.git import changed_experiments

    before = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    (repo / "experiments" / "première.yaml").write_text("name: p\n")
    (repo / "experiments" / "e.yaml").write_text("name: changed\n")
    (repo / "experiments" / "notes.md").write_text("not an experiment\n")
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "more", cwd=repo)
    assert changed_experiments(repo, before, "HEAD") == [
        ("M", "experiments/e.yaml"),
        ("A", "experiments/première.yaml"),
    ]
    with pytest.raises(FlowopsError, match=r"git diff 0{12}\.\.HEAD failed, so which experiments changed is unknown"):
        changed_experiments(repo, "0" * 40, "HEAD")


def test_every_experiment_gets_an_artifact_name_of_its_own():
    """#29: mapping characters alone made a_b.yaml, a-b.yaml and a:b.yaml one artifact name."""
    from flowops.gitops.changes import artifact_name

    paths = ["experiments/a_b.yaml", "experiments/a-b.yaml", "experiments/a:b.yaml", "experiments/a b.yaml"]
    names = [artifact_name(p) for p in paths]
    assert len(set(names)) == len(paths)
    assert all(re.fullmatch(r"bundle-[A-Za-z0-9._-]+-[0-9a-f]{10}", n) and len(n) <= 100 for n in names)
    assert artifact_name("experiments/" + "x" * 500 + ".yaml") != artifact_name("experiments/" + "x" * 501 + ".yaml")


def test_a_pr_over_the_cap_trains_nothing_and_says_why(repo):
    from flowops.gitops.changes import github_output, over_cap, pr_changes

    before = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    for i in range(3):
        (repo / "experiments" / f"n{i}.yaml").write_text(f"name: n{i}\n")
    (repo / "experiments" / 'é"q.yaml').write_text("name: q\n")  # git C-quotes this name without -z
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "four more", cwd=repo)
    changes = pr_changes(repo, before, "HEAD")
    assert changes.experiments == [
        "experiments/n0.yaml",
        "experiments/n1.yaml",
        "experiments/n2.yaml",
        'experiments/é"q.yaml',
    ]
    assert over_cap(changes, 4) is None
    assert over_cap(changes, 3) == (
        "this PR would train 4 experiments, over the limit of 3 per PR (first: experiments/n0.yaml): split it "
        "into smaller PRs, or raise the repository variable FLOWOPS_MAX_EXPERIMENTS; nothing trains"
    )
    matrix = json.loads(next(line for line in github_output(changes).splitlines() if line.startswith("matrix="))[7:])
    assert [row["experiment"] for row in matrix["include"]] == changes.experiments
    # code changed: the stale list names every other experiment as it is (ls-tree -z)
    (repo / "src" / "a.py").write_text("x = 2\n")
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "code", cwd=repo)
    assert pr_changes(repo, before, "HEAD", retrain=True).experiments == sorted(
        ["experiments/e.yaml", *changes.experiments]
    )


def test_a_file_name_with_a_line_break_is_refused_by_validate_and_by_changed(repo):
    """#29: a name that git C-quotes validated and was then never trained; a line break in a name
    would also become a line of its own in the workflow log (a workflow command)."""
    from flowops.errors import FlowopsError
    from flowops.gitops.changes import pr_changes
    from flowops.spec.validate import validate_paths

    before = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    bad = repo / "experiments" / "x\n::error::forged.yaml"
    bad.write_text("name: x\n")
    sh("git", "add", "-A", cwd=repo)
    sh("git", "commit", "-qm", "a bad name", cwd=repo)
    _, problems = validate_paths([bad], root=repo)
    assert [str(p) for p in problems] == [
        f"{str(bad)!r}: the file name holds the control character '\\n'; rename the file"
    ]
    with pytest.raises(FlowopsError, match=r"^'experiments/x\\n::error::forged.yaml': the file name holds the control"):
        pr_changes(repo, before, "HEAD")
