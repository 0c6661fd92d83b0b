"""`flowops validate` end to end through the CLI: exact messages, exit codes, no traceback."""

import subprocess
import sys
import textwrap

import pytest
from click.testing import CliRunner

from flowops.cli import cli

GOOD = "name: exp\ncategories: [person]\ndataset: {root: data/x}\n"


def run(*args: str, cwd=None):
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", ["{p}:1: file is empty; expected a mapping of experiment settings"]),
        ("- a\n- b\n", ["{p}:1: top level must be a mapping of experiment settings, got a list"]),
        (
            "just text\n",
            ["{p}:1: top level must be a mapping of experiment settings, got a single line of text"],
        ),
        (GOOD + "epoch: 3\n", ["{p}:4: epoch: unknown key (did you mean 'epochs'?)"]),
        (
            GOOD + "zzz: 3\n",
            [
                "{p}:4: zzz: unknown key; known keys: name, description, experiment_name, dataset, "
                "categories, architecture, backbone, encoder_weights, image_size, epochs, batch_size, learning_rate, "
                "max_batches_per_epoch, seed, augment, max_images, negatives"
            ],
        ),
        (GOOD + "epochs: '3'\n", ["{p}:4: epochs: must be an integer (got '3')"]),
        (GOOD + "augment: yes please\n", ["{p}:4: augment: must be true or false (got 'yes please')"]),
        (GOOD + "epochs: 0\n", ["{p}:4: epochs: must be >= 1 (got 0)"]),
        (GOOD + "epochs: -2\n", ["{p}:4: epochs: must be >= 1 (got -2)"]),
        (GOOD + "batch_size: 0\n", ["{p}:4: batch_size: must be >= 1 (got 0)"]),
        (GOOD + "image_size: 0\n", ["{p}:4: image_size: must be >= 32 (got 0)"]),
        (GOOD + "learning_rate: 0\n", ["{p}:4: learning_rate: must be > 0.0 (got 0)"]),
        (GOOD + "learning_rate: -0.1\n", ["{p}:4: learning_rate: must be > 0.0 (got -0.1)"]),
        (
            GOOD + "architecture: unet\n",
            [
                "{p}:4: architecture: unknown architecture 'unet' (did you mean 'Unet'?); expected Unet, FPN, "
                "Linknet, PSPNet"
            ],
        ),
        (
            GOOD + "backbone: resnet19\n",
            [
                "{p}:4: backbone: unknown backbone 'resnet19' (did you mean 'resnet18'?); expected one of the "
                "32 names in experiments/schema.json"
            ],
        ),
        (
            GOOD + "architecture: PSPNet\nimage_size: 100\n",
            ["{p}:5: image_size: PSPNet needs a multiple of 48 (got 100; try 96 or 144)"],
        ),
        (
            "name: exp\ncategories: []\ndataset: {root: d}\n",
            ["{p}:2: categories: must list at least 1 item(s) (got 0)"],
        ),
        (
            "name: exp\ncategories: [person, person]\ndataset: {root: d}\n",
            ["{p}:2: categories: category 'person' is listed twice"],
        ),
        ("name: exp\ncategories: [person, '']\ndataset: {root: d}\n", ["{p}:2: categories[1]: must not be empty"]),
        (
            "name: exp\ncategories: [persn]\n",
            ["{p}:2: categories: category 'persn' is not a COCO category (did you mean 'person'?)"],
        ),
        (
            "name: exp\ncategories: [person]\ndataset: kitti\n",
            ["{p}:3: dataset: must be 'coco' or a mapping with a root folder (got 'kitti')"],
        ),
        (
            "name: exp\ncategories: [person]\ndataset:\n  root: d\n  trian_images: x\n",
            ["{p}:5: dataset.trian_images: unknown key (did you mean 'train_images'?)"],
        ),
        (
            "name: exp\ncategories: [person]\ndataset:\n  train_images: x\n",
            ["{p}:3: dataset.root: required field is missing"],
        ),
        ("categories: [person]\n", ["{p}:1: name: required field is missing"]),
        ("name: exp\nname: exp2\ncategories: [person]\n", ["{p}:2: name: duplicate key (first at line 1)"]),
        (
            "name: !!python/object/apply:os.system ['true']\ncategories: [person]\n",
            [
                "{p}:1: tag !!python/object/apply:os.system is not allowed (only plain YAML values: no Python "
                "objects or custom tags)"
            ],
        ),
        ("name: [oops\n", ["{p}:2: not valid YAML: did not find expected ',' or ']'"]),
    ],
)
def test_bad_experiment(write, text, expected):
    path = write("experiments/x.yaml", text)
    code, out, err = run("validate", str(path))
    assert code == 1
    assert out == ""
    assert err.splitlines() == [e.format(p=path) for e in expected]


