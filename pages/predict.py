"""Home / Predict: upload an image, see what the default model thinks it is."""

from pathlib import Path

import plotly.express as px
import streamlit as st

import cnnviz

ASSETS = Path(__file__).resolve().parent.parent / "assets"
# Model choice -> (model file, prefix of its sample images in assets/samples).
CHOICES = {
    "Shapes (circle, square, triangle, star)": ("shapes.keras", "shape_"),
    "Handwritten digits": ("digits.keras", "digit_"),
}


@st.cache_resource(show_spinner="Loading the model...")
def load_default_model(file_name: str):
    return cnnviz.load_model(ASSETS / "models" / file_name)


st.title("What does the network see?")
st.write(
    "Upload an image and a small convolutional network classifies it. "
    "The bars show how sure it is about each class."
)
choice = st.selectbox("Model", list(CHOICES), key="predict.model")
model_file, sample_prefix = CHOICES[choice]
model = load_default_model(model_file)
upload = st.file_uploader(
    "Upload an image", type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"], key="predict.upload"
)
samples = {
    path.stem.removeprefix(sample_prefix): path
    for path in sorted((ASSETS / "samples").glob(f"{sample_prefix}*.png"))
}
sample = st.radio(
    "...or try a sample", list(samples), horizontal=True, key="predict.sample", disabled=upload is not None
)
if upload is not None:
    data, caption = upload.getvalue(), upload.name
else:
    data, caption = samples[sample].read_bytes(), f"sample: {sample}"
try:
    image = cnnviz.load_image(data)
except cnnviz.ImageError as error:
    st.error(f"{error} Try another file.")
    st.stop()
prediction = cnnviz.predict(model, image, top_k=5)[0]
left, right = st.columns([1, 2])
left.image(image, caption=caption, width="stretch")
right.metric("Prediction", prediction["class"], f"{prediction['probability']:.1%} sure")
chart = px.bar(
    x=[entry["probability"] for entry in prediction["top_k"]],
    y=[entry["class"] for entry in prediction["top_k"]],
    orientation="h",
    labels={"x": "probability", "y": ""},
    range_x=[0, 1],
)
chart.update_layout(yaxis={"autorange": "reversed"}, height=260, margin={"l": 0, "r": 0, "t": 10, "b": 0})
right.plotly_chart(chart, key="predict.chart")
