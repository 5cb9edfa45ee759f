"""A bad AWS environment (endpoint, region, profile) is said in one line with
exit 3, as any other store or SWF error is: never a traceback.

The environment is read by botocore when a client is made; what it refuses
there (``ValueError: Invalid endpoint``, ``InvalidRegionError``,
``ProfileNotFound``) is the user's to fix, not a bug of asteps.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from asteps.cli import main
from asteps.testing import MotoServer

from .swf_processes import DOMAIN, FLOW

BAD_ENVIRONMENTS = [
    pytest.param("AWS_ENDPOINT_URL", "not a url", id="endpoint-not-a-url"),
    pytest.param("AWS_ENDPOINT_URL", "file:///etc/passwd", id="endpoint-file-url"),
    pytest.param("AWS_DEFAULT_REGION", "../../etc", id="region-path"),
    pytest.param("AWS_PROFILE", "nosuch", id="unknown-profile"),
]

COMMANDS = [
    pytest.param(["steps", "list", "--workflow-id", "w1", "--store", "s3://bkt1"], id="steps-list"),
    pytest.param(["swf", "status", "--domain", DOMAIN], id="swf-status"),
    pytest.param(["swf", "worker", FLOW, "--domain", DOMAIN], id="swf-worker"),
]


@pytest.mark.parametrize(("variable", "value"), BAD_ENVIRONMENTS)
@pytest.mark.parametrize("command", COMMANDS)
def test_a_bad_aws_environment_exits_3_with_one_line_naming_what_to_check(
    aws: MotoServer,
    monkeypatch: pytest.MonkeyPatch,
    command: list[str],
    variable: str,
    value: str,
) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    monkeypatch.setenv(variable, value)
    if variable == "AWS_DEFAULT_REGION":
        monkeypatch.delenv("AWS_REGION", raising=False)

    result = CliRunner().invoke(main, command)

    assert result.exit_code == 3, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    said = " ".join(result.stderr.split("error: ", 1)[-1].split())  # a worker says hello first
    assert "error: cannot open an" in result.stderr, result.stderr
    assert variable.removeprefix("AWS_DEFAULT_").removeprefix("AWS_") in said


@pytest.mark.parametrize("command", COMMANDS[1:])  # SWF needs a region; moto's S3 does not
def test_no_region_names_the_variable_botocore_reads_not_aws_region(
    aws: MotoServer, monkeypatch: pytest.MonkeyPatch, tmp_path: object, command: list[str]
) -> None:
    """botocore reads a region from AWS_DEFAULT_REGION (or the config files),
    never from AWS_REGION: a user who set only AWS_REGION is told which
    variable to set, not pointed back at the one that does nothing."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", aws.endpoint_url)
    monkeypatch.delenv("AWS_DEFAULT_REGION", raising=False)
    monkeypatch.setenv("AWS_REGION", "us-east-1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/nonexistent/asteps-test-aws-config")

    result = CliRunner().invoke(main, command)

    assert result.exit_code == 3, result.output
    said = " ".join(result.stderr.split("error: ", 1)[-1].split())
    assert "AWS_DEFAULT_REGION" in said
    assert "does not read AWS_REGION" in said
