"""Fix your data: the audit finds planted label errors, duplicates and outliers; fixes apply without touching the source."""

import hashlib
import json
import threading
from pathlib import Path

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
WRONG = [*FLIPPED, 120]  # 120 becomes a copy of 121, a "top" image, and keeps its label "dark"


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
    labels[120] = labels[121]  # its true class is now "top"
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
    # Epochs, not seconds: the same models on a fast machine and a slow one.
    return data, labels, cleaning.audit(data, folds=3, epochs=10, seed=0)


def test_the_out_of_fold_models_give_the_planted_wrong_labels_the_lowest_scores(planted):
    data, truth, found = planted
    assert found.trusted and found.accuracy >= 0.8
    assert len(found.fold_accuracy) == 3
    # Out-of-fold: each probability row comes from a model that never saw that image.
    assert found.probabilities.shape == (150, 3)
    np.testing.assert_allclose(found.probabilities.sum(axis=1), 1.0, atol=1e-4)
    # The probability of the given label, by hand: the 9 wrong labels (8 flipped, and image 120, a copy
    # of a "top" image labelled "dark") have the 9 lowest.
    given = found.probabilities[np.arange(150), data.train.labels]
    assert set(np.argsort(given)[:9].tolist()) == set(WRONG)


def test_every_suspect_is_a_planted_wrong_label_and_is_told_its_true_class(planted):
    data, truth, found = planted
    # cleanlab's confident learning is cautious: it may leave some out (7 to 9 of the 9 flagged with seeds
    # 0-5 at 10 epochs), and flagged no right label in any of those runs.
    caught = [row for row in found.suspects if row["index"] in WRONG]
    assert caught == found.suspects and len(caught) >= 5
    # Each caught one names its file and its given label, and suggests its true class.
    assert [row["suggested"] for row in caught] == [CLASSES[truth[row["index"]]] for row in caught]
    assert [row["given"] for row in caught] == [CLASSES[data.train.labels[row["index"]]] for row in caught]
    assert [row["file"] for row in caught] == [data.train.files[row["index"]] for row in caught]
    scores = [row["score"] for row in found.suspects]
    assert scores == sorted(scores, reverse=True) and all(0 <= score <= 1 for score in scores)


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
    found = cleaning.audit(data, folds=2, epochs=3, seed=0)
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


def test_each_fold_trains_120_s_shared_by_default_the_epochs_alone_when_given_or_whichever_ends_first():
    default = cleaning.fold_config(3, None, None, seed=0)
    assert (default.time_budget, default.epochs) == (40.0, None)
    epochs = cleaning.fold_config(3, None, 10, seed=0)
    assert (epochs.time_budget, epochs.epochs) == (None, 10)
    both = cleaning.fold_config(4, 60, 10, seed=0)
    assert (both.time_budget, both.epochs, both.validation_split) == (15.0, 10, 0.0)
    for budget in (0, -5, "60", True):
        with pytest.raises(ConfigError, match="budget must be a positive number of seconds"):
            cleaning.audit(_images(12, seed=5), folds=2, budget=budget)


@pytest.mark.parametrize(
    "settings",
    [{"epochs": 3}, {"budget": 12}, {"epochs": 3, "budget": 600}],
    ids=["epochs", "budget", "both"],
)
def test_the_audit_reports_progress_that_climbs_through_each_folds_share_then_ranks(settings):
    images, labels = _images(60, seed=6)
    data = Dataset(
        "progress",
        CLASSES,
        Split(images, labels),
        Split(images[:0], labels[:0]),
        Split(images[:0], labels[:0]),
    )
    reports = []
    cleaning.audit(
        data, folds=2, seed=0, progress=lambda message, share: reports.append((message, share)), **settings
    )
    shares = [share for _, share in reports]
    assert shares == sorted(shares) and shares[0] >= 0 and shares[-1] == pytest.approx(0.97)
    assert reports[-1][0] == "Ranking the labels"
    for fold in (0, 1):
        inside = [share for message, share in reports if message.startswith(f"Training fold {fold + 1} of 2")]
        assert all(0.95 * fold / 2 <= share <= 0.95 * (fold + 1) / 2 + 1e-9 for share in inside)
        assert any(0.95 * fold / 2 < share < 0.95 * (fold + 1) / 2 for share in inside)  # within the fold


