"""Admin mutations are safe to retry: a request_id applied once replays its first answer
and changes nothing (controlplane/idempotency.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import grpc
import pytest
from sqlalchemy import select, update

from aibridge.v1 import admin_pb2
from controlplane.store.applied_requests import delete_expired
from controlplane.store.db import Database
from controlplane.store.models import AppliedRequest, utcnow
from tests.harness import (
    Controlplane,
    Secrets,
    ctl,
    free_port,
    printed_revision,
    unique,
    wait_until,
)

KEY = "sk-test-" + "k" * 24


@dataclass(frozen=True)
class Case:
    """A mutation: what it needs made first (returns the names it made), and its request."""

    method: str
    request: Callable[[dict[str, str]], Any]
    setup: Callable[[Controlplane], dict[str, str]] = lambda cp: {}


def _provider(cp: Controlplane) -> dict[str, str]:
    name = unique("p")
    cp.admin.create_provider(name, keys=[KEY])
    return {"provider": name}


def _token(cp: Controlplane) -> dict[str, str]:
    name = unique("t")
    cp.admin.CreateToken(admin_pb2.CreateTokenRequest(name=name))
    return {"token": name}


def _user(cp: Controlplane) -> dict[str, str]:
    name = unique("u")
    cp.admin.CreateUser(admin_pb2.CreateUserRequest(name=name))
    return {"user": name}


def _team(cp: Controlplane) -> dict[str, str]:
    name = unique("team")
    cp.admin.CreateTeam(admin_pb2.CreateTeamRequest(name=name))
    return {"team": name}


def _member(cp: Controlplane) -> dict[str, str]:
    made = _user(cp) | _team(cp)
    cp.admin.AddTeamMember(admin_pb2.TeamMemberRequest(team=made["team"], user=made["user"]))
    return made


def _limits(cp: Controlplane) -> dict[str, str]:
    made = _user(cp)
    scope = f"user:{made['user']}"
    cp.admin.SetLimits(admin_pb2.SetLimitsRequest(scope=scope, requests_per_minute=5))
    return made


def _price(cp: Controlplane) -> dict[str, str]:
    model = unique("model")
    cp.admin.SetPrice(admin_pb2.SetPriceRequest(model=model, input=1, output=2))
    return {"model": model}


CASES = [
    Case("CreateProvider", lambda m: admin_pb2.CreateProviderRequest(
        name=unique("p"), type="openai", base_url="https://api.example.com/v1", keys=[KEY])),
    Case("UpdateProvider", lambda m: admin_pb2.UpdateProviderRequest(
        ref=m["provider"], add_keys=["sk-added-" + "a" * 24]), _provider),
    Case("DeleteProvider", lambda m: admin_pb2.DeleteProviderRequest(ref=m["provider"]),
         _provider),
    Case("CreateToken", lambda m: admin_pb2.CreateTokenRequest(name=unique("t"))),
    Case("RevokeToken", lambda m: admin_pb2.RevokeTokenRequest(ref=m["token"]), _token),
    Case("CreateUser", lambda m: admin_pb2.CreateUserRequest(name=unique("u"))),
    Case("UpdateUser", lambda m: admin_pb2.UpdateUserRequest(ref=m["user"], enabled=False),
         _user),
    Case("DeleteUser", lambda m: admin_pb2.DeleteUserRequest(ref=m["user"]), _user),
    Case("CreateTeam", lambda m: admin_pb2.CreateTeamRequest(name=unique("team"))),
    Case("DeleteTeam", lambda m: admin_pb2.DeleteTeamRequest(ref=m["team"]), _team),
    Case("AddTeamMember", lambda m: admin_pb2.TeamMemberRequest(team=m["team"], user=m["user"]),
         lambda cp: _user(cp) | _team(cp)),
    Case("RemoveTeamMember",
         lambda m: admin_pb2.TeamMemberRequest(team=m["team"], user=m["user"]), _member),
    Case("SetSetting",
         lambda m: admin_pb2.SetSettingRequest(key="record.max_text_bytes", value="8192")),
    Case("SetLimits", lambda m: admin_pb2.SetLimitsRequest(
        scope=f"user:{m['user']}", tokens_per_minute=1000), _user),
    Case("ClearLimits", lambda m: admin_pb2.ClearLimitsRequest(scope=f"user:{m['user']}"),
         _limits),
    Case("SetPrice", lambda m: admin_pb2.SetPriceRequest(model=unique("model"), input=3, output=4)),
    Case("DeletePrice", lambda m: admin_pb2.DeletePriceRequest(model=m["model"]), _price),
    Case("ImportPrices", lambda m: admin_pb2.ImportPricesRequest(
        prices=[admin_pb2.Price(model=unique("model"), input=1, output=1)])),
    # Moves nothing here (the ring has one key): tests/test_key_rotation.py replays a move.
    Case("ReencryptKeys", lambda m: admin_pb2.ReencryptKeysRequest(batch_size=1)),
]  # fmt: skip


def with_call(cp: Controlplane, method: str, request: Any) -> tuple[Any, bool]:
    """The answer, and whether it says it replays an earlier one."""
    answer, call = getattr(cp.admin.stub, method).with_call(
        request, metadata=cp.admin.metadata, timeout=15
    )
    return answer, ("aibridge-replayed", "true") in tuple(call.trailing_metadata())


def last_audit_id(cp: Controlplane) -> int:
    entries = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=1)).entries
    return entries[0].id if entries else 0


def test_every_mutation_takes_a_request_id() -> None:
    service = admin_pb2.DESCRIPTOR.services_by_name["Admin"]
    reads = {m.name for m in service.methods if m.name.startswith(("Get", "List", "Query"))}
    mutations = {m.name for m in service.methods} - reads - {"WaitForRevision", "WhoAmI"}
    assert mutations == {case.method for case in CASES}
    for name in mutations:
        assert "request_id" in service.methods_by_name[name].input_type.fields_by_name, name


@pytest.mark.parametrize("case", CASES, ids=[c.method for c in CASES])
def test_a_repeated_request_id_replays_the_first_answer_and_changes_nothing(
    shared_controlplane: Controlplane, case: Case
) -> None:
    cp = shared_controlplane
    request = case.request(case.setup(cp))
    request.request_id = unique("request")

    first, replayed = with_call(cp, case.method, request)
    assert not replayed
    revision, audit_id = cp.admin.revision(), last_audit_id(cp)
    again, replayed = with_call(cp, case.method, request)

    assert replayed
    assert (cp.admin.revision(), last_audit_id(cp)) == (revision, audit_id)
    if case.method == "CreateToken":
        # The plaintext is never kept: the replay says so, with the token's id.
        assert first.token.startswith("abt_") and not first.replayed
        assert again.token == "" and again.replayed
        first.ClearField("token")
        again.ClearField("replayed")
    assert again == first


def test_the_added_key_is_added_once(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    name = _provider(cp)["provider"]
    request = admin_pb2.UpdateProviderRequest(
        ref=name, add_keys=["sk-added-" + "b" * 24], request_id=unique("request")
    )
    for _ in range(3):
        cp.admin.UpdateProvider(request)
    provider = cp.admin.GetProvider(admin_pb2.GetProviderRequest(ref=name))
    assert len(provider.keys) == 2


def test_a_replay_answers_even_after_the_revision_moved(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    request = admin_pb2.CreateTeamRequest(
        name=unique("team"), expected_revision=cp.admin.revision(), request_id=unique("request")
    )
    first = cp.admin.CreateTeam(request)
    _team(cp)  # the revision moves on
    assert cp.admin.CreateTeam(request) == first  # not ABORTED


def refusal(call: Callable[[], Any]) -> grpc.RpcError:
    with pytest.raises(grpc.RpcError) as caught:
        call()
    return caught.value


def test_a_request_id_given_to_another_call_is_refused(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    request_id = unique("request")
    cp.admin.CreateTeam(admin_pb2.CreateTeamRequest(name=unique("team"), request_id=request_id))
    revision = cp.admin.revision()

    other_arguments = admin_pb2.CreateTeamRequest(name=unique("team"), request_id=request_id)
    other_method = admin_pb2.CreateUserRequest(name=unique("u"), request_id=request_id)
    for method, request, says in (
        ("CreateTeam", other_arguments, "another call with other arguments"),
        ("CreateUser", other_method, "another call (CreateTeam)"),
    ):
        error = refusal(lambda: getattr(cp.admin, method)(request))  # noqa: B023
        assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert says in str(error.details())
        trailing: Any = error.trailing_metadata()
        assert ("aibridge-field", "request_id") in [tuple(item) for item in trailing]
    assert cp.admin.revision() == revision


@pytest.mark.parametrize("request_id", ["x" * 129, "é", "tab\there", "new\nline"])
def test_a_request_id_that_is_not_printable_ascii_is_refused(
    shared_controlplane: Controlplane, request_id: str
) -> None:
    cp = shared_controlplane
    revision = cp.admin.revision()
    request = admin_pb2.CreateTeamRequest(name=unique("team"), request_id=request_id)
    error = refusal(lambda: cp.admin.CreateTeam(request))
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert str(error.details()).startswith("request_id: must be 1 to 128 printable ASCII")
    assert cp.admin.revision() == revision


def test_a_refused_call_leaves_its_request_id_unused(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    request_id = unique("request")
    taken = _team(cp)["team"]
    duplicate = admin_pb2.CreateTeamRequest(name=taken, request_id=request_id)
    for _ in range(2):  # refused each time: a refusal is not kept
        assert refusal(lambda: cp.admin.CreateTeam(duplicate)).code() == (
            grpc.StatusCode.ALREADY_EXISTS
        )
    fresh = admin_pb2.CreateTeamRequest(name=unique("team"), request_id=request_id)
    assert cp.admin.CreateTeam(fresh).team.name == fresh.name


def test_calls_racing_with_one_request_id_apply_it_once(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    request = admin_pb2.CreateTokenRequest(name=unique("t"), request_id=unique("request"))
    start = threading.Barrier(8)
    answers: list[admin_pb2.CreateTokenResponse] = []

    def create() -> None:
        start.wait()
        answers.append(cp.admin.CreateToken(request))

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(answers) == 8
    assert len({a.info.id for a in answers}) == 1
    assert sorted(a.replayed for a in answers) == [False] + [True] * 7
    listed = cp.admin.ListTokens(admin_pb2.ListTokensRequest()).tokens
    assert [t.id for t in listed if t.name == request.name] == [answers[0].info.id]


def test_request_ids_are_forgotten_after_24_hours(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    old, recent = unique("old"), unique("recent")
    for request_id in (old, recent):
        cp.admin.CreateTeam(admin_pb2.CreateTeamRequest(name=unique("team"), request_id=request_id))
    db = Database(cp.database_url)
    try:
        with db.write() as session:
            session.execute(
                update(AppliedRequest)
                .where(AppliedRequest.request_id == old)
                .values(applied_at=utcnow() - timedelta(hours=24, minutes=1))
            )
        # Not deleted yet, but expired: the same id is a new call.
        again = admin_pb2.CreateTeamRequest(name=unique("team"), request_id=old)
        assert not with_call(cp, "CreateTeam", again)[1]
        with db.write() as session:
            session.execute(
                update(AppliedRequest)
                .where(AppliedRequest.request_id == old)
                .values(applied_at=utcnow() - timedelta(hours=25))
            )
        delete_expired(db)
        with db.read() as session:
            kept = set(session.scalars(select(AppliedRequest.request_id)))
        assert old not in kept and recent in kept
    finally:
        db.dispose()


def audited(cp: Controlplane, action: str, target: str) -> list[admin_pb2.AuditEntry]:
    entries = cp.admin.ListAudit(admin_pb2.ListAuditRequest(limit=200)).entries
    return [e for e in entries if e.action == action and target in e.target]


def test_a_change_committed_by_a_replica_that_died_before_answering_is_made_once(
    database_url: str, tmp_path: Path
) -> None:
    """aibridgectl's retry goes through the other replica with the same request id: the
    change is made once, audited once, and the first answer comes back."""
    secrets = Secrets()
    dying = Controlplane(
        database_url, tmp_path, secrets, name="replica-a",
        extra_args=("--test-exit-after-commit", "UpdateProvider"),
    ).start()  # fmt: skip
    other = Controlplane(database_url, tmp_path, secrets, name="replica-b").start()
    try:
        name = _provider(other)["provider"]
        both = f"{dying.address},{other.address}"
        result = ctl(
            dying, "--controlplane", both, "providers", "update", name, "--add-key", "-",
            stdin="sk-added-" + "c" * 24 + "\n",
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert dying.proc is not None and dying.proc.wait(timeout=15) == 17
        # The key aibridgectl made for this invocation, sent again through the other.
        retry = re.search(r"trying again with request id (\S+) through (\S+)\n", result.stderr)
        assert retry and retry[2] == other.address, result.stderr
        assert f"request id {retry[1]} was applied already, at revision" in result.stderr
        revision = printed_revision(result.stdout)
        provider = other.admin.GetProvider(admin_pb2.GetProviderRequest(ref=name))
        assert len(provider.keys) == 2
        assert [e.revision for e in audited(other, "provider.update", name)] == [revision]
        assert other.admin.revision() == revision
    finally:
        dying.stop()
        other.stop()


def test_a_token_created_by_a_replica_that_died_before_answering_is_created_once(
    database_url: str, tmp_path: Path
) -> None:
    secrets = Secrets()
    dying = Controlplane(
        database_url, tmp_path, secrets, name="replica-a",
        extra_args=("--test-exit-after-commit", "CreateToken"),
    ).start()  # fmt: skip
    other = Controlplane(database_url, tmp_path, secrets, name="replica-b").start()
    try:
        name = unique("t")
        both = f"{dying.address},{other.address}"
        result = ctl(dying, "--controlplane", both, "tokens", "create", name)
        # Created, but its secret was only in the answer that never came: said, exit 1.
        assert result.returncode == 1
        listed = other.admin.ListTokens(admin_pb2.ListTokensRequest()).tokens
        [token] = [t for t in listed if t.name == name]
        assert f"token {name} ({token.id}) was already created by this request" in result.stderr
        assert f"aibridgectl tokens revoke {token.id}" in result.stderr
        assert "abt_" not in result.stdout + result.stderr
        assert len(audited(other, "token.create", name)) == 1
    finally:
        dying.stop()
        other.stop()


def test_aibridgectl_request_id_run_twice_applies_once(shared_controlplane: Controlplane) -> None:
    cp = shared_controlplane
    name = _provider(cp)["provider"]
    request_id = unique("deploy")
    outputs = []
    for _ in range(2):
        result = ctl(
            cp, "--request-id", request_id, "providers", "update", name, "--add-key", "-",
            stdin="sk-added-" + "d" * 24 + "\n", check=True,
        )  # fmt: skip
        outputs.append(result)
    assert printed_revision(outputs[0].stdout) == printed_revision(outputs[1].stdout)
    assert "was applied already" not in outputs[0].stderr
    assert f"request id {request_id} was applied already" in outputs[1].stderr
    provider = cp.admin.GetProvider(admin_pb2.GetProviderRequest(ref=name))
    assert len(provider.keys) == 2


def test_aibridgectl_reads_through_the_next_address_when_one_is_down(
    shared_controlplane: Controlplane,
) -> None:
    cp = shared_controlplane
    down = f"127.0.0.1:{free_port()}"
    result = ctl(cp, "--controlplane", f"{down},{cp.address}", "providers", "list", check=True)
    assert result.stderr == ""
    result = ctl(cp, "--controlplane", f"{down},{down}", "providers", "list")
    assert result.returncode == 1
    assert result.stderr.startswith(f"error: UNAVAILABLE: the controlplane at {down} is")
    # A change that never got an answer: its request id, to run it again safely.
    result = ctl(cp, "--controlplane", down, "--request-id", "add-team-7", "teams", "create", "t7")
    assert result.returncode == 1
    assert result.stderr.count("trying again with request id add-team-7") == 3
    assert result.stderr.endswith(
        "the change may have been applied: to make sure it is applied once, run the same "
        "command again with --request-id add-team-7\n"
    )


def test_a_replayed_token_in_json_has_no_secret_and_exits_1(
    shared_controlplane: Controlplane,
) -> None:
    cp = shared_controlplane
    name, request_id = unique("t"), unique("request")
    first = ctl(cp, "--json", "--request-id", request_id, "tokens", "create", name, check=True)
    again = ctl(cp, "--json", "--request-id", request_id, "tokens", "create", name)
    assert again.returncode == 1
    created, replayed = json.loads(first.stdout), json.loads(again.stdout)
    assert created["token"].startswith("abt_") and created["replayed"] is False
    assert replayed["replayed"] is True and replayed["token"] == ""
    assert replayed["info"] == created["info"]


def test_a_controlplane_forgets_expired_request_ids_when_it_starts(
    controlplane: Controlplane,
) -> None:
    cp = controlplane
    old = unique("old")
    cp.admin.CreateTeam(admin_pb2.CreateTeamRequest(name=unique("team"), request_id=old))
    cp.stop()
    db = Database(cp.database_url)
    try:
        with db.write() as session:
            session.execute(
                update(AppliedRequest).values(applied_at=utcnow() - timedelta(hours=25))
            )
        cp.start()

        def forgotten() -> bool:
            with db.read() as session:
                return session.get(AppliedRequest, old) is None

        wait_until(forgotten, what="the expired request id deleted")
    finally:
        db.dispose()


def test_aibridgectl_retries_a_change_that_got_no_answer_in_time(
    shared_controlplane: Controlplane,
) -> None:
    """An address that accepts connections and never answers: the change's deadline
    passes, and it goes through the next address with its request id; a read too, but
    with no other address to try, a read is not tried again (it may just be slow)."""
    cp = shared_controlplane
    name = _team(cp)["team"]
    with socket.create_server(("127.0.0.1", 0)) as silent:
        mute = f"127.0.0.1:{silent.getsockname()[1]}"
        result = ctl(
            cp, "--controlplane", f"{mute},{cp.address}", "--timeout", "1",
            "teams", "delete", name, check=True,
        )  # fmt: skip
        assert f"got DEADLINE_EXCEEDED from {mute}; trying again" in result.stderr
        assert f"deleted team {name}" in result.stdout
        read = ctl(cp, "--controlplane", f"{mute},{cp.address}", "--timeout", "1", "teams", "list")
        assert read.returncode == 0 and "no answer" not in read.stderr
        read = ctl(cp, "--controlplane", mute, "--timeout", "1", "teams", "list")
        assert read.returncode == 1
        assert read.stderr.startswith(
            f"error: DEADLINE_EXCEEDED: Deadline Exceeded (no answer from {mute}"
        )
        assert "trying again" not in read.stderr


def test_no_secret_is_kept_with_a_request_id(shared_controlplane: Controlplane) -> None:
    """A new token's plaintext is not in the kept answer, and a provider key is not in
    the fingerprint, not even hashed: calls differing only in their keys are one call."""
    cp = shared_controlplane
    token_id, provider_id = unique("token"), unique("provider")
    created = cp.admin.CreateToken(
        admin_pb2.CreateTokenRequest(name=unique("t"), request_id=token_id)
    )
    name = unique("p")
    first = cp.admin.create_provider(name, keys=[KEY], request_id=provider_id)
    other_key = "sk-other-" + "o" * 24
    assert cp.admin.create_provider(name, keys=[other_key], request_id=provider_id) == first
    db = Database(cp.database_url)
    try:
        with db.read() as session:
            rows = {
                r.request_id: r
                for r in session.scalars(
                    select(AppliedRequest).where(
                        AppliedRequest.request_id.in_([token_id, provider_id])
                    )
                )
            }
    finally:
        db.dispose()
    assert created.token.encode() not in rows[token_id].reply
    assert KEY.encode() not in rows[provider_id].reply
