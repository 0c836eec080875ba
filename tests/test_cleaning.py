"""Fix your data: the audit finds planted label errors, duplicates and outliers; fixes apply without touching the source."""

import hashlib
import json
import threading

import numpy as np
import pytest

import cnnviz
from cnnviz import cleaning
from cnnviz.cleaning import Fix
from cnnviz.data import Dataset, Split
from cnnviz.errors import ConfigError

from .conftest import write_image
from .test_cli import _last_json, _run

CLASSES = ("dark", "top", "bottom")
FLIPPED = [3, 17, 31, 46, 58, 70, 85, 99]  # training images given a wrong label


def _images(count: int, seed: int):
    """Three easy classes on 20x20: dark, a bright top half, a bright bottom half."""
    rng = np.random.default_rng(seed)
    labels = np.arange(count) % 3
    images = rng.integers(0, 60, (count, 20, 20, 3)).astype(np.uint8)
    images[labels == 1, :10] += 160
    images[labels == 2, 10:] += 160
    return images, labels.astype(np.int64)


@pytest.fixture(scope="module")
def planted():
    images, labels = _images(150, seed=0)
    given = labels.copy()
    given[FLIPPED] = (labels[FLIPPED] + 1) % 3
    images[120] = images[121]  # the same image under two labels (120 "dark", 121 "top")
    images[122] = images[125]  # twice in one class ("bottom")
    test_images, test_labels = _images(30, seed=1)
    files = [f"{CLASSES[label]}/{index}.png" for index, label in enumerate(given)]
    data = Dataset(
        "planted",
        CLASSES,
        Split(images, given, None, files),
        Split(images[:0], given[:0], None, []),
        Split(test_images, test_labels),
    )
    return data, labels, cleaning.audit(data, folds=3, budget=12, seed=0)


def test_the_audit_ranks_the_planted_wrong_labels_first_and_suggests_their_true_class(planted):
    data, truth, found = planted
    assert found.trusted and found.accuracy >= 0.8
    assert len(found.fold_accuracy) == 3
    top = found.suspects[: len(FLIPPED)]
    caught = [row["index"] for row in top if row["index"] in FLIPPED]
    assert len(caught) >= 7  # at least 7 of the 8 planted errors are the 8 most suspect
    for row in top:
        if row["index"] in FLIPPED:
            assert row["suggested"] == CLASSES[truth[row["index"]]]
            assert row["given"] == CLASSES[data.train.labels[row["index"]]] != row["suggested"]
            assert row["file"] == data.train.files[row["index"]]
    scores = [row["score"] for row in found.suspects]
    assert scores == sorted(scores, reverse=True) and all(0 <= score <= 1 for score in scores)
    # Out-of-fold: each probability row comes from a model that never saw that image.
    assert found.probabilities.shape == (150, 3)
    np.testing.assert_allclose(found.probabilities.sum(axis=1), 1.0, atol=1e-4)


def test_the_audit_lists_the_same_image_under_two_labels_first_then_twice_in_one_class(planted):
    _, _, found = planted
    pairs = [(sorted(row["indices"]), row["same_label"]) for row in found.duplicates]
    assert pairs[0] == ([120, 121], False)
    assert ([122, 125], True) in pairs
    assert found.duplicates[0]["files"] == ["dark/120.png", "top/121.png"]


def test_the_json_has_the_issue_schema_with_files_and_no_internal_indices(planted):
    _, _, found = planted
    document = json.loads(json.dumps(found.to_json()))
    assert set(document) >= {"suspects", "duplicates", "outliers", "confused_pairs", "unreadable", "seconds"}
    assert set(document["suspects"][0]) == {"file", "given", "suggested", "score"}
    assert document["trusted"] is True and document["seconds"] > 0


def test_models_too_weak_to_judge_withhold_the_ranking_and_say_so():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 255, (60, 16, 16, 3)).astype(np.uint8)  # noise: nothing to learn
    labels = np.arange(60) % 3
    data = Dataset(
        "noise", CLASSES, Split(images, labels), Split(images[:0], labels[:0]), Split(images[:3], labels[:3])
    )
    found = cleaning.audit(data, folds=2, budget=2, seed=0)
    assert not found.trusted and found.accuracy < cleaning.TRUSTED_ACCURACY
    assert found.suspects == [] and len(found.ranking) > 0
    assert "too weak to tell a wrong label from their own mistake" in found.verdict


def test_a_class_with_fewer_images_than_folds_gets_a_message_that_says_what_is_needed():
    images, labels = _images(12, seed=3)
    labels[labels == 2] = 0
    labels[0] = 2  # one image of "bottom"
    data = Dataset(
        "few", CLASSES, Split(images, labels), Split(images[:0], labels[:0]), Split(images[:0], labels[:0])
    )
    with pytest.raises(ConfigError, match=r"at least 3 training images per class; too few in: bottom \(1\)"):
        cleaning.audit(data, folds=3)


def test_a_stopped_audit_raises_and_keeps_nothing():
    images, labels = _images(30, seed=4)
    data = Dataset(
        "stop", CLASSES, Split(images, labels), Split(images[:0], labels[:0]), Split(images[:0], labels[:0])
    )
    stop = threading.Event()
    stop.set()
    with pytest.raises(cleaning.AuditStopped, match="nothing was kept"):
        cleaning.audit(data, folds=2, budget=2, stop_event=stop)


