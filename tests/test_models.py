import ast
import dataclasses
from pathlib import Path

import numpy as np
import pytest

import cnnviz
from cnnviz.errors import ConfigError
from cnnviz.models import (
    PRESETS,
    ConvNetConfig,
    HeadConfig,
    TransferConfig,
    build_model,
    count_flops,
    describe_model,
    preset_config,
)

from .conftest import run_in_a_fresh_python

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "preset, shape, classes, parameters",
    [
        ("tutorial_basic", (32, 32, 3), 10, 477_994),
        ("keras_mnist", (28, 28, 1), 10, 34_826),
    ],
)
def test_seed_nets_parameter_counts(preset, shape, classes, parameters):
    model = build_model(preset_config(preset, shape, classes))
    assert model.count_params() == parameters


@pytest.mark.parametrize("preset", ["tutorial_basic", "tutorial_improved", "keras_mnist", "fast"])
def test_every_preset_builds_with_named_layers(preset):
    model = build_model(preset_config(preset, (32, 32, 3), 5))
    names = [layer.name for layer in model.layers]
    assert names[:3] == ["image", "rescale", "conv1"]
    assert names[-2:] == ["logits", "probs"]
    assert model.get_layer("probs").input is model.get_layer("logits").output
    assert model.output_shape == (None, 5)
    probabilities = np.asarray(model(np.zeros((2, 32, 32, 3), np.float32)))
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=1e-5)


def test_flops_of_keras_mnist_by_hand():
    model = build_model(preset_config("keras_mnist", (28, 28, 1), 10))
    conv1 = 2 * 26 * 26 * 32 * 9 * 1
    conv2 = 2 * 11 * 11 * 64 * 9 * 32
    dense = 2 * 1600 * 10
    flops = count_flops(model)
    assert conv1 + conv2 + dense <= flops <= 1.05 * (conv1 + conv2 + dense)


def test_config_is_frozen_hashable_and_its_dict_rebuilds_it():
    config = ConvNetConfig(filters=8, conv_blocks=2, head=HeadConfig(dense_units=16))
    assert hash(config) == hash(ConvNetConfig(filters=8, conv_blocks=2, head=HeadConfig(dense_units=16)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.filters = 3
    data = config.to_dict()
    assert data["family"] == "convnet" and data["dense_units"] == 16
    rebuilt = ConvNetConfig(input_shape=(64, 64, 3)).replace(
        **{k: v for k, v in data.items() if k != "family"}
    )
    assert rebuilt == config


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"kernel_size": 4}, "kernel_size"),
        ({"activation": "sigmoidish"}, "activation"),
        ({"block_dropout": 1.0}, "block_dropout"),
        ({"conv_blocks": 0}, "conv_blocks"),
        ({"input_shape": (28, 28, 2)}, "input_shape"),
        ({"input_shape": (16, 16, 1), "conv_blocks": 6, "padding": "valid"}, "shrink"),
        ({"num_classes": 1}, "num_classes"),
        ({"pooling": "mlp"}, "pooling"),
        ({"dense_units": -1}, "dense_units"),
    ],
)
def test_bad_config_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        ConvNetConfig().replace(**changes)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("resnet9000")


def _layer_named(model, prefix):
    return [layer for layer in model.layers if layer.name.startswith(prefix)]


