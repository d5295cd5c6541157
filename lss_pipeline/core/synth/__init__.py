"""Synthetic RSNA 2024 lumbar-spine MRI: phantom, sites, grades, DICOM writer, dataset, contact sheet."""

from lss_pipeline.core.synth.anatomy import PhantomGeometry, sample_geometry
from lss_pipeline.core.synth.contact_sheet import render_contact_sheet
from lss_pipeline.core.synth.dataset import (
    FAULT_KINDS,
    MANIFEST,
    SynthOptions,
    SynthSummary,
    generate_dataset,
    read_manifest,
    read_solution,
    read_train_truth,
    sample_labels,
)
from lss_pipeline.core.synth.grades import correlation_summary
from lss_pipeline.core.synth.measures import canal_ap_mm, foramen_fat_mm2, recess_area_mm2
from lss_pipeline.core.synth.phantom import Phantom
from lss_pipeline.core.synth.plane import SlicePlane
from lss_pipeline.core.synth.sites import SITE_PROFILES, SiteProfile

__all__ = [
    "FAULT_KINDS",
    "MANIFEST",
    "SITE_PROFILES",
    "Phantom",
    "PhantomGeometry",
    "SiteProfile",
    "SlicePlane",
    "SynthOptions",
    "SynthSummary",
    "canal_ap_mm",
    "correlation_summary",
    "foramen_fat_mm2",
    "generate_dataset",
    "read_manifest",
    "read_solution",
    "read_train_truth",
    "recess_area_mm2",
    "render_contact_sheet",
    "sample_geometry",
    "sample_labels",
]
