"""The reader-study section of the comparison page: the reconstructions under random labels, in an order of
each reader's own, with sliders for the ratings and the ratings CSV (helpers in app/page/reader.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import streamlit as st

from sparsect.app.page import figures as pf
from sparsect.app.page import keys
from sparsect.app.page import reader as pr
from sparsect.app.page.results import TILE, window_controls
from sparsect.app.run import Outcome
from sparsect.reconstruct.registry import label


def _rating_widgets(lab: str, image: np.ndarray, window: tuple[float, float], study: str, reader: str,
                    n_images: int) -> dict[str, object]:
    st.image(pf.tile(image, window, TILE), caption=f"Image {lab}", width="stretch")
    return {
        "quality": st.slider(f"{lab}: diagnostic quality", 1, 5, 3, key=pr.widget_key("q", study, reader, lab),
                             help=pr.QUALITY_HELP),
        "artifacts": st.slider(f"{lab}: artifacts", 1, 5, 3, key=pr.widget_key("a", study, reader, lab),
                               help=pr.ARTIFACT_HELP),
        "rank": st.selectbox(f"{lab}: rank", range(1, n_images + 1), index=None, placeholder="rank",
                             key=pr.widget_key("r", study, reader, lab)),
        "comment": st.text_input(f"{lab}: comment", key=pr.widget_key("c", study, reader, lab)),
    }


def _reading(runs: Sequence[Outcome], labels: Mapping[str, str], truth: np.ndarray,
             window: tuple[float, float], study: str, reader: str) -> None:
    """One reader's images, ratings and the download of their ratings."""
    state = st.session_state
    show_reference = st.checkbox("Show the full-view reference", value=True, key="reader_reference")
    by_method = {r.method: r for r in runs}
    order = pr.reading_order(list(labels), study, reader)
    cols = st.columns(len(order) + (1 if show_reference else 0))
    if show_reference:
        cols[0].image(pf.tile(truth, window, TILE), caption="Reference", width="stretch")
        cols = cols[1:]
    ratings: dict[str, dict[str, object]] = {}
    for col, lab in zip(cols, order, strict=True):
        with col:
            ratings[lab] = _rating_widgets(lab, by_method[labels[lab]].image_hu, window, study, reader, len(order))
    if not pr.ranks_valid({lab: r["rank"] for lab, r in ratings.items()}):
        st.warning("Rank every image, each rank once (1 = best).")
    csv_bytes = pr.ratings_csv(study, reader, labels, ratings, state[keys.READER_REVEALED], order)
    state[keys.READER_CSV] = csv_bytes
    b1, b2, _ = st.columns(3)
    b1.download_button("Download ratings (CSV)", csv_bytes, file_name=f"sparsect_reader_{study}.csv",
                       mime="text/csv", key="reader_download", icon=":material/download:", width="stretch")
    if b2.button("Reveal methods", key="reveal", icon=":material/visibility:", width="stretch"):
        state[keys.READER_REVEALED] = True
        st.rerun()


def reader_section(runs: Sequence[Outcome], labels: Mapping[str, str], truth: np.ndarray) -> None:
    """The blinded reading of ``runs`` (``labels``: label -> method) against the full-view ``truth``."""
    state: Any = st.session_state
    st.subheader("Reader study")
    if len(runs) < 2:
        st.info("Run at least two methods to start a blinded reading.")
        return
    window = window_controls("reader")
    study = f"{state[keys.READER_SEED]:06d}"
    reader = st.text_input("Reader", key="reader_name", placeholder="initials",
                           help="Each reader sees the images in an order of their own.").strip()
    st.caption(f"Study {study}: {len(labels)} reconstructions under random labels. Score each for "
               "diagnostic quality and artifacts, rank them (1 = best), then download the ratings.")
    if reader:
        _reading(runs, labels, truth, window, study, reader)
    else:
        st.info("Enter your initials to start the reading.")
    if st.button("New study (reshuffle)", key="reshuffle", icon=":material/shuffle:"):
        state[keys.READER_SEED] = keys.new_reader_seed()
        state[keys.READER_REVEALED] = False
        st.rerun()
    if state[keys.READER_REVEALED]:
        st.success("Unblinded: " + ", ".join(f"{lab} = {label(labels[lab])}" for lab in sorted(labels)))


__all__ = ["reader_section"]