def test_all_errors_of_all_files_are_reported(write):
    a = write("a.yaml", GOOD + "epochs: 0\nbatch_size: 0\n")
    b = write("b.yaml", GOOD.replace("exp", "other") + "seed: -1\n")
    code, _, err = run("validate", str(a), str(b))
    assert code == 1
    assert err.splitlines() == [
        f"{a}:4: epochs: must be >= 1 (got 0)",
        f"{a}:5: batch_size: must be >= 1 (got 0)",
        f"{b}:4: seed: must be >= 0 (got -1)",
    ]


def test_annotations_put_each_problem_on_its_line_of_the_diff(write):
    a = write("a.yaml", GOOD + "epochs: 0\n")
    b = write("b,c.yaml", "name: [unclosed\n")
    code, out, err = run("validate", "--annotations", str(a), str(b))
    assert code == 1
    assert out.splitlines()[0] == f"::error file={a},line=4,title=flowops validate::epochs: must be >= 1 (got 0)"
    assert out.splitlines()[1].startswith(f"::error file={str(b).replace(',', '%2C')},line=")
    assert len(out.splitlines()) == len(err.splitlines()) == 2  # the plain lines stay on stderr


def test_duplicate_names_across_files(write):
    a = write("a.yaml", GOOD)
    b = write("b.yaml", "# second\n" + GOOD)
    code, _, err = run("validate", str(a), str(b))
    assert code == 1
    assert err.splitlines() == [f"{b}:2: name: 'exp' is also the name in {a}"]


def test_valid_files_exit_zero(write):
    path = write("a.yaml", GOOD)
    code, out, err = run("validate", str(path))
    assert (code, out, err) == (0, "ok: 1 file(s) valid (1 experiment(s))\n", "")


