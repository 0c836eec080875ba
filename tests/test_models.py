import numpy as np
import pytest

import cnnviz
from cnnviz.errors import ConfigError
from cnnviz.models import ModelConfig, build_model, count_flops, describe_model, preset_config


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


def test_config_is_frozen_hashable_and_roundtrips():
    config = ModelConfig(filters=8, conv_blocks=2)
    assert hash(config) == hash(ModelConfig(filters=8, conv_blocks=2))
    with pytest.raises(AttributeError):
        config.filters = 3
    assert ModelConfig.from_dict(config.to_dict()) == config


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
        ({"head": "mlp"}, "head"),
    ],
)
def test_bad_config_values_name_the_field(changes, field):
    with pytest.raises(ConfigError, match=field):
        ModelConfig(**changes)


def test_unknown_preset():
    with pytest.raises(ConfigError, match="unknown preset"):
        preset_config("resnet9000")


def test_every_config_field_changes_the_model():
    base = ModelConfig(input_shape=(32, 32, 3))
    baseline = build_model(base).count_params()
    for changes in (
        {"filters": 8},
        {"conv_blocks": 2},
        {"kernel_size": 5},
        {"batch_norm": False},
        {"dense_units": 16},
        {"head": "flatten"},
        {"convs_per_block": 2},
    ):
        assert build_model(base.replace(**changes)).count_params() != baseline, changes
    layers = describe_model(build_model(base.replace(activation="gelu", block_dropout=0.2)))
    assert any(row["name"] == "drop1" for row in layers)
    assert any(row["kind"] == "Activation" for row in layers)


def test_top_level_api_is_lazy_and_complete():
    for name in (
        "load_dataset",
        "build_model",
        "train",
        "evaluate",
        "predict",
        "load_image",
        "save_model",
        "load_model",
    ):
        assert callable(getattr(cnnviz, name))


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
        cnnviz.ModelConfig(conv_blocks=2, pooled_blocks=3)
