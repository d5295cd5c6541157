"""DICOM ingest: one file's header (``header``), the folder scan and its quarantine (``scan``),
the published tables (``store``), pixel decoding for the crops (``pixels``)."""
