"""Build: design the network layer by layer and see its shape, size and cost."""

import pandas as pd
import streamlit as st

import cnnviz
from cnnviz import models, plotting
from cnnviz.pretrained import BACKBONE_SIZES, BACKBONES, backbone_size
from ui import compute
from ui.data import current_data_or_stop
from ui.models import BUILD_CONFIG_KEY, DESIGN_LABELS, ensure_shell
from ui.state import valid_choice

ensure_shell()
st.title("Build")
st.write(
    "A CNN stacks blocks: convolutions find patterns, pooling halves the image so the next block sees a larger "
    "area, and a small head turns the final maps into one score per class. Start from a preset and change any "
    "part; the table and diagram update as you go."
)
data_name, data = current_data_or_stop()

CNN_FIELDS = (
    "conv_blocks",
    "filters",
    "convs_per_block",
    "kernel_size",
    "stem_stride",
    "batch_norm",
    "activation",
    "block_dropout",
    "head",
    "dense_units",
    "dense_dropout",
)
valid_choice("build.preset", models.PRESETS)
st.session_state.setdefault("build.preset", models.DEFAULT_PRESET)
preset = st.selectbox(
    "Start from a preset", list(models.PRESETS), format_func=DESIGN_LABELS.get, key="build.preset"
)
base = cnnviz.preset_config(preset, data.image_shape, data.num_classes)
if st.session_state.get("build.loaded_preset") != (preset, data.image_shape):
    # A new preset (or new data) resets the sliders to it.
    st.session_state["build.loaded_preset"] = (preset, data.image_shape)
    for field in CNN_FIELDS:
        st.session_state[f"build.{field}"] = getattr(base, field)
    st.session_state["build.pooled_blocks"] = (
        base.conv_blocks if base.pooled_blocks is None else base.pooled_blocks
    )
    st.session_state["build.fine_tune_layers"] = base.fine_tune_layers
    st.session_state["build.imagenet"] = base.backbone_weights == "imagenet"
    st.session_state["build.backbone_size"] = backbone_size(max(data.image_shape[:2]), base.backbone_size)

if base.backbone is not None:
    st.info(
        f"**Transfer learning.** {BACKBONES[base.backbone].label} already learnt to see edges, textures and "
        "object parts on 1.3 million ImageNet photos. Its layers are reused as they are (frozen); only a new "
        "last layer learns your classes, so a few minutes on a CPU go a long way. Unfreeze its last layers to "
        "fine-tune them too."
    )
    left, middle, right = st.columns(3)
    imagenet = left.toggle(
        "Start from ImageNet weights",
        key="build.imagenet",
        help=f"Off: the same network with random weights. On: downloads about "
        f"{BACKBONES[base.backbone].megabytes:g} MB once, into the Keras cache.",
    )
    fine_tune = middle.slider(
        "Fine-tune the last N layers", 0, 60, key="build.fine_tune_layers", help="0 trains only the new head."
    )
    size = right.select_slider(
        "Resize images to",
        list(BACKBONE_SIZES),
        key="build.backbone_size",
        help="Larger: more detail, slower.",
    )
    dense_dropout = right.slider("Dropout before the classes", 0.0, 0.6, step=0.05, key="build.dense_dropout")
    changes = dict(
        backbone_weights="imagenet" if imagenet else None,
        fine_tune_layers=fine_tune,
        backbone_size=size,
        dense_dropout=dense_dropout,
    )
else:
    left, middle, right = st.columns(3)
    conv_blocks = left.slider("Conv blocks", 1, 6, key="build.conv_blocks")
    filters = left.select_slider(
        "Filters in block 1 (doubles each block)", [4, 8, 16, 32, 64, 128], key="build.filters"
    )
    convs_per_block = left.slider("Convolutions per block", 1, 3, key="build.convs_per_block")
    kernel_size = left.select_slider("Kernel size", [1, 3, 5, 7], key="build.kernel_size")
    stem_stride = middle.select_slider("First convolution stride", [1, 2], key="build.stem_stride")
    pooled_blocks = middle.slider(
        "Blocks followed by pooling",
        0,
        6,
        key="build.pooled_blocks",
        help="Fewer keeps a larger last feature map: finer heatmaps, more computation.",
    )
    batch_norm = middle.toggle("Batch normalization", key="build.batch_norm")
    activation = middle.selectbox("Activation", list(models.ACTIVATIONS), key="build.activation")
    block_dropout = right.slider("Dropout after each block", 0.0, 0.6, step=0.05, key="build.block_dropout")
    head = right.selectbox(
        "Head",
        list(models.HEADS),
        key="build.head",
        format_func={"global_avg": "global average pooling", "flatten": "flatten"}.get,
    )
    dense_units = right.select_slider(
        "Hidden dense units (0 = none)", [0, 32, 64, 128, 256, 512], key="build.dense_units"
    )
    dense_dropout = right.slider("Dropout before the classes", 0.0, 0.6, step=0.05, key="build.dense_dropout")
    changes = dict(
        conv_blocks=conv_blocks,
        filters=filters,
        convs_per_block=convs_per_block,
        kernel_size=kernel_size,
        stem_stride=stem_stride,
        pooled_blocks=min(pooled_blocks, conv_blocks),
        batch_norm=batch_norm,
        activation=activation,
        block_dropout=block_dropout,
        head=head,
        dense_units=dense_units,
        dense_dropout=dense_dropout,
    )

try:
    config = base.replace(**changes, name="custom")
except cnnviz.CnnvizError as error:
    st.error(f"{error} Move a slider back.")
    st.stop()
st.session_state[BUILD_CONFIG_KEY] = config


rows, parameters, flops = compute.describe_design(config)
top = st.columns(3)
top[0].metric("Parameters", f"{parameters:,}")
top[1].metric("FLOPs per image", f"{flops / 1e6:.1f} M")
top[2].metric("Input", f"{data.image_shape[0]}x{data.image_shape[1]}x{data.image_shape[2]} ({data_name})")
st.plotly_chart(plotting.architecture_figure(rows), key="build.diagram")
table = pd.DataFrame(
    [
        {
            "layer": r["name"],
            "type": r["kind"],
            "output": str(r["output_shape"][1:]),
            "parameters": r["parameters"],
        }
        for r in rows
    ]
)
st.dataframe(table, hide_index=True, key="build.table")
st.caption("Train this design on the Train page: choose **custom (from Build)** as the model design.")
