"""De-identification of the derived series written by :func:`data.write_series`.

The writer builds every output data set from scratch and copies only a short whitelist of source
attributes, so private tags, institution/operator/physician names, device serial numbers, comments,
other patient IDs, etc. never reach the output. With ``anonymize=True`` the whitelisted attributes
that the DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile (table E.1-1) lists are
then handled as follows:

======================================  ==========  ===============================================
Attribute                               Profile     What we write
======================================  ==========  ===============================================
PatientName                             Z           ``ANONYMOUS^``
PatientID                               Z           ``ANON-<random hex>``, one per call
PatientBirthDate, PatientSex            Z           empty
StudyDate, StudyTime                    Z           empty
ReferringPhysicianName, StudyID,        Z           empty
AccessionNumber
StudyDescription                        X           removed
ContentDate/Time, SeriesDate/Time,      X/D         removed
InstanceCreationDate/Time
StudyInstanceUID, FrameOfReferenceUID,  U           new UIDs, consistent within one call
Referenced/Source SOP Instance UIDs
SeriesInstanceUID, SOPInstanceUID       U           always new (derived series)
======================================  ==========  ===============================================

and PatientIdentityRemoved = YES, DeidentificationMethod, DeidentificationMethodCodeSequence
(DCM 113100 "Basic Application Confidentiality Profile"), LongitudinalTemporalInformationModified =
REMOVED and BurnedInAnnotation = NO are added. Kept: acquisition parameters that the profile keeps
(KVP, SliceThickness, PatientPosition, image geometry) and the SeriesDescription/DerivationDescription
given by the caller (the caller must not put identifying text there).
"""

from __future__ import annotations

import secrets

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import generate_uid

#: DeidentificationMethod value (LO, at most 64 characters).
DEIDENTIFICATION_METHOD = "sparsect: PS3.15 E.1 basic profile, whitelist copy, new UIDs"

#: Attributes emptied (profile action Z).
EMPTIED = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
           "AccessionNumber")
#: Attributes removed (profile action X or X/D).
REMOVED = ("StudyDescription", "ContentDate", "ContentTime", "SeriesDate", "SeriesTime",
           "InstanceCreationDate", "InstanceCreationTime", "AcquisitionDate", "AcquisitionTime",
           "AcquisitionDateTime")


class UIDMap:
    """Replace UIDs consistently: the same original UID always maps to the same new one."""

    def __init__(self) -> None:
        self._map: dict[str, str] = {}

    def __call__(self, uid: str) -> str:
        if uid not in self._map:
            self._map[uid] = generate_uid()
        return self._map[uid]


class Anonymizer:
    """State for one de-identified output series (one call of :func:`data.write_series`)."""

    def __init__(self) -> None:
        self.uids = UIDMap()
        self.patient_id = f"ANON-{secrets.token_hex(4).upper()}"

    def apply(self, ds: Dataset) -> None:
        """De-identify ``ds`` (an output data set being built) in place."""
        ds.PatientName = "ANONYMOUS^"
        ds.PatientID = self.patient_id
        for keyword in EMPTIED:
            setattr(ds, keyword, "")
        for keyword in REMOVED:
            if keyword in ds:
                delattr(ds, keyword)
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
            if keyword in ds and ds[keyword].value:
                setattr(ds, keyword, self.uids(str(ds[keyword].value)))
        for keyword in ("SourceImageSequence", "ReferencedImageSequence"):
            for item in ds.get(keyword, []):
                item.ReferencedSOPInstanceUID = self.uids(str(item.ReferencedSOPInstanceUID))
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        ds.BurnedInAnnotation = "NO"


__all__ = ["DEIDENTIFICATION_METHOD", "EMPTIED", "REMOVED", "Anonymizer", "UIDMap"]