def test_fixes_round_trip_through_csv_and_bad_rows_are_named_by_line():
    fixes = [
        Fix("a/1.png", "dark", "relabel", "top"),
        Fix("b/2.png", "top", "drop"),
        Fix("c,3.png", "top", "keep"),
    ]
    text = cleaning.write_fixes(fixes)
    assert text.splitlines()[0] == "file,given,action,new_label"
    assert cleaning.read_fixes(text, CLASSES) == fixes
    bad = "file,given,action,new_label\na.png,dark,move,\nb.png,dark,relabel,cat\nc.png,dark,keep,\nc.png,dark,drop,\n"
    with pytest.raises(ConfigError) as raised:
        cleaning.read_fixes(bad, CLASSES)
    message = str(raised.value)
    assert "line 2: action must be keep, relabel or drop, got 'move'" in message
    assert "line 3: relabel needs new_label, one of dark, top, bottom; got 'cat'" in message
    assert "line 5: c.png is listed twice" in message
    with pytest.raises(ConfigError, match="starts with the header line"):
        cleaning.read_fixes("name,label\n", CLASSES)


def test_a_fixed_dataset_relabels_and_drops_training_images_and_leaves_the_test_split_and_the_original(
    planted,
):
    data, _, _ = planted
    before = data.train.labels.copy()
    fixed = cleaning.fixed_dataset(
        data,
        [
            Fix("dark/6.png", "dark", "relabel", "top"),
            Fix("top/7.png", "top", "drop"),
            Fix("bottom/8.png", "bottom", "keep"),
        ],
    )
    assert len(fixed.train) == len(data.train) - 1 and "top/7.png" not in fixed.train.files
    assert fixed.train.labels[fixed.train.files.index("dark/6.png")] == CLASSES.index("top")
    assert fixed.train.labels[fixed.train.files.index("bottom/8.png")] == CLASSES.index("bottom")
    assert fixed.test is data.test
    np.testing.assert_array_equal(data.train.labels, before)
    with pytest.raises(ConfigError, match="not training images here"):
        cleaning.fixed_dataset(data, [Fix("nope.png", "dark", "drop")])


def _tree_digest(root):
    return hashlib.sha1(
        b"".join(
            path.relative_to(root).as_posix().encode() + path.read_bytes()
            for path in sorted(root.rglob("*"))
            if path.is_file()
        )
    ).hexdigest()


@pytest.fixture
def class_folder(tmp_path):
    images, labels = _images(12, seed=5)
    for index, (image, label) in enumerate(zip(images, labels)):
        write_image(tmp_path / "src" / CLASSES[label] / f"{index}.png", image)
    return tmp_path / "src"


def test_apply_writes_a_fixed_copy_and_never_changes_the_source(class_folder, tmp_path):
    before = _tree_digest(class_folder)
    fixes = [
        Fix("dark/0.png", "dark", "relabel", "top"),
        Fix("top/1.png", "top", "drop"),
        Fix("bottom/2.png", "bottom", "keep"),
    ]
    counts = cleaning.apply_fixes(class_folder, fixes, tmp_path / "fixed")
    assert counts == {"kept": 10, "relabelled": 1, "dropped": 1}
    out = tmp_path / "fixed"
    assert (out / "top" / "0.png").read_bytes() == (class_folder / "dark" / "0.png").read_bytes()
    assert not (out / "dark" / "0.png").exists() and not (out / "top" / "1.png").exists()
    assert sum(1 for path in out.rglob("*.png")) == 11
    assert _tree_digest(class_folder) == before
    with pytest.raises(ConfigError, match="already exists"):
        cleaning.apply_fixes(class_folder, fixes, out)
    with pytest.raises(ConfigError, match="outside the source folder"):
        cleaning.apply_fixes(class_folder, fixes, class_folder / "fixed")
    with pytest.raises(ConfigError, match="not in"):
        cleaning.apply_fixes(class_folder, [Fix("dark/99.png", "dark", "drop")], tmp_path / "other")
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".cnnviz-fixed-*"))


def test_cli_audit_prints_json_and_apply_writes_the_fixed_folder(capsys, class_folder, tmp_path):
    status, out, err = _run(capsys, "audit", str(class_folder), "--folds", "2", "--budget", "4", "--json")
    assert status == 0, err
    document = _last_json(out)
    data = cnnviz.load_dataset(str(class_folder), seed=0)
    # The training and validation images are audited; the test split is left alone.
    assert document["images"] == len(data.train) + len(data.validation) < 12
    assert {"suspects", "duplicates", "verdict"} <= set(document)
    fixes = tmp_path / "fixes.csv"
    fixes.write_text("file,given,action,new_label\ndark/0.png,dark,relabel,top\n")
    status, out, err = _run(
        capsys, "audit", str(class_folder), "--apply", str(fixes), "--out", str(tmp_path / "fixed")
    )
    assert status == 0, err
    assert "1 relabelled" in out and (tmp_path / "fixed" / "top" / "0.png").exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--apply", "fixes.csv"], "--apply needs --out DIR"),
        (["--out", "x"], "--out is for --apply"),
        (["--folds", "1"], "--folds"),
        (["--budget", "0"], "--budget"),
    ],
)
def test_cli_audit_bad_flags_get_clear_messages(capsys, class_folder, argv, message):
    status, _, err = _run(capsys, "audit", str(class_folder), *argv)
    assert status != 0 and message in err