def test_a_stopped_audit_raises_and_keeps_nothing():
    images, labels = _images(30, seed=4)
    data = Dataset(
        "stop", CLASSES, Split(images, labels), Split(images[:0], labels[:0]), Split(images[:0], labels[:0])
    )
    stop = threading.Event()
    stop.set()
    with pytest.raises(cleaning.AuditStopped, match="nothing was kept"):
        cleaning.audit(data, folds=2, budget=2, stop_event=stop)


def test_each_fold_trains_the_preset_fitted_to_its_own_training_images_with_the_changes(monkeypatch):
    class Trained(Exception):
        pass

    designs = []

    def first_fold_only(design, data, config, **options):
        designs.append(design)
        raise Trained

    monkeypatch.setattr(cnnviz, "train", first_fold_only)
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 255, (6000, 8, 8, 1), dtype=np.uint8), np.arange(6000) % 2
    data = Dataset(
        "many",
        ("a", "b"),
        Split(images, labels),
        Split(images[:0], labels[:0]),
        Split(images[:0], labels[:0]),
    )
    for folds in (2, 3):  # folds of 3,000 and of 4,000 training images
        with pytest.raises(Trained):
            cleaning.audit(data, folds=folds, epochs=1, changes={"filters": 4})
    # Many small images from 4,000 up, as cnnviz.train fits a preset; the change applies in both.
    assert [(design.convs_per_block, design.filters) for design in designs] == [(1, 4), (2, 4)]
    with pytest.raises(ConfigError, match="wings"):
        cleaning.audit(data, folds=2, epochs=1, changes={"wings": 2})  # told before any training
    assert len(designs) == 2


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


def test_apply_writes_a_fixed_copy_with_the_same_test_split_and_never_changes_the_source(
    class_folder, tmp_path
):
    before = _tree_digest(class_folder)
    data = cnnviz.load_dataset(str(class_folder), seed=0)
    relabel = next(file for file in data.train.files if not file.startswith("bottom/"))
    drop, keep = [file for file in data.train.files if file != relabel][:2]
    fixes = [Fix(relabel, "", "relabel", "bottom"), Fix(drop, "", "drop"), Fix(keep, "", "keep")]
    counts = cleaning.apply_fixes(class_folder, fixes, tmp_path / "fixed", data=data)
    out = tmp_path / "fixed"
    training = len(data.train) + len(data.validation)
    assert counts == {"kept": training - 2, "relabelled": 1, "dropped": 1, "test": len(data.test)}
    assert (out / "train" / "bottom" / Path(relabel).name).read_bytes() == (
        class_folder / relabel
    ).read_bytes()
    assert Path(drop).name not in {path.name for path in out.rglob("*.png")}
    reloaded = cnnviz.load_dataset(str(out), validation_split=0.0)
    assert sorted(Path(f).name for f in reloaded.test.files) == sorted(Path(f).name for f in data.test.files)
    assert _tree_digest(class_folder) == before
    with pytest.raises(ConfigError, match="already exists"):
        cleaning.apply_fixes(class_folder, fixes, out, data=data)
    with pytest.raises(ConfigError, match="outside the source folder"):
        cleaning.apply_fixes(class_folder, fixes, class_folder / "fixed", data=data)
    with pytest.raises(ConfigError, match="is not an image in"):
        cleaning.apply_fixes(
            class_folder, [Fix("dark/99.png", "dark", "drop")], tmp_path / "other", data=data
        )
    with pytest.raises(ConfigError, match="is a test image"):
        cleaning.apply_fixes(
            class_folder, [Fix(data.test.files[0], "", "drop")], tmp_path / "other", data=data
        )
    with pytest.raises(ConfigError, match="new_label must be one of"):
        cleaning.apply_fixes(
            class_folder, [Fix(keep, "", "relabel", "../../x")], tmp_path / "other", data=data
        )
    assert not (tmp_path / "other").exists() and not list(tmp_path.glob(".cnnviz-fixed-*"))


def test_apply_on_a_train_and_test_folder_tree_matches_the_audits_file_names(tmp_path):
    images, labels = _images(18, seed=6)
    for index, (image, label) in enumerate(zip(images, labels)):
        split = "test" if index % 6 == 0 else "train"
        write_image(tmp_path / "src" / split / CLASSES[label] / f"{index}.png", image)
    data = cnnviz.load_dataset(str(tmp_path / "src"), seed=0)
    assert all(file.startswith("train/") for file in data.train.files)  # relative to the source, as it is
    moved = data.train.files[0]
    counts = cleaning.apply_fixes(
        tmp_path / "src", [Fix(moved, "", "relabel", "top")], tmp_path / "fixed", data=data
    )
    assert counts["test"] == 3 and (tmp_path / "fixed" / "train" / "top" / Path(moved).name).exists()


