"""Build: design the network layer by layer and see its shape, size and cost."""

import pandas as pd
import streamlit as st

import cnnviz
from cnnviz import plotting
from cnnviz.pretrained import BACKBONES
from ui import compute, runtime, settings
from ui.data import current_data_or_stop
from ui.session import studio

runtime.enter_page()
st.title("Build")
st.write(
    "A CNN stacks blocks: convolutions find patterns, pooling halves the image so the next block sees a larger "
    "area, and a small head turns the final maps into one score per class. Start from a preset and change any "
    "part; the table and diagram update as you go."
)
data_name, data = current_data_or_stop()
session = studio()

preset = settings.draw("build.preset")
base = cnnviz.preset_config(
    preset, data.image_shape, data.num_classes, num_images=cnnviz.runs.training_images(data)
)
if session.build_loaded_for != (preset, base):
    # A new preset (or new data) resets the sliders to it; on the first visit, a shared link's values stay.
    from_link = session.build_loaded_for is None and any(
        key in st.session_state for key in settings.design_widgets(base)
    )
    session.build_loaded_for = (preset, base)
    if not from_link:
        settings.load_design(base)

if isinstance(base, cnnviz.TransferConfig):
    st.info(
        f"**Transfer learning.** {BACKBONES[base.backbone].label} already learnt to see edges, textures and "
        "object parts on 1.3 million ImageNet photos. Its layers are reused as they are (frozen); only a new "
        "last layer learns your classes, so a few minutes on a CPU go a long way. Unfreeze its last layers to "
        f"fine-tune them too. ImageNet weights download once (about {BACKBONES[base.backbone].megabytes:g} MB) "
        "into the Keras cache."
    )
elif preset == "fast" and (note := cnnviz.runs.defaults_note(data)) is not None:
    st.caption(note)
settings.draw_in_columns(settings.design_widgets(base), st.columns(3))
try:
    config = base.replace(**settings.design_changes(base), name="custom")
except cnnviz.CnnvizError as error:
    st.error(f"{error} Move a slider back.")
    st.stop()
session.build_design = config

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
