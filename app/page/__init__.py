"""The Streamlit comparison page: ``main`` (widgets), ``compute``, ``figures`` and ``reader`` (the reader study)."""