def test_cli_audit_prints_json_lists_unreadable_files_and_apply_writes_the_fixed_folder(
    capsys, class_folder, tmp_path
):
    (class_folder / "top" / "broken.png").write_bytes(b"not a png")
    status, out, err = _run(capsys, "audit", str(class_folder), "--folds", "2", "--epochs", "2", "--json")
    assert status == 0, err
    document = _last_json(out)
    assert [row["file"] for row in document["unreadable"]] == ["top/broken.png"]
    (class_folder / "top" / "broken.png").unlink()
    data = cnnviz.load_dataset(str(class_folder), seed=0)
    # The training and validation images are audited; the test split is left alone.
    assert document["images"] == len(data.train) + len(data.validation) < 12
    assert {"suspects", "duplicates", "verdict"} <= set(document)
    moved = next(file for file in data.train.files if not file.startswith("top/"))
    fixes = tmp_path / "fixes.csv"
    fixes.write_text(f"file,given,action,new_label\n{moved},{moved.split('/')[0]},relabel,top\n")
    status, out, err = _run(
        capsys, "audit", str(class_folder), "--apply", str(fixes), "--out", str(tmp_path / "fixed")
    )
    assert status == 0, err
    assert "1 relabelled" in out and (tmp_path / "fixed" / "train" / "top" / Path(moved).name).exists()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--apply", "fixes.csv"], "--apply needs --out DIR"),
        (["--out", "x"], "--out is for --apply"),
        (["--folds", "1"], "--folds"),
        (["--budget", "0"], "--budget"),
        (["--epochs", "0"], "--epochs"),
    ],
)
def test_cli_audit_bad_flags_get_clear_messages(capsys, class_folder, argv, message):
    status, _, err = _run(capsys, "audit", str(class_folder), *argv)
    assert status != 0 and message in err


def test_the_fixed_data_zip_loads_back_with_the_same_test_images(planted, tmp_path):
    data, _, _ = planted
    fixed = cleaning.fixed_dataset(
        data, [Fix("dark/6.png", "dark", "relabel", "top"), Fix("top/7.png", "top", "drop")]
    )
    archive = tmp_path / "fixed.zip"
    archive.write_bytes(cleaning.dataset_zip(fixed))
    loaded = cnnviz.load_dataset(str(archive), validation_split=0.0)
    assert sorted(loaded.class_names) == sorted(CLASSES)
    assert len(loaded.train) == len(fixed.train) and len(loaded.test) == len(data.test)
    assert any(
        name.endswith("top/6.png") for name in loaded.train.files
    )  # relabelled: in its new class folder
    assert not any(name.endswith("/7.png") for name in loaded.train.files)  # dropped
    # The test split comes back as it was: the same images, the same labels.
    order = np.argsort([int(name.split("-")[-1].split(".")[0]) for name in loaded.test.files])
    np.testing.assert_array_equal(loaded.test.images[order], data.test.images)
    np.testing.assert_array_equal(
        [loaded.class_names[label] for label in loaded.test.labels[order]],
        [CLASSES[label] for label in data.test.labels],
    )


def test_a_fixed_dataset_finds_a_validation_image_by_file_and_keeps_it_in_validation():
    images, labels = _images(12, seed=7)
    files = [f"{CLASSES[label]}/{index}.png" for index, label in enumerate(labels)]
    data = Dataset(
        "split",
        CLASSES,
        Split(images[:8], labels[:8], None, files[:8]),
        Split(images[8:], labels[8:], None, files[8:]),
        Split(images[:0], labels[:0]),
    )
    fixed = cleaning.fixed_dataset(
        data, [Fix(files[9], "top", "relabel", "dark"), Fix(files[2], "bottom", "drop")]
    )
    assert fixed.validation.files == files[8:] and fixed.validation.labels[1] == CLASSES.index("dark")
    np.testing.assert_array_equal(fixed.validation.images, images[8:])
    assert fixed.train.files == files[:2] + files[3:8]
    np.testing.assert_array_equal(fixed.train.labels, labels[[0, 1, 3, 4, 5, 6, 7]])