# What each ConvNet field must change in the built model, checked directly.
FIELD_EFFECTS = {
    "input_shape": ((48, 48, 1), lambda m: m.input_shape == (None, 48, 48, 1)),
    "num_classes": (7, lambda m: m.output_shape == (None, 7)),
    "conv_blocks": (2, lambda m: len(_layer_named(m, "conv")) == 2),
    "filters": (8, lambda m: m.get_layer("conv1").filters == 8),
    "max_filters": (40, lambda m: m.get_layer("conv3").filters == 40),
    "convs_per_block": (2, lambda m: len(_layer_named(m, "conv")) == 6),
    "kernel_size": (5, lambda m: m.get_layer("conv1").kernel_size == (5, 5)),
    "stem_stride": (2, lambda m: m.get_layer("conv1").strides == (2, 2)),
    "padding": ("valid", lambda m: m.get_layer("conv1").padding == "valid"),
    "batch_norm": (False, lambda m: not _layer_named(m, "bn")),
    "activation": ("gelu", lambda m: m.get_layer("act1").activation.__name__ == "gelu"),
    "block_dropout": (
        0.2,
        lambda m: [layer.rate for layer in _layer_named(m, "drop1")] == [pytest.approx(0.2)],
    ),
    "pooled_blocks": (1, lambda m: [layer.name for layer in _layer_named(m, "pool")] == ["pool1"]),
    "head": (
        HeadConfig(pooling="flatten"),
        lambda m: _layer_named(m, "flatten") and not _layer_named(m, "global"),
    ),
    "name": ("mine", lambda m: m.name == "mine"),
}
HEAD_EFFECTS = {
    "pooling": ("flatten", lambda m: bool(_layer_named(m, "flatten"))),
    "dense_units": (16, lambda m: [layer.units for layer in _layer_named(m, "dense")] == [16]),
    "dense_dropout": (
        0.3,
        lambda m: [layer.rate for layer in _layer_named(m, "drop_dense")] == [pytest.approx(0.3)],
    ),
}


def test_every_convnet_and_head_field_changes_the_model_as_it_says():
    base = ConvNetConfig(input_shape=(32, 32, 3))
    assert set(FIELD_EFFECTS) == {field.name for field in dataclasses.fields(ConvNetConfig)}
    assert set(HEAD_EFFECTS) == {field.name for field in dataclasses.fields(HeadConfig)}
    baseline = build_model(base)
    for field, (value, holds) in {**FIELD_EFFECTS, **HEAD_EFFECTS}.items():
        assert not holds(baseline), f"{field}: the baseline already shows the change"
        assert holds(build_model(base.replace(**{field: value}))), field


def test_a_field_of_the_other_family_cannot_be_set():
    transfer = preset_config("transfer_mobilenet_v2", (64, 64, 3), 4)
    with pytest.raises(ConfigError, match="conv_blocks does not apply to a transfer design"):
        transfer.replace(conv_blocks=5)
    with pytest.raises(ConfigError, match="backbone does not apply to a convnet design"):
        preset_config("fast", (64, 64, 3), 4, backbone="mobilenet_v2")
    with pytest.raises(TypeError):
        TransferConfig(conv_blocks=3)  # not even a constructor argument
    assert transfer.replace(dense_units=32).head.dense_units == 32  # the shared head is settable on both


def test_presets_are_data_and_the_fast_rules_apply_by_image_size():
    assert {preset.family for preset in PRESETS.values()} == {ConvNetConfig, TransferConfig}
    assert all(preset.label for preset in PRESETS.values())
    large, small = preset_config("fast", (64, 64, 3), 4), preset_config("fast", (28, 28, 1), 10)
    assert (large.stem_stride, small.stem_stride) == (2, 1)  # stride-2 stem from 48 px
    assert large.pooled_blocks == large.conv_blocks - 1  # the last block keeps its map
    assert preset_config("fast", (64, 64, 3), 4, pooled_blocks=1).pooled_blocks == 1
    other = dataclasses.replace(PRESETS["fast"], name="fast_copy")
    assert other.config((64, 64, 3), 4).replace(name="fast") == large  # the rules live in the data


