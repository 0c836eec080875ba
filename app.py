"""cnnviz studio: `streamlit run app.py`.

Page config, the sidebar model choice (shared by every page) and navigation;
each page lives in pages/.
"""

import streamlit as st

from ui.models import model_picker

st.set_page_config(page_title="cnnviz studio", page_icon="🔍", layout="wide")

model_picker()
navigation = st.navigation(
    {
        "Use": [st.Page("pages/predict.py", title="Predict", icon="🔍", default=True)],
        "Look inside": [
            st.Page("pages/activations.py", title="Activations", icon="🧠"),
            st.Page("pages/weights.py", title="Weights", icon="🎛️"),
            st.Page("pages/results.py", title="Results", icon="📊"),
        ],
    }
)
navigation.run()
