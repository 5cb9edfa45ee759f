"""Step names, patterns and the "covers" rule."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from asteps import (
    InvalidName,
    InvalidPrefix,
    InvalidStepName,
    InvalidWorkflowId,
    covers,
    validate_name,
    validate_pattern,
)
from asteps._names import check_prefix_per_workflow, format_prefix, validate_workflow_id


@pytest.mark.parametrize(
    "name", ["a", "export.csv", "a.b.c", "A_1-x.y", "0", "x" * 200, ".".join(["a"] * 100)]
)
def test_valid_names_are_accepted(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize(
    ("name", "hint"),
    [
        ("", "empty"),
        ("a..b", "empty segment"),
        (".a", "empty segment"),
        ("a.", "empty segment"),
        ("a b", "' '"),
        ("a/b", "'/'"),
        ("é", "'é'"),
        ("x" * 201, "limit is 200"),
        ("*", "is a pattern"),
        (None, "must be a string"),
        (3, "must be a string"),
    ],
)
def test_invalid_names_are_refused_with_a_hint(name: object, hint: str) -> None:
    with pytest.raises(InvalidStepName, match=hint):
        validate_name(name)


def test_invalid_step_name_is_a_value_error() -> None:
    assert issubclass(InvalidStepName, ValueError)


def test_star_is_a_valid_pattern_but_not_a_name() -> None:
    assert validate_pattern("*") == "*"
    with pytest.raises(InvalidStepName):
        validate_pattern("a.*")


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "a", True),
        ("*", "a.b.c", True),
        ("a", "a", True),
        ("a", "a.b", True),
        ("a", "a.b.c", True),
        ("a.b", "a.b.c", True),
        ("a", "ab", False),
        ("a", "ab.c", False),
        ("a.b", "a", False),
        ("a.b", "a.bc", False),
        ("b", "a.b", False),
    ],
)
def test_covers(pattern: str, name: str, expected: bool) -> None:
    assert covers(pattern, name) is expected


@pytest.mark.parametrize("wid", ["a/b", "tab\there", "nul\x00", ".", "..", ""])
def test_bad_workflow_ids_are_refused(wid: str) -> None:
    with pytest.raises(InvalidStepName):
        validate_workflow_id(wid)


@pytest.mark.parametrize(
    ("wid", "hint"),
    [
        ("next\u0085line", "U+0085"),  # Cc, C1 control
        ("csi\u009b31m", "U+009B"),  # Cc, C1 control (a terminal escape)
        ("line\u2028sep", "U+2028"),  # Zl
        ("para\u2029sep", "U+2029"),  # Zp
        ("zero\u200bwidth", "U+200B"),  # Cf
        ("rtl\u202eoverride", "U+202E"),  # Cf
        ("lone\udcffsurrogate", "U+DCFF"),  # Cs: what argv gives for an undecodable byte
    ],
)
def test_workflow_ids_with_invisible_or_unencodable_characters_are_refused(
    wid: str, hint: str
) -> None:
    with pytest.raises(InvalidStepName, match=re.escape(hint)):
        validate_workflow_id(wid)


@pytest.mark.parametrize(
    ("wid", "hint"),
    [
        ("cust-1\u00a0", "U+00A0"),  # a no-break space, as spreadsheets export
        ("cust\u30001", "U+3000"),  # an ideographic space
        ("cust\u20091", "U+2009"),  # a thin space
    ],
)
def test_workflow_ids_with_a_space_other_than_the_plain_one_are_refused(
    wid: str, hint: str
) -> None:
    # "cust-1" and "cust-1<no-break space>" would be two workflows that look
    # the same in every table: only the plain space is allowed.
    with pytest.raises(InvalidStepName, match=re.escape(hint) + ".*plain space"):
        validate_workflow_id(wid)


@pytest.mark.parametrize("wid", ["c1 ", " c1"])
def test_workflow_ids_with_a_space_at_either_end_are_refused(wid: str) -> None:
    # "c1 " and "c1" look the same in every table; an ids file strips such a
    # space, and a workflow id given on the command line must not keep one.
    with pytest.raises(InvalidStepName, match="begins or ends with a space"):
        validate_workflow_id(wid)


def test_workflow_ids_are_at_most_255_utf8_bytes() -> None:
    assert validate_workflow_id("x" * 255) == "x" * 255
    assert validate_workflow_id("é" * 127) == "é" * 127  # 254 bytes
    with pytest.raises(InvalidStepName, match=r"256 bytes.*255"):
        validate_workflow_id("x" * 256)
    with pytest.raises(InvalidStepName, match="256 bytes"):
        validate_workflow_id("é" * 128)


@pytest.mark.parametrize("wid", ["customer-42", "client:éà", "日本語-id", "a b", "x" * 255])
def test_ordinary_unicode_workflow_ids_are_accepted(wid: str) -> None:
    assert validate_workflow_id(wid) == wid


def test_prefix_templates_see_the_workflow_id_and_context() -> None:
    assert format_prefix("{workflow_id}/steps/", "wf", None) == "wf/steps/"
    assert format_prefix("{tenant}/{workflow_id}/", "wf", {"tenant": "acme"}) == "acme/wf/"


def test_prefix_template_with_a_missing_key_names_it() -> None:
    with pytest.raises(InvalidStepName, match=r"\{tenant\}.*context"):
        format_prefix("{tenant}/{workflow_id}/", "wf", {})


@pytest.mark.parametrize("template", ["/abs/{workflow_id}/", "../{workflow_id}/"])
def test_prefix_must_stay_inside_the_store(template: str) -> None:
    with pytest.raises(InvalidStepName, match="relative"):
        format_prefix(template, "wf", None)


@pytest.mark.parametrize(
    ("template", "message"),
    [
        ("{workflow_id:>300000000}/{workflow_id}/", "format spec"),
        ("{workflow_id!r}/", "conversion"),
        ("{workflow_id[0]}/", "without '.', '\\[' or a position"),
        ("{workflow_id.upper}/", "without '.'"),
        ("{0}/{workflow_id}/", "a position"),
        ("{}/{workflow_id}/", "a position"),
        ("{workflow_id:{workflow_id}}/", "format spec"),
        ("{workflow_id", "malformed"),
    ],
)
def test_a_prefix_template_holds_only_plain_fields(template: str, message: str) -> None:
    # A width in a template allocated 640 MB to check it, and 2 GB per format.
    with pytest.raises(InvalidStepName, match=message):
        format_prefix(template, "wf", None)


@pytest.mark.parametrize(
    ("template", "context"),
    [
        (".asteps-claims/{workflow_id}/steps/", None),
        (".{workflow_id}/", None),
        ("./{workflow_id}/", None),
        ("{tenant}/{workflow_id}/", {"tenant": ".asteps-claims"}),
    ],
)
def test_a_prefix_may_not_start_with_a_dot_where_stores_keep_their_claims(
    template: str, context: dict[str, str] | None
) -> None:
    with pytest.raises(InvalidPrefix, match=r"starts with '\.'.*'\.asteps-claims/'"):
        format_prefix(template, "wf", context)
    with pytest.raises(InvalidPrefix, match=r"starts with '\.'"):
        check_prefix_per_workflow(template, context)


def test_a_dot_after_the_first_segment_of_a_prefix_is_accepted() -> None:
    assert format_prefix("acme/.{workflow_id}/", "wf", None) == "acme/.wf/"


@pytest.mark.parametrize(
    "template", ["acme//{workflow_id}/", "acme/./{workflow_id}/", "{workflow_id}/steps//"]
)
def test_a_prefix_with_an_empty_or_dot_segment_is_refused(template: str) -> None:
    # S3 keeps "a//b" and "a/./b" as written; a file tree reads them as "a/b":
    # the two stores would lay out the same markers differently.
    with pytest.raises(InvalidPrefix, match=r"empty or '\.' segment"):
        format_prefix(template, "wf", None)


def test_a_prefix_leaves_room_in_s3s_key_for_the_longest_step_name() -> None:
    assert format_prefix(
        "p" * 200 + "/" + "q" * 200 + "/" + "r" * 200 + "/{workflow_id}/", "wf", None
    )
    with pytest.raises(InvalidStepName, match="1024-byte limit"):
        format_prefix("/".join(["p" * 200] * 5) + "/{workflow_id}/", "wf", None)


def test_each_segment_of_a_prefix_fits_a_file_name() -> None:
    with pytest.raises(InvalidStepName, match="over 255 bytes"):
        format_prefix("wf-{workflow_id}/", "x" * 255, None)


def test_an_error_quotes_a_long_template_cut_short() -> None:
    template = "{workflow_id:>9}" + "x" * 100_000
    with pytest.raises(InvalidStepName) as info:
        format_prefix(template, "wf", None)
    assert len(str(info.value)) < 500


@pytest.mark.parametrize("wid", [".tmp-x", ".hidden", ".a.b"])
def test_workflow_ids_may_not_start_with_a_dot(wid: str) -> None:
    # A leading dot hides a directory, and the file store's temporary files
    # start with '.tmp-': such an id would never see its own markers.
    with pytest.raises(InvalidStepName, match=r"starts with '\.'"):
        validate_workflow_id(wid)


def test_the_separators_suggested_for_a_slash_are_accepted_by_every_command() -> None:
    """The hint for 'a/b' must not send the user to an id that `swf submit`
    refuses (it once suggested ':', which SWF's workflowId does not take)."""
    from asteps.swf._submit import check_swf_workflow_id

    with pytest.raises(InvalidStepName, match="'/'") as caught:
        validate_workflow_id("customer/42")
    message = str(caught.value)
    suggested = re.findall(r"'(.)'", message.split("such as", 1)[1])
    assert suggested, message
    for separator in suggested:
        fixed = f"customer{separator}42"
        assert validate_workflow_id(fixed) == fixed
        assert check_swf_workflow_id(fixed) == fixed


def test_a_long_workflow_id_with_a_slash_is_quoted_cut_short() -> None:
    with pytest.raises(InvalidStepName, match="characters in all") as caught:
        validate_workflow_id("a/" + "b" * 200)
    assert len(str(caught.value)) < 300


@pytest.mark.parametrize(
    ("check", "kind"),
    [
        (lambda: validate_name("a b"), InvalidStepName),
        (lambda: validate_pattern("a..b"), InvalidStepName),
        (lambda: validate_workflow_id("a/b"), InvalidWorkflowId),
        (lambda: format_prefix("{x}/", "w", None), InvalidPrefix),
        (lambda: format_prefix("/abs/{workflow_id}/", "w", None), InvalidPrefix),
    ],
)
def test_each_kind_of_bad_name_has_its_error_and_all_are_invalid_names(
    check: Callable[[], object], kind: type[InvalidName]
) -> None:
    with pytest.raises(kind) as raised:
        check()
    assert isinstance(raised.value, InvalidName)
    assert isinstance(raised.value, ValueError)


@pytest.mark.parametrize(
    "check",
    [lambda: validate_workflow_id("a/b"), lambda: format_prefix("{x}/", "w", None)],
)
def test_except_invalid_step_name_still_catches_ids_and_prefixes_for_one_release(
    check: Callable[[], object],
) -> None:
    # asteps 0.1 raised InvalidStepName for workflow ids and prefixes too.
    with pytest.raises(InvalidStepName):
        check()
