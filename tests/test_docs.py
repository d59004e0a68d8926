"""Docs that must match the code: the settings reference and the example file are what the
declarations render (refresh both with `python -m services.config_docs`)."""

from __future__ import annotations

from services import config_docs


def test_the_settings_reference_is_rendered_from_the_declarations() -> None:
    doc = config_docs.DOC.read_text()
    assert doc == config_docs.doc_with_table(doc), "run: python -m services.config_docs"


def test_the_example_file_is_rendered_from_the_declarations() -> None:
    assert config_docs.EXAMPLE.read_text() == config_docs.example_yaml(), \
        "run: python -m services.config_docs"


def test_every_setting_is_declared_with_a_meaning() -> None:
    fields = config_docs.settings_fields()
    assert len(fields) > 40
    assert all(spec.meaning for _, _, spec in fields)
    assert all(spec.unset for _, f, spec in fields if f.default is None)
