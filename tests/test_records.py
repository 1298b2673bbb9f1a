"""Records: every kind of invalid record is rejected with its path and a clear message."""

from __future__ import annotations

import pytest

from hotreload.data.records import Project, RecordError, parse_record, to_toml
from hotreload.data.sheets import Sheet, parse_sheet_config

PROJECTS = Sheet("projects", "projects", "${{ slug }}")
TAGS = Sheet("tags", "tags", "${{ namespace }}/${{ slug }}")
VALID = (
    'id = "01951a3c-8901-7000-8000-000000000042"\nslug = "foo"\ntitle = "Foo"\n'
    'createdAt = "2024-01-15T18:42:00Z"\nupdatedAt = "2024-01-15T18:42:00Z"\n'
)


def parse(text: str, path: str = "projects/foo.toml", sheet: Sheet = PROJECTS) -> object:
    return parse_record(sheet, path, text.encode())


def test_valid_project_parses_with_defaults_and_nulls() -> None:
    project = parse(VALID)
    assert isinstance(project, Project)
    assert project.stage == "commenting"
    assert project.summary is None and project.legacy_id is None and project.featured is False


def test_unknown_fields_in_the_repository_are_ignored() -> None:
    assert isinstance(parse(VALID + 'futureField = "x"\n'), Project)


def test_native_toml_datetime_is_accepted_as_rfc3339() -> None:
    project = parse(VALID.replace('createdAt = "2024-01-15T18:42:00Z"', "createdAt = 2024-01-15T18:42:00Z"))
    assert isinstance(project, Project) and project.created_at == "2024-01-15T18:42:00Z"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id = ", "projects/foo.toml: invalid TOML"),
        (VALID.replace('title = "Foo"\n', ""), "projects/foo.toml: title: required field is missing"),
        (VALID + 'stage = "done"\n', "projects/foo.toml: stage: expected one of"),
        (VALID.replace('"01951a3c-8901-7000-8000-000000000042"', '"not-a-uuid"'), "projects/foo.toml: id: must match"),
        (VALID.replace('"2024-01-15T18:42:00Z"\nupdatedAt', '"yesterday"\nupdatedAt'), "projects/foo.toml: createdAt: must match"),
        (VALID.replace('title = "Foo"', "title = 3"), "projects/foo.toml: title: Expected `str`, got `int`"),
        (VALID.replace('title = "Foo"', 'title = ""'), "projects/foo.toml: title: Expected `str` of length >= 1"),
        (VALID + "legacyId = 0\n", "projects/foo.toml: legacyId: Expected `int` >= 1"),
        (VALID + 'summary = "' + "x" * 281 + '"\n', "projects/foo.toml: summary: Expected `str` of length <= 280"),
        (VALID.replace('slug = "foo"', 'slug = "Foo Bar"'), "projects/foo.toml: slug: must match"),
    ],
)
def test_invalid_records_name_path_and_field(text: str, message: str) -> None:
    with pytest.raises(RecordError) as err:
        parse(text)
    assert str(err.value).startswith(message), str(err.value)


def test_record_in_the_wrong_place_is_rejected() -> None:
    with pytest.raises(RecordError, match=r"record belongs at projects/foo\.toml"):
        parse(VALID, path="projects/bar.toml")


def test_non_utf8_record_is_rejected() -> None:
    with pytest.raises(RecordError, match="not UTF-8"):
        parse_record(PROJECTS, "projects/foo.toml", b"\xff\xfe")


def test_tag_namespace_enum_and_path_template() -> None:
    tag = ('id = "01951a3c-8901-7000-8000-000000000042"\nnamespace = "topic"\nslug = "transit"\n'
           'title = "Transit"\ncreatedAt = "2024-01-15T18:42:00Z"\nupdatedAt = "2024-01-15T18:42:00Z"\n')
    assert parse(tag, "tags/topic/transit.toml", TAGS)
    with pytest.raises(RecordError, match="namespace: expected one of event, tech, topic"):
        parse(tag.replace('"topic"', '"colour"'), "tags/colour/transit.toml", TAGS)


def test_to_toml_round_trips() -> None:
    project = parse(VALID + 'summary = "Line one\\nsays \\"hi\\""\n')
    assert parse(to_toml(project).decode()) == project  # type: ignore[arg-type]


def test_sheet_config_accepts_both_placeholder_styles() -> None:
    a = parse_sheet_config(".gitsheets/tags.toml", "tags", b'[gitsheet]\nroot = "tags"\npath = "${{ namespace }}/${{ slug }}"\n')
    b = parse_sheet_config(".gitsheets/tags.toml", "tags", b'[gitsheet]\nroot = "tags/"\npath = "${namespace}/${slug}"\n')
    values = {"namespace": "topic", "slug": "transit"}
    assert a.record_path(values) == b.record_path(values) == "tags/topic/transit.toml"


def test_sheet_config_errors_name_the_file() -> None:
    with pytest.raises(Exception, match=r"\.gitsheets/x\.toml: missing \[gitsheet\] table"):
        parse_sheet_config(".gitsheets/x.toml", "x", b"root = 1\n")


@pytest.mark.parametrize(("field", "value"), [
    ("slug", "dupe\\n"), ("id", "4f1c2d3e-0000-4000-8000-000000000001\\n"),
    ("createdAt", "2024-01-01T00:00:00Z\\n"), ("slug", "\\u0663\\u0663"),
])
def test_a_trailing_newline_or_a_non_ascii_digit_never_passes_a_pattern(field: str, value: str) -> None:
    fields = {"id": "4f1c2d3e-0000-4000-8000-000000000001", "slug": "fine-slug", "fullName": "F",
              "createdAt": "2024-01-01T00:00:00Z", "updatedAt": "2024-01-01T00:00:00Z", field: value}
    text = "".join(f'{k} = "{v}"\n' for k, v in fields.items())
    people = Sheet("people", "people", "${{ slug }}")
    with pytest.raises(RecordError, match=field):
        parse_record(people, "people/fine-slug.toml", text.encode())
