"""Home / Predict: upload an image, see what the default model thinks it is."""

from pathlib import Path

import plotly.express as px
import streamlit as st

import cnnviz

MODELS = Path(__file__).resolve().parent.parent / "assets" / "models"
CHOICES = {"Shapes (circle, square, triangle, star)": "shapes.keras", "Handwritten digits": "digits.keras"}


@st.cache_resource(show_spinner="Loading the model...")
def load_default_model(file_name: str):
    return cnnviz.load_model(MODELS / file_name)


st.title("What does the network see?")
st.write(
    "Upload an image and a small convolutional network classifies it. "
    "The bars show how sure it is about each class."
)
choice = st.selectbox("Model", list(CHOICES), key="predict.model")
model = load_default_model(CHOICES[choice])
upload = st.file_uploader(
    "Image", type=["png", "jpg", "jpeg", "webp", "bmp", "gif", "tif", "tiff"], key="predict.upload"
)
if upload is None:
    st.info("Upload a PNG or JPEG to get a prediction.")
    st.stop()
try:
    image = cnnviz.load_image(upload.getvalue())
except cnnviz.ImageError as error:
    st.error(f"{error} Try another file.")
    st.stop()
prediction = cnnviz.predict(model, image, top_k=5)[0]
left, right = st.columns([1, 2])
left.image(image, caption=upload.name, width="stretch")
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
