"""Synthetic RSNA 2024 lumbar-spine MRI dataset: phantom, DICOM writer, dataset, contact sheet."""

from lss_pipeline.core.synth.contact_sheet import render_contact_sheet
from lss_pipeline.core.synth.dataset import (
    FAULT_KINDS, MANIFEST, SynthOptions, SynthSummary, generate_dataset, read_manifest, sample_labels,
)
from lss_pipeline.core.synth.phantom import (
    Phantom, PhantomGeometry, SlicePlane, canal_ap_mm, foramen_fat_mm2, recess_area_mm2, sample_geometry,
)

__all__ = [
    "FAULT_KINDS", "MANIFEST", "Phantom", "PhantomGeometry", "SlicePlane", "SynthOptions", "SynthSummary",
    "canal_ap_mm", "foramen_fat_mm2", "generate_dataset", "read_manifest", "recess_area_mm2",
    "render_contact_sheet", "sample_geometry", "sample_labels",
]
