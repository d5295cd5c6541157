from lss_pipeline_tests.core.localise.tiny import tiny_localisers, tiny_set  # noqa: F401
