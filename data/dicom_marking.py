"""What a derived series says about itself: a research reconstruction, not an acquisition (issue #36).

Every series :func:`data.write_series` writes carries, within the CT Image IOD (PS3.3 A.3):

* SeriesDescription (C.7.3.1, LO, 64 characters): the method, its views and ``RESEARCH``, e.g.
  ``"TV 60 views (simulated), RESEARCH"`` or ``"SIRT 30 of 120 measured views, RESEARCH"``; the fit in words
  when it fits;
* ImageComments (General Image C.7.6.1) and DerivationDescription (General Reference C.12.4): the full sentence,
  e.g. ``"TV: research reconstruction from a simulated 60-view scan (sparsect 0.9.0). Not for diagnostic use."``;
* DerivationCodeSequence (C.12.4, CID 7203 Image Derivation, extensible): (113962, DCM, "Filtered Back
  Projection") or (113963, DCM, "Iterative Reconstruction"), the CT reconstruction algorithm codes of PS3.16
  CID 10033: the pixels were reconstructed from projections, which no code of CID 7203's image-processing list
  says;
* SourceImageSequence items with PurposeOfReferenceCodeSequence (121322, DCM, "Source image for image processing
  operation", CID 7202);
* BurnedInAnnotation NO (C.7.6.1), ImageType DERIVED\\SECONDARY\\AXIAL (C.7.6.1.1.2, C.8.2.1.1.1);
* for a simulated scan, a ContributingEquipmentSequence item (SOP Common C.12.1) naming sparsect with
  PurposeOfReference (109100, DCM, "Synthesizing Equipment"), the way C.12.1 says synthesized content records the
  equipment that synthesized it (SyntheticData (0008,001C) YES, the attribute made for this, is left out until
  the dicom3tools that check our output know it: the installed dciodvfy reports it as an unknown standard tag);
* by default a study of its own (General Study C.7.2.1): StudyInstanceUID derived from the source's (so every
  research series of one source study joins one research study, across runs, shards and machines),
  StudyDescription ``"Research reconstruction: <source description>"``, StudyID ``RESEARCH``, no
  AccessionNumber (the source's order is not this study's), and the Common Instance Reference module
  (C.12.2, StudiesContainingOtherReferencedInstancesSequence) naming the source study, series and instances.
  The patient (unless de-identified) and the FrameOfReferenceUID (C.7.4.1) stay the source's: the image's position
  and orientation are in the source's patient coordinates, so viewers can still link it spatially to the source.

ContentQualification (0018,9004, RESEARCH) would say it best but belongs to the enhanced multi-frame IODs, not to
the CT Image IOD; the Clinical Trial modules need a sponsor and protocol sparsect does not have; a private creator
is a tag no viewer shows. The text attributes above are what PACS worklists and viewers display.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import CTImageStorage, generate_uid

from sparsect import __version__

#: StudyID of a research study (SH, 16 characters).
RESEARCH_STUDY_ID = "RESEARCH"
#: StudyDescription of a research study when the source has none (or it is de-identified).
RESEARCH_STUDY = "Research reconstruction (sparsect), not for diagnosis"
MARK = "RESEARCH"
FBP_CODE = ("113962", "DCM", "Filtered Back Projection")
ITERATIVE_CODE = ("113963", "DCM", "Iterative Reconstruction")
SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
SYNTHESIZING = ("109100", "DCM", "Synthesizing Equipment")
SOFTWARE = f"sparsect {__version__}"


@dataclass(frozen=True)
class Provenance:
    """What a derived series is: which method made it from how many views of what kind of scan.

    Parameters
    ----------
    method : the method's label, e.g. ``"TV"`` or ``"FBP reference"``.
    views : views the method got (N).
    measured_views : views the measured scan has (M); None for a scan simulated from the source image.
    fit : the method's fit in words (e.g. ``"LRNN, 3 seeds, FBP warm start"``); default the label.
    iterative : whether the method iterates (its DerivationCode); default: not when the label starts with "FBP".
    """

    method: str
    views: int
    measured_views: int | None = None
    fit: str | None = None
    iterative: bool | None = None

    @property
    def views_text(self) -> str:
        if self.measured_views is None:
            return f"{self.views} views (simulated)"
        return f"{self.views} of {self.measured_views} measured views"

    def series_description(self) -> str:
        """At most 64 characters: method, views and the research mark, the fit's details when they fit."""
        head = f"{self.method} {self.views_text}, {MARK}"
        fit = (self.fit or "").strip()
        extra = fit[len(self.method):].lstrip(" ,;:") if fit.startswith(self.method) else fit
        if extra and len(head) + 2 + len(extra) <= 64:
            return f"{head}: {extra}"
        return head if len(head) <= 64 else f"{self.method} {self.views_text}"[:64]

    def sentence(self) -> str:
        """``"research reconstruction from a simulated 60-view scan (sparsect 0.9.0)"``."""
        if self.measured_views is None:
            what = f"a simulated {self.views}-view scan"
        else:
            what = f"{self.views} of {self.measured_views} measured views"
        return f"research reconstruction from {what} ({SOFTWARE})"

    def comments(self) -> str:
        return f"{self.fit or self.method}: {self.sentence()}. Not for diagnostic use."

    def derivation_code(self) -> tuple[str, str, str]:
        iterative = self.iterative if self.iterative is not None else not self.method.upper().startswith("FBP")
        return ITERATIVE_CODE if iterative else FBP_CODE


