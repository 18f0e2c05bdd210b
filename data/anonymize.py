"""De-identification of the derived series written by :func:`data.write_series`.

The writer builds every output data set from scratch and copies only a short whitelist of source
attributes, so private tags, institution/operator/physician names, device serial numbers, comments,
other patient IDs, etc. never reach the output. With ``anonymize`` the whitelisted attributes that the
DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile (table E.1-1) lists are then
handled as follows:

======================================  ==========  ===============================================
Attribute                               Profile     What we write
======================================  ==========  ===============================================
PatientName, PatientID                  Z           ``ANON-<12 hex>``, a keyed pseudonym (below)
PatientBirthDate, PatientSex            Z           empty
StudyDate, StudyTime                    Z           empty
ReferringPhysicianName, StudyID,        Z           empty
AccessionNumber
StudyDescription                        X           removed
ContentDate/Time, SeriesDate/Time,      X/D         removed
InstanceCreationDate/Time
StudyInstanceUID, FrameOfReferenceUID,  U           keyed pseudonymous UIDs (below)
Referenced/Source SOP Instance UIDs
Referenced Series/Study UIDs (Common
Instance Reference module)              U           keyed pseudonymous UIDs (below)
SeriesInstanceUID, SOPInstanceUID       U           always new (derived series)
======================================  ==========  ===============================================

and PatientIdentityRemoved = YES, DeidentificationMethod, DeidentificationMethodCodeSequence
(DCM 113100 "Basic Application Confidentiality Profile"), LongitudinalTemporalInformationModified =
REMOVED and BurnedInAnnotation = NO are added. Kept: acquisition parameters that the profile keeps
(KVP, SliceThickness, PatientPosition, image geometry) and the SeriesDescription/DerivationDescription
given by the caller (the caller must not put identifying text there). In a research study of its own (the
default, :mod:`data.dicom_marking`) StudyDescription and StudyID are set again to sparsect's own fixed text.

Pseudonyms
----------
Every reconstruction of one source study must show up in a viewer as one patient and one study, so the
replacement values are not random per series: each is ``HMAC-SHA256(key, source value)`` (UIDs as
``2.25.<128-bit integer>``; PatientID/PatientName from the source PatientID, or from the
StudyInstanceUID when there is none). An :class:`Anonymizer` carries the key; every series written with
the same one (or one with the same key) gets the same pseudonymous identity.

Why a secret key and not a plain hash: anybody holding the source data can hash its UIDs and PatientID
and match an unkeyed digest, which would re-identify the export. Without the key the pseudonyms are
unlinkable to the source (HMAC is a pseudo-random function) and to exports made under other keys.

Which key, chosen per export rather than per installation: a key in the user's config folder would link
every export ever made on that machine (the same patient gets the same pseudonym in unrelated exports), and
in a container the config folder is thrown away with the container, so a restarted job would change
identities half-way. Instead:

* ``sparsect batch --anonymize``: one key per output folder, ``OUT_DIR/.sparsect/pseudonym.key`` (mode
  0600), created on first use, so all methods, view counts, shards and reruns of one job agree. The hidden
  ``.sparsect/`` folder also holds the manifest (source paths and UIDs): share the derived series and the
  tables, never ``.sparsect/``.
* ``sparsect reconstruct --out --anonymize`` and the page's DICOM download: a fresh random key per export
  (all methods in it agree; two exports of the same study are unlinkable).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

#: DeidentificationMethod value (LO, at most 64 characters).
DEIDENTIFICATION_METHOD = "sparsect: PS3.15 E.1 basic profile, whitelist copy, keyed UIDs"

#: Attributes emptied (profile action Z).
EMPTIED = ("PatientBirthDate", "PatientSex", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID",
           "AccessionNumber")
#: Attributes removed (profile action X or X/D).
REMOVED = ("StudyDescription", "ContentDate", "ContentTime", "SeriesDate", "SeriesTime",
           "InstanceCreationDate", "InstanceCreationTime", "AcquisitionDate", "AcquisitionTime",
           "AcquisitionDateTime")


KEY_BYTES = 32


def load_or_create_key(path: str | os.PathLike) -> bytes:
    """The secret key stored at ``path`` (hex text, mode 0600), created on first use.

    Safe when several processes (batch shards) call it at once: the key is written to a private temporary
    file and hard-linked into place, so every caller ends up reading the one key that won.
    """
    path = Path(path)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.part")
        handle = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(handle, "w") as stream:
                stream.write(secrets.token_hex(KEY_BYTES) + "\n")
                stream.flush()
                os.fsync(stream.fileno())
            with contextlib.suppress(FileExistsError):  # another process was first: use its key
                os.link(temporary, path)
        finally:
            temporary.unlink(missing_ok=True)
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise ValueError(f"{path}: not a pseudonym key (expected {2 * KEY_BYTES} hex digits)") from None
    if len(key) < 16:
        raise ValueError(f"{path}: pseudonym key too short ({len(key)} bytes, need at least 16)")
    return key


class Anonymizer:
    """Keyed pseudonyms for de-identified output; one source study -> one identity per key.

    Parameters
    ----------
    key : secret bytes (at least 16); default a fresh random key, so only the series written with this
        object share an identity. See the module docstring for where the callers keep their keys.
    """

    def __init__(self, key: bytes | None = None) -> None:
        key = secrets.token_bytes(KEY_BYTES) if key is None else bytes(key)
        if len(key) < 16:
            raise ValueError(f"an anonymization key needs at least 16 bytes, got {len(key)}")
        self._key = key

    @classmethod
    def from_key_file(cls, path: str | os.PathLike) -> Anonymizer:
        """An Anonymizer whose key is kept at ``path`` (see :func:`load_or_create_key`)."""
        return cls(load_or_create_key(path))

    def _digest(self, kind: str, value: str) -> bytes:
        return hmac.new(self._key, f"{kind}\0{value}".encode(), hashlib.sha256).digest()

    def uid(self, uid: str) -> str:
        """Pseudonymous UID (``2.25.<decimal>``, at most 44 characters) for a source UID."""
        return "2.25." + str(int.from_bytes(self._digest("uid", str(uid))[:16], "big"))

    def pseudonym(self, kind: str, value: str, length: int = 12) -> str:
        """Upper-case hex pseudonym of ``value`` (``kind`` separates name spaces, e.g. "patient", "series")."""
        return self._digest(kind, str(value)).hex()[:length].upper()

    def patient(self, patient_id: str, study_uid: str) -> str:
        """``ANON-<hex>`` for a source patient (by PatientID, else by StudyInstanceUID)."""
        if str(patient_id).strip():
            return "ANON-" + self.pseudonym("patient", str(patient_id).strip())
        return "ANON-" + self.pseudonym("study", str(study_uid))

    def apply(self, ds: Dataset) -> None:
        """De-identify ``ds`` (an output data set being built from a whitelist copy) in place."""
        patient = self.patient(str(ds.get("PatientID", "") or ""), str(ds.get("StudyInstanceUID", "") or ""))
        ds.PatientName = patient
        ds.PatientID = patient
        for keyword in EMPTIED:
            setattr(ds, keyword, "")
        for keyword in REMOVED:
            if keyword in ds:
                delattr(ds, keyword)
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
            if keyword in ds and ds[keyword].value:
                setattr(ds, keyword, self.uid(str(ds[keyword].value)))
        for keyword in ("SourceImageSequence", "ReferencedImageSequence"):
            for item in ds.get(keyword, []):
                item.ReferencedSOPInstanceUID = self.uid(str(item.ReferencedSOPInstanceUID))
        self._references(ds)
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = DEIDENTIFICATION_METHOD
        code = Dataset()
        code.CodeValue = "113100"
        code.CodingSchemeDesignator = "DCM"
        code.CodeMeaning = "Basic Application Confidentiality Profile"
        ds.DeidentificationMethodCodeSequence = Sequence([code])
        ds.LongitudinalTemporalInformationModified = "REMOVED"
        ds.BurnedInAnnotation = "NO"

    def _references(self, ds: Dataset) -> None:
        """Keyed UIDs in the Common Instance Reference module (the source's study, series and instances)."""
        studies = list(ds.get("StudiesContainingOtherReferencedInstancesSequence", []))
        for study in studies:
            study.StudyInstanceUID = self.uid(str(study.StudyInstanceUID))
        for holder in [ds, *studies]:
            for series in holder.get("ReferencedSeriesSequence", []):
                series.SeriesInstanceUID = self.uid(str(series.SeriesInstanceUID))
                for instance in series.get("ReferencedInstanceSequence", []):
                    instance.ReferencedSOPInstanceUID = self.uid(str(instance.ReferencedSOPInstanceUID))


__all__ = ["DEIDENTIFICATION_METHOD", "EMPTIED", "REMOVED", "Anonymizer", "load_or_create_key"]
