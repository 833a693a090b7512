"""The BIG-IP emulator speaks iControl REST as documented: checked on the wire with requests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from emulators.bigip import EmulatedBigip

PASSWORD = "emulated-Pa55"  # noqa: S105 (a test value)


@pytest.fixture
def unit(tmp_path: Path) -> Iterator[tuple[EmulatedBigip, str]]:
    with EmulatedBigip("admin", PASSWORD) as bigip:
        ca = tmp_path / "ca.pem"
        ca.write_text(bigip.management_ca_pem)
        yield bigip, str(ca)


def url(bigip: EmulatedBigip, path: str) -> str:
    return f"https://{bigip.address}:{bigip.port}{path}"


def login(bigip: EmulatedBigip, ca: str) -> str:
    answer = requests.post(
        url(bigip, "/mgmt/shared/authn/login"),
        json={"username": "admin", "password": PASSWORD, "loginProviderName": "tmos"},
        verify=ca,
        timeout=5,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["token"]["token"])


def test_token_login_then_the_token_header_on_every_request(unit):
    bigip, ca = unit
    bigip.add_server_ssl_profile("/Common/p")
    token = login(bigip, ca)
    path = "/mgmt/tm/ltm/profile/server-ssl/~Common~p"
    answer = requests.get(
        url(bigip, path), headers={"X-F5-Auth-Token": token}, verify=ca, timeout=5
    )
    assert answer.status_code == 200
    assert answer.json()["fullPath"] == "/Common/p"
    refused = requests.get(
        url(bigip, path), headers={"X-F5-Auth-Token": "nope"}, verify=ca, timeout=5
    )
    assert refused.status_code == 401
    assert refused.json() == {
        "code": 401,
        "message": "X-F5-Auth-Token does not exist.",
        "errorStack": [],
        "apiError": 3,
    }


def test_a_wrong_password_is_401_with_the_error_shape(unit):
    bigip, ca = unit
    answer = requests.post(
        url(bigip, "/mgmt/shared/authn/login"),
        json={"username": "admin", "password": "wrong", "loginProviderName": "tmos"},
        verify=ca,
        timeout=5,
    )
    assert answer.status_code == 401
    assert set(answer.json()) == {"code", "message", "errorStack", "apiError"}


def test_a_missing_object_is_404_naming_its_full_path(unit):
    bigip, ca = unit
    token = login(bigip, ca)
    answer = requests.get(
        url(bigip, "/mgmt/tm/cm/device-group/~Common~nothing"),
        headers={"X-F5-Auth-Token": token},
        verify=ca,
        timeout=5,
    )
    assert answer.status_code == 404
    assert answer.json()["code"] == 404
    assert "(/Common/nothing) was not found" in answer.json()["message"]


def test_certificate_upload_then_install_with_f5s_checksum(unit, lb_ca_pem):
    bigip, ca = unit
    headers = {"X-F5-Auth-Token": login(bigip, ca)}
    data = lb_ca_pem.encode()
    uploaded = requests.post(
        url(bigip, "/mgmt/shared/file-transfer/uploads/ws1-root.crt"),
        data=data,
        headers={
            **headers,
            "Content-Type": "application/octet-stream",
            "Content-Range": f"0-{len(data) - 1}/{len(data)}",
        },
        verify=ca,
        timeout=5,
    )
    assert uploaded.status_code == 200, uploaded.text
    body = {
        "name": "ws1-root",
        "partition": "ws1",
        "sourcePath": "file:///var/config/rest/downloads/ws1-root.crt",
    }
    installed = requests.post(
        url(bigip, "/mgmt/tm/sys/file/ssl-cert"), json=body, headers=headers, verify=ca, timeout=5
    )
    assert installed.status_code == 200, installed.text
    assert installed.json()["checksum"].startswith(f"SHA1:{len(data)}:")
    again = requests.post(
        url(bigip, "/mgmt/tm/sys/file/ssl-cert"), json=body, headers=headers, verify=ca, timeout=5
    )
    assert again.status_code == 409
    assert again.json()["message"].endswith("already exists in partition ws1.")
    read = requests.get(
        url(bigip, "/mgmt/tm/sys/file/ssl-cert/~ws1~ws1-root"),
        headers=headers,
        verify=ca,
        timeout=5,
    )
    assert read.json()["fullPath"] == "/ws1/ws1-root"


def test_failover_status_has_the_nested_stats_shape(unit):
    bigip, ca = unit
    bigip.failover_state = "standby"
    headers = {"X-F5-Auth-Token": login(bigip, ca)}
    document = requests.get(
        url(bigip, "/mgmt/tm/cm/failover-status"), headers=headers, verify=ca, timeout=5
    ).json()
    entry = document["entries"]["https://localhost/mgmt/tm/cm/failover-status/0"]
    assert entry["nestedStats"]["entries"]["status"]["description"] == "STANDBY"


def test_faults_and_counters(unit):
    bigip, ca = unit
    bigip.fail_next(1, "500")
    answer = requests.post(url(bigip, "/mgmt/shared/authn/login"), json={}, verify=ca, timeout=5)
    assert answer.status_code == 500 and answer.json()["code"] == 500
    bigip.fail_next(1, "reset")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.post(url(bigip, "/mgmt/shared/authn/login"), json={}, verify=ca, timeout=5)
    token = login(bigip, ca)
    assert bigip.logins() == 3 and bigip.reads() == 0 and bigip.writes() == 0
    deleted = requests.delete(
        url(bigip, f"/mgmt/shared/authz/tokens/{token}"),
        headers={"X-F5-Auth-Token": token},
        verify=ca,
        timeout=5,
    )
    assert deleted.status_code == 200
    assert bigip.writes() == 0, "token housekeeping is not a change to the device"
    bigip.reset_counters()
    assert sum(bigip.requests().values()) == 0


def test_run_by_hand_prints_one_json_line_and_stops_on_sigterm(tmp_path):
    environment = {**os.environ, "BIGIP_PASSWORD": PASSWORD}
    ca_file = tmp_path / "ca.pem"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulators.bigip",
            "--ca-file",
            str(ca_file),
            "--device-group",
            "ws1-ha",
            "--server-ssl-profile",
            "/Common/p",
        ],
        stdout=subprocess.PIPE,
        env=environment,
        cwd=Path(__file__).resolve().parents[2],
        text=True,
    )
    try:
        assert process.stdout is not None
        description = json.loads(process.stdout.readline())
        assert description["address"] == "127.0.0.1" and description["port"] > 0
        assert description["device_groups"] == ["/Common/ws1-ha"]
        answer = requests.post(
            f"https://127.0.0.1:{description['port']}/mgmt/shared/authn/login",
            json={"username": "admin", "password": PASSWORD},
            verify=str(ca_file),
            timeout=5,
        )
        assert answer.status_code == 200
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