def test_default_paths_include_policy(write, tmp_path, monkeypatch):
    write("experiments/a.yaml", GOOD)
    write("experiments/notes.txt", "ignored")
    write("registry_policy.yaml", "- not a mapping\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run("validate")
    assert code == 1
    assert err.splitlines() == [
        "registry_policy.yaml:1: top level must be a mapping of registry policy settings, got a list"
    ]


def test_nothing_to_validate(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, _, err = run("validate")
    assert (code, err) == (1, "nothing to validate: no experiments/*.yaml here and no paths given\n")


def test_process_exit_code_no_traceback_and_no_heavy_imports(write):
    bad = write("bad.yaml", "name: exp\ncategories: [person]\nepochs: 0\n")
    probe = textwrap.dedent(
        """
        import sys
        from flowops.cli import main
        try:
            main()
        except SystemExit as exc:
            heavy = sorted(m for m in ("tensorflow", "mlflow", "keras", "segmentation_models") if m in sys.modules)
            print("HEAVY=" + ",".join(heavy), file=sys.stderr)
            raise
        """
    )
    proc = subprocess.run([sys.executable, "-c", probe, "validate", str(bad)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [f"{bad}:3: epochs: must be >= 1 (got 0)", "HEAVY="]
    assert "Traceback" not in proc.stderr


def test_traceback_flag_shows_the_stack(write):
    bad = write("bad.yaml", "epochs: 0\n")
    proc = subprocess.run(
        [sys.executable, "-m", "flowops.cli", "--traceback", "validate", str(bad)], capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.splitlines()[-3:] == [
        f"{bad}:1: name: required field is missing",
        f"{bad}:1: categories: required field is missing",
        f"{bad}:1: epochs: must be >= 1 (got 0)",
    ]


POLICY = "model_name: m\n"


@pytest.mark.parametrize(
    "text, expected",
    [
        (
            POLICY + "primary_metric: val_iuo\n",
            [
                "{p}:2: primary_metric: unknown metric 'val_iuo' (did you mean 'val_iou'?); declare its "
                "direction under metrics:"
            ],
        ),
        (
            POLICY + "targets:\n  production:\n    thresholds:\n      - {metric: val_iou, min: 0.5, max: 0.2}\n",
            ["{p}:5: targets.production.thresholds[0]: contradictory threshold on 'val_iou': min 0.5 > max 0.2"],
        ),
        (
            POLICY + "targets:\n  production:\n    thresholds:\n      - {metric: val_iou}\n",
            ["{p}:5: targets.production.thresholds[0]: threshold on 'val_iou' needs min or max"],
        ),
        (
            POLICY + "targets:\n  production:\n    improve: {absolut: 0.1}\n",
            ["{p}:4: targets.production.improve.absolut: unknown key (did you mean 'absolute'?)"],
        ),
        (
            POLICY + "targets:\n  production:\n    max_regression:\n      - {metric: val_f2, max_absolute: 0.1}\n",
            [
                "{p}:5: targets.production.max_regression[0].metric: unknown metric 'val_f2' (did you mean "
                "'val_f1'?); declare its direction under metrics:"
            ],
        ),
        (
            POLICY + "targets:\n  Production: {}\n",
            [
                "{p}:3: targets.Production: alias names are lowercase letters, digits, '_' or '-', starting "
                "with a letter (got 'Production')"
            ],
        ),
        (
            POLICY + "targets:\n  latest: {}\n",
            ["{p}:3: targets.latest: 'latest' is reserved by MLflow (it names a version, not an alias)"],
        ),
        (
            POLICY + "targets:\n  staging: {}\n  v1: {}\n",
            ["{p}:4: targets.v1: 'v1' is reserved by MLflow (it names a version, not an alias)"],
        ),
        (
            POLICY + "targets:\n  production:\n    thresholds:\n      - {metric: val_iou, min: 1.5}\n",
            ["{p}:5: targets.production.thresholds[0].min: val_iou is always within [0, 1]; 1.5 can never be met"],
        ),
        (
            POLICY + "targets:\n  production:\n    thresholds:\n      - {metric: val_loss, max: -0.1}\n",
            ["{p}:5: targets.production.thresholds[0].max: val_loss is always >= 0; -0.1 can never be met"],
        ),
        (
            POLICY + "targets:\n  production:\n    thresholds:\n      - {metric: val_iou, min: .nan}\n",
            ["{p}:5: targets.production.thresholds[0].min: must be a finite number (got nan)"],
        ),
        (
            POLICY + "targets:\n  production:\n    thresholds:\n      - {metric: val_loss, max: -.inf}\n",
            ["{p}:5: targets.production.thresholds[0].max: must be a finite number (got -inf)"],
        ),
        (
            POLICY + "targets:\n  production:\n    improve: {absolute: 2.0}\n",
            [
                "{p}:4: targets.production.improve.absolute: val_miou spans at most 1: an improvement of 2 can never be met"
            ],
        ),
        (
            POLICY + "mode: dryrun\n",
            ["{p}:2: mode: unknown mode 'dryrun' (did you mean 'dry_run'?); expected enabled, dry_run, disabled"],
        ),
        (POLICY + "targets: {}\n", ["{p}:2: targets: must list at least 1 item(s) (got 0)"]),
        ("primary_metric: val_iou\n", ["{p}:1: model_name: required field is missing"]),
    ],
)
def test_bad_policy(write, text, expected):
    path = write("registry_policy.yaml", text)
    code, out, err = run("validate", str(path))
    assert (code, out) == (1, "")
    assert err.splitlines() == [e.format(p=path) for e in expected]


def test_committed_policy_is_valid():
    from flowops.spec.load import load_policy

    from ..conftest import REPO

    policy = load_policy(REPO / "registry_policy.yaml")
    assert list(policy.targets) == ["staging", "production"]


def test_policy_caps_the_training_budget(write, tmp_path, monkeypatch):
    write("registry_policy.yaml", POLICY + "max_training_batches: 100\n")
    write("experiments/ok.yaml", GOOD + "epochs: 10\nmax_batches_per_epoch: 10\n")
    big = write("experiments/big.yaml", GOOD.replace("exp", "big") + "epochs: 20\nmax_batches_per_epoch: 10\n")
    open_ended = write("experiments/open.yaml", GOOD.replace("exp", "open") + "epochs: 2\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run("validate")
    assert code == 1
    assert err.splitlines() == [
        f"{big.relative_to(tmp_path)}:4: epochs: training budget 20 epochs x 10 batches = 200, over the cap "
        f"of 100 in registry_policy.yaml",
        f"{open_ended.relative_to(tmp_path)}:1: max_batches_per_epoch: required: registry_policy.yaml caps "
        f"training at 100 batches (max_training_batches)",
    ]


def test_a_per_class_metric_must_name_a_category(write):
    experiment = write("experiments/a.yaml", "name: a\ncategories: [person, car]\n")
    policy = write(
        "registry_policy.yaml",
        POLICY + "targets:\n  production:\n    thresholds:\n      - {metric: val_iou.persn, min: 0.1}\n",
    )
    code, _, err = run("validate", str(experiment), str(policy))
    assert (code, err) == (
        1,
        f"{policy}:5: targets.production.thresholds[0].metric: no experiment has the category 'persn' "
        "(did you mean 'person'?); per-class metrics name one of: background, car, person\n",
    )
    good = write(
        "registry_policy.yaml",
        POLICY + "targets:\n  production:\n    thresholds:\n      - {metric: val_iou.car, min: 0.1}\n",
    )
    assert run("validate", str(experiment), str(good))[0] == 0
