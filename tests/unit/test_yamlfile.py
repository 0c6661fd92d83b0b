import time
import tracemalloc
from pathlib import Path

import pytest

from flowops import yamlfile
from flowops.errors import ProblemsError


def messages(exc: ProblemsError) -> list[str]:
    return [str(p) for p in exc.problems]


def test_lines_of_keys_and_items(write):
    path = write("x.yaml", "# comment\nname: a\nlist:\n  - one\n  - two\nnested:\n  key: 1\n")
    doc = yamlfile.load(path)
    assert doc.data == {"name": "a", "list": ["one", "two"], "nested": {"key": 1}}
    assert doc.lines[("name",)] == 2
    assert doc.lines[("list", 1)] == 5
    assert doc.lines[("nested", "key")] == 7
    assert doc.line_of(("nested", "missing")) == 6  # falls back to the parent
    assert doc.line_of(("absent",)) == 1


def test_duplicate_key_is_an_error_with_both_lines(write):
    path = write("x.yaml", "a: 1\nb:\n  c: 1\n  c: 2\n")
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(path)
    assert messages(info.value) == [f"{path}:4: b.c: duplicate key (first at line 3)"]


@pytest.mark.parametrize(
    "text",
    [
        'a: !!python/object/apply:os.system ["true"]\n',
        "a: !!python/name:os.system\n",
        "a: !custom 3\n",
        "a: !!set {x, y}\n",
        "a: !!binary aGVsbG8=\n",
    ],
)
def test_object_constructing_and_custom_tags_are_refused(write, text):
    path = write("x.yaml", text)
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(path)
    (message,) = messages(info.value)
    assert message.startswith(f"{path}:1: tag !")
    assert message.endswith("is not allowed (only plain YAML values: no Python objects or custom tags)")


def test_merge_keys_are_refused(write):
    path = write("x.yaml", "base: &b {x: 1}\nother:\n  <<: *b\n")
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(path)
    assert messages(info.value) == [f"{path}:3: merge keys ('<<') are not supported; write the values out"]


def test_billion_laughs_fails_fast_in_bounded_memory(write):
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for prev, name in zip("abcdefgh", "bcdefghi", strict=False):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    path = write("bomb.yaml", "\n".join(lines) + "\n")
    tracemalloc.start()
    start = time.perf_counter()
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(path)
    elapsed = time.perf_counter() - start
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    (message,) = messages(info.value)
    assert message.startswith(f"{path}:")
    assert message.endswith(f": aliases expand to more than {yamlfile.MAX_NODES} values")
    # 9**9 values would be ~387 million; we stop at MAX_NODES. Generous bounds, not a benchmark.
    assert elapsed < 5
    assert peak < 200 * 2**20


def test_self_referencing_alias_hits_the_depth_limit(write):
    path = write("loop.yaml", "a: &x [*x]\n")
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(path)
    assert f"nested deeper than {yamlfile.MAX_DEPTH} levels" in messages(info.value)[0]


def test_dates_stay_text(write):
    doc = yamlfile.load(write("x.yaml", "when: 2024-01-02\n"))
    assert doc.data == {"when": "2024-01-02"}


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"a: 1\nb: caf\xe9\n", "{path}:2: not UTF-8 text (byte 0xe9)"),
        (b"a: 1\x00\n", "{path}: binary content (NUL byte at offset 4), expected YAML text"),
        (b"a: [1, 2\n", "{path}:2: not valid YAML: did not find expected ',' or ']'"),
        (b"a: 1\n---\nb: 2\n", "{path}:2: not valid YAML: more than one document ('---'); expected exactly one"),
    ],
)
def test_unreadable_content(write, content, expected):
    path = write("x.yaml", content)
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(path)
    assert messages(info.value) == [expected.format(path=path)]


def test_size_limit(write):
    path = write("big.yaml", "# " + "x" * yamlfile.MAX_BYTES + "\n")
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(path)
    size = path.stat().st_size
    assert messages(info.value) == [f"{path}: file is {size} bytes, over the {yamlfile.MAX_BYTES} byte limit"]


def test_directory_and_missing_path(tmp_path):
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(tmp_path)
    assert messages(info.value) == [f"{tmp_path}: is a directory, expected a YAML file"]
    with pytest.raises(ProblemsError) as info:
        yamlfile.load(tmp_path / "nope.yaml")
    assert messages(info.value) == [f"{tmp_path / 'nope.yaml'}: no such file"]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("1e-4", 1e-4),  # YAML 1.1 (PyYAML) reads text: a learning rate was refused
        ("-2.5E+3", -2500.0),
        ("10", 10),
        ("0", 0),
        ("0o17", 15),
        ("0x1f", 31),
        ("yes", "yes"),  # YAML 1.1 reads true
        ("off", "off"),
        ("true", True),
        ("null", None),
        (".inf", float("inf")),
        ("'010'", "010"),  # quoted: text, as written
        ("!!str 10", "10"),  # an explicit tag is kept
        ("2026-01-02", "2026-01-02"),
    ],
)
def test_plain_values_mean_what_yaml_1_2_says(write, text, value):
    assert yamlfile.load(write("v.yaml", f"v: {text}\n")).data == {"v": value}


def test_a_leading_zero_integer_is_refused_not_read_as_octal(write):
    path = write("e.yaml", "epochs: 010\n")  # YAML 1.1 reads 8
    with pytest.raises(ProblemsError) as caught:
        yamlfile.load(path)
    assert str(caught.value.problems[0]) == (
        f"{path}:1: 010: an integer with a leading zero is ambiguous (8 in YAML 1.1, 10 in 1.2); "
        "write it without the zero"
    )


def test_a_link_out_of_the_repository_is_not_read_nor_echoed(tmp_path, monkeypatch):
    from flowops.spec.validate import validate_paths

    secret = tmp_path / "outside" / "token"
    secret.parent.mkdir()
    secret.write_text("ghp_0123456789abcdefSECRET\n")  # a one-line file: valid YAML, a single value
    repo = tmp_path / "repo"
    (repo / "experiments").mkdir(parents=True)
    (repo / "experiments" / "x.yaml").symlink_to(secret)
    (repo / "shared.yaml").write_text("name: inside\ncategories: [person]\n")
    (repo / "experiments" / "y.yaml").symlink_to(repo / "shared.yaml")  # a link within the repository is fine
    monkeypatch.chdir(repo)
    specs, problems = validate_paths([Path("experiments/x.yaml"), Path("experiments/y.yaml")])
    assert [str(p) for p in problems] == [
        f"experiments/x.yaml: is a symbolic link to {secret}, outside the repository; not read"
    ]
    assert [s.name for s in specs] == ["inside"]
    # A regular file that is one value is described, never quoted.
    (repo / "experiments" / "x.yaml").unlink()
    (repo / "experiments" / "x.yaml").write_text(secret.read_text())
    _, problems = validate_paths([Path("experiments/x.yaml")])
    assert "SECRET" not in str(problems[0]) and "a single line of text" in str(problems[0])