def test_the_fast_preset_gives_many_small_images_two_convolutions_per_block_and_others_one():
    def blocks(shape, num_images, **overrides):
        return preset_config("fast", shape, 10, num_images=num_images, **overrides).convs_per_block

    many = preset_config("fast", (28, 28, 1), 10, num_images=4000)  # 4,000 or more images under 48 px a side
    assert (many.convs_per_block, many.max_filters) == (2, 64)
    assert preset_config("fast", (28, 28, 1), 10).max_filters == ConvNetConfig.max_filters
    assert preset_config("fast", (28, 28, 1), 10, num_images=4000, max_filters=128).max_filters == 128
    assert blocks((28, 28, 1), 3999) == 1
    assert blocks((28, 28, 1), None) == 1  # not known: the plain design
    assert blocks((47, 90, 3), 50000) == 2  # the shorter side decides
    assert blocks((48, 48, 3), 50000) == 1
    assert blocks((28, 28, 1), 8000, convs_per_block=1) == 1  # a given value wins
    assert preset_config("keras_mnist", (28, 28, 1), 10, num_images=8000) == preset_config(
        "keras_mnist", (28, 28, 1), 10
    )  # the rule is the fast preset's


def test_the_same_seed_builds_the_same_weights_without_touching_global_random_state():
    np.random.seed(1)
    draw = np.random.random()
    np.random.seed(1)
    config = ConvNetConfig(input_shape=(16, 16, 3), conv_blocks=2, filters=4)
    first, second = build_model(config, seed=3), build_model(config, seed=3)
    other = build_model(config, seed=4)
    for a, b in zip(first.get_weights(), second.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.get_layer("conv1").kernel, other.get_layer("conv1").kernel)
    assert not np.array_equal(first.get_layer("conv1").kernel, first.get_layer("conv2").kernel[..., :3, :4])
    assert np.random.random() == draw


def test_import_cnnviz_loads_no_tensorflow_and_every_export_resolves():
    code = (
        "import sys, cnnviz\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'loaded at import'\n"
        "from cnnviz import TrainConfig, ConvNetConfig, runs\n"
        "assert 'tensorflow' not in sys.modules, 'configs loaded TensorFlow'\n"
        "missing = [name for name in cnnviz.__all__ if getattr(cnnviz, name, None) is None]\n"
        "assert not missing, missing\n"
    )
    run_in_a_fresh_python(code)


def test_the_public_face_lists_each_name_once_and_for_type_checkers_too():
    tree = ast.parse((ROOT / "cnnviz" / "__init__.py").read_text())
    checked = next(
        node for node in tree.body if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
    )
    imported = {
        (node.module, alias.name)
        for node in ast.walk(checked)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }
    assert imported == set((module, name) for name, module in cnnviz._EXPORTS.items())


def test_version_has_one_source():
    from importlib import metadata

    assert cnnviz.__version__ == metadata.version("cnnviz")
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'version = "{cnnviz.__version__}"' in pyproject


def test_pooled_blocks_sets_the_last_map_size():
    # fast at 64 px: stride-2 stem (32), then pooling after blocks 1..3 -> 4x4 by default.
    default = cnnviz.build_model(cnnviz.preset_config("fast", (64, 64, 3), 4))
    assert default.get_layer("act4").output.shape[1:3] == (4, 4)
    finer = cnnviz.build_model(cnnviz.preset_config("fast", (64, 64, 3), 4, pooled_blocks=2))
    assert finer.get_layer("act4").output.shape[1:3] == (8, 8)
    assert "pool3" not in [layer.name for layer in finer.layers]
    # Fewer blocks keep the fast rule: every block but the last pools.
    two = cnnviz.build_model(cnnviz.preset_config("fast", (64, 64, 3), 4, conv_blocks=2))
    assert [layer.name for layer in two.layers if layer.name.startswith("pool")] == ["pool1"]
    with pytest.raises(cnnviz.ConfigError, match="pooled_blocks"):
        cnnviz.ConvNetConfig(conv_blocks=2, pooled_blocks=3)


def test_describe_model_rows():
    rows = describe_model(build_model(ConvNetConfig(input_shape=(16, 16, 3), conv_blocks=1, filters=4)))
    assert [row["name"] for row in rows][:3] == ["image", "rescale", "conv1"]
    assert (
        sum(row["parameters"] for row in rows)
        == build_model(ConvNetConfig(input_shape=(16, 16, 3), conv_blocks=1, filters=4)).count_params()
    )