@dataclass(frozen=True)
class Marking:
    """The texts and code of one derived series (from a :class:`Provenance` or a caller's plain description)."""

    series_description: str
    comments: str
    derivation: str
    code: tuple[str, str, str]
    simulated: bool = False


def marking(description: str | Provenance, derivation: str | None = None) -> Marking:
    """The :class:`Marking` of a series; a plain ``description`` gets ``", RESEARCH"`` when it fits."""
    if isinstance(description, Provenance):
        comments = description.comments()
        return Marking(description.series_description(), comments, (derivation or comments)[:1024],
                       description.derivation_code(), description.measured_views is None)
    text = str(description)
    series = text if MARK.lower() in text.lower() or len(text) + len(MARK) + 2 > 64 else f"{text}, {MARK}"
    comments = f"{text}: research reconstruction ({SOFTWARE}). Not for diagnostic use."
    code = FBP_CODE if text.upper().startswith("FBP") else ITERATIVE_CODE
    return Marking(series[:64], comments, (derivation or f"sparsect reconstruction: {comments}")[:1024], code)


def code_item(code: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def mark_image(ds: Dataset, mark: Marking) -> None:
    """ImageComments, DerivationDescription, DerivationCodeSequence and BurnedInAnnotation of one instance."""
    ds.ImageComments = mark.comments
    ds.DerivationDescription = mark.derivation
    ds.DerivationCodeSequence = Sequence([code_item(mark.code)])
    ds.BurnedInAnnotation = "NO"
    for item in ds.get("SourceImageSequence", []):
        item.PurposeOfReferenceCodeSequence = Sequence([code_item(SOURCE_PURPOSE)])
    if mark.simulated:
        equipment = Dataset()
        equipment.Manufacturer = equipment.ManufacturerModelName = "sparsect"
        equipment.SoftwareVersions = SOFTWARE
        equipment.ContributionDescription = "simulated the sparse-view scan this image is reconstructed from"
        equipment.PurposeOfReferenceCodeSequence = Sequence([code_item(SYNTHESIZING)])
        ds.ContributingEquipmentSequence = Sequence([equipment])


def research_study_uid(source_study_uid: str) -> str:
    """The research study of a source study: one UID per source study, the same in every run."""
    return generate_uid(entropy_srcs=["sparsect research study", str(source_study_uid)])


def make_research_study(ds: Dataset, source_description: str | None) -> None:
    """Turn ``ds``'s copied General Study module into the research study's (same date, patient and frame)."""
    ds.StudyInstanceUID = research_study_uid(ds.StudyInstanceUID)
    ds.StudyID = RESEARCH_STUDY_ID
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyDescription = research_study_description(source_description)


def research_study_description(source_description: str | None) -> str:
    text = str(source_description or "").strip()
    return f"Research reconstruction: {text}"[:64] if text else RESEARCH_STUDY


def reference_source(ds: Dataset, source: Dataset, source_study_uid: str) -> None:
    """Common Instance Reference module (C.12.2) for the source instance the SourceImageSequence names: in
    ReferencedSeriesSequence when ``ds`` is in the source's study, else in
    StudiesContainingOtherReferencedInstancesSequence."""
    if "SeriesInstanceUID" not in source or "SOPInstanceUID" not in source:
        return
    instance = Dataset()
    instance.ReferencedSOPClassUID = source.get("SOPClassUID", CTImageStorage)
    instance.ReferencedSOPInstanceUID = source.SOPInstanceUID
    series = Dataset()
    series.SeriesInstanceUID = source.SeriesInstanceUID
    series.ReferencedInstanceSequence = Sequence([instance])
    if ds.StudyInstanceUID == source_study_uid:
        ds.ReferencedSeriesSequence = Sequence([series])
        return
    study = Dataset()
    study.StudyInstanceUID = source_study_uid
    study.ReferencedSeriesSequence = Sequence([series])
    ds.StudiesContainingOtherReferencedInstancesSequence = Sequence([study])


__all__ = ["MARK", "RESEARCH_STUDY", "Marking", "Provenance", "make_research_study", "mark_image", "marking",
           "reference_source", "research_study_uid"]
