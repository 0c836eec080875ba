"""cnnviz studio: `streamlit run app.py`.

Page config, settings kept across pages (and in the URL), the sidebar model
choice (shared by every page) and navigation; each page lives in pages/.
"""

import streamlit as st

from ui import runtime, warmup
from ui.admission import busy_page
from ui.models import load_pending_model, model_picker
from ui.settings import keep_widget_state, share_settings

runtime.install()
st.set_page_config(page_title="cnnviz studio", page_icon="🔍", layout="wide")
if not runtime.admitted():
    # A page of its own, with no menu: a busy visitor can open nothing else.
    st.navigation([st.Page(busy_page, title="cnnviz studio", default=True)], position="hidden").run()
    st.stop()

keep_widget_state()
# The navigation first: while the model loads, a new server shows the studio's menu, not its file names.
navigation = st.navigation(
    {
        "Use": [st.Page("pages/predict.py", title="Predict", icon=":material/image_search:", default=True)],
        "Make your own": [
            st.Page("pages/data.py", title="Data", icon=":material/photo_library:"),
            st.Page("pages/fix.py", title="Fix your data", icon=":material/cleaning_services:"),
            st.Page("pages/build.py", title="Build", icon=":material/account_tree:"),
            st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        ],
        "Look inside": [
            st.Page("pages/activations.py", title="Activations", icon=":material/layers:"),
            st.Page("pages/weights.py", title="Weights", icon=":material/tune:"),
            st.Page("pages/results.py", title="Results", icon=":material/insights:"),
            st.Page("pages/map.py", title="Map of what it learnt", icon=":material/scatter_plot:"),
            st.Page("pages/trust.py", title="Trust the heatmap", icon=":material/verified:"),
        ],
        "Improve": [st.Page("pages/improve.py", title="Compare variants", icon=":material/trending_up:")],
    }
)
model_picker()
try:
    navigation.run()
finally:  # also after a page's st.stop()
    # TensorFlow and the default models, in the background, once this first page is drawn and fetched:
    # importing TensorFlow holds the interpreter for seconds; the page (answered from ONNX meanwhile) comes first.
    warmup.start(delay=2.0)
    load_pending_model(wait=False)
share_settings()
