"""cnnviz studio: `streamlit run app.py`.

Page config and navigation only; each page lives in pages/.
"""

import streamlit as st

st.set_page_config(page_title="cnnviz studio", page_icon="🔍", layout="wide")

navigation = st.navigation([st.Page("pages/predict.py", title="Predict", icon="🔍", default=True)])
navigation.run()
