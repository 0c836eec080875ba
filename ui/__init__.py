"""Streamlit helpers shared by the pages: session keys, cached wrappers around
cnnviz, and small widget helpers. Model logic stays in cnnviz."""
