"""What people touch: the Streamlit page, the ``sparsect`` command line and batch jobs."""
