"""The Admin service: gRPC in and out of the store, errors mapped to status codes.

Store calls are synchronous SQLAlchemy and run in a worker thread; after each committed
mutation the publisher is told, so subscribers hear of it without waiting for a poll.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Awaitable, Callable, Iterable
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import grpc
from google.protobuf.message import Message
from sqlalchemy.orm import Session

from aibridge.v1 import admin_pb2, admin_pb2_grpc
from common.clouds import effective_region
from common.wire import REPLAYED_METADATA
from controlplane import idempotency
from controlplane.auth import Credentials, actor
from controlplane.cache import SnapshotCache
from controlplane.errors import AlreadyExists, InvalidArgument, NotFound
from controlplane.fleet import DEFAULT_GRACE, MAX_GRACE, Fleet
from controlplane.pricing import entry as price_entry
from controlplane.publisher import SnapshotPublisher
from controlplane.records import Bounded, preview_record, summary, timestamp, whole_record
from controlplane.registry import SubscriberState
from controlplane.store import applied_requests, audit, key_rotation, models
from controlplane.store.db import Database, DatabaseUnavailable, RevisionConflict
from controlplane.store.interceptions import InterceptionFilter, InterceptionLog
from controlplane.store.limit_sets import LimitChanges, LimitSet, LimitSets, models_of, providers_of
from controlplane.store.prices import Prices
from controlplane.store.providers import ProviderChanges, Providers, model_map_of
from controlplane.store.settings import Settings, SettingValue
from controlplane.store.spend import Spending
from controlplane.store.teams import TeamInfo, Teams
from controlplane.store.tokens import Tokens
from controlplane.store.usage import UsageLog
from controlplane.store.users import UserInfo, Users

log = logging.getLogger(__name__)

T = TypeVar("T")
Answer = TypeVar("Answer", bound=Message)
# The Admin method being served (set by `_rpc`): the name an idempotency key is kept under.
_method: ContextVar[str] = ContextVar("admin_method", default="")
MAX_WAIT_SECONDS = 600.0
DEFAULT_REENCRYPT_BATCH = 100
MAX_REENCRYPT_BATCH = 10_000

_STATUS: dict[type[Exception], grpc.StatusCode] = {
    InvalidArgument: grpc.StatusCode.INVALID_ARGUMENT,
    NotFound: grpc.StatusCode.NOT_FOUND,
    AlreadyExists: grpc.StatusCode.ALREADY_EXISTS,
    RevisionConflict: grpc.StatusCode.ABORTED,
    DatabaseUnavailable: grpc.StatusCode.UNAVAILABLE,
}


def _rpc(method: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Maps store errors to gRPC status codes, with messages that name the field."""

    @functools.wraps(method)
    async def wrapper(self: AdminService, request: Any, context: grpc.aio.ServicerContext) -> T:
        named = _method.set(method.__name__)
        try:
            return await method(self, request, context)
        except tuple(_STATUS) as exc:
            code = next(c for t, c in _STATUS.items() if isinstance(exc, t))
            message = str(exc)
            if isinstance(exc, DatabaseUnavailable):
                message = f"database unavailable: {exc}"
            log.info("%s refused: %s %s", method.__name__, code.name, message)
            if isinstance(exc, InvalidArgument):
                # Where a form shows the message: beside this field.
                await context.abort(code, message, (("aibridge-field", exc.field),))
            await context.abort(code, message)
            raise  # unreachable: abort raises
        except asyncio.CancelledError:
            raise
        except grpc.aio.AbortError:
            raise
        except Exception:
            # Never the exception's text: a driver's message can quote the request.
            log.exception("%s failed", method.__name__)
            await context.abort(
                grpc.StatusCode.INTERNAL, "internal error; see the controlplane log"
            )
            raise
        finally:
            _method.reset(named)

    return wrapper


class AdminService(admin_pb2_grpc.AdminServicer):
    def __init__(
        self,
        db: Database,
        providers: Providers,
        tokens: Tokens,
        usage: UsageLog,
        interceptions: InterceptionLog,
        settings: Settings,
        cache: SnapshotCache,
        publisher: SnapshotPublisher,
        fleet: Fleet,
        controlplane_id: str,
        users: Users,
        teams: Teams,
        credentials: Credentials,
        exit_after_commit: str = "",
    ) -> None:
        self.db = db
        self.providers = providers
        self.tokens = tokens
        self.usage = usage
        self.interceptions = interceptions
        self.settings = settings
        self.cache = cache
        self.publisher = publisher
        self.fleet = fleet
        self.controlplane_id = controlplane_id
        self.users = users
        self.teams = teams
        self.credentials = credentials
        self.exit_after_commit = exit_after_commit  # a test hook (--test-exit-after-commit)
        self.limit_sets = LimitSets(db)
        self.prices = Prices(db)
        self.spending = Spending(db)

    async def _mutate(
        self, request: Any, context: grpc.aio.ServicerContext, change: Callable[[str], Answer]
    ) -> Answer:
        """Runs `change(actor)`, a store mutation and the answer made of it, in one
        transaction with the call's idempotency key (controlplane/idempotency.py): a key
        applied already changes nothing and gets the first answer again."""
        method = _method.get()
        if not method:
            raise RuntimeError("_mutate serves a method wrapped in @_rpc")
        key = idempotency.key_of(method, request)
        who = actor(context)

        def run() -> Answer:
            if key is not None:
                applied_requests.check_committed(self.db, key)
            check = functools.partial(applied_requests.check, key=key) if key else _no_check
            with self.db.admin_call(check) as call:
                answer = change(who)
                # A call that reached no mutation changed nothing, and has nothing to replay.
                if key is not None and call.revision is not None:
                    kept = idempotency.kept(method, answer)
                    applied_requests.record(call.session, key, call.revision, kept)
                return answer

        work = asyncio.ensure_future(asyncio.to_thread(run))
        # The publisher hears of a commit even when this call was cancelled meanwhile (its
        # deadline passed): the worker thread commits all the same.
        work.add_done_callback(self._publish)
        try:
            answer = await asyncio.shield(work)
        except applied_requests.Replay as replay:
            log.info("%s replayed its first answer (revision %d)", method, replay.revision)
            context.set_trailing_metadata(((REPLAYED_METADATA, "true"),))
            # The stored answer parses as the method's own answer type.
            return idempotency.replayed(method, replay.reply)  # type: ignore[return-value]
        if method == self.exit_after_commit:
            idempotency.exit_after_commit(method)
        return answer

    def _publish(self, work: asyncio.Future[Any]) -> None:
        """After a change, or a replay of one (a replica that died before telling its
        subscribers may have left them behind on SQLite, which has no NOTIFY)."""
        if work.cancelled():
            return
        error = work.exception()
        if error is None or isinstance(error, applied_requests.Replay):
            self.publisher.changed()

    # Providers

    @_rpc
    async def CreateProvider(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.ProviderResponse:
            revision, provider = self.providers.create(
                who,
                name=request.name,
                type=request.type,
                base_url=request.base_url,
                display_name=request.display_name,
                enabled=not request.disabled,
                keys=list(request.keys),
                expected_revision=_expected(request),
                region=request.region,
                project=request.project,
                model_map=_model_map(request.model_map),
            )
            return admin_pb2.ProviderResponse(
                revision=revision, provider=provider_message(provider)
            )

        return await self._mutate(request, context, change)

    @_rpc
    async def GetProvider(self, request, context):  # type: ignore[no-untyped-def]
        return provider_message(await asyncio.to_thread(self.providers.get, request.ref))

    @_rpc
    async def ListProviders(self, request, context):  # type: ignore[no-untyped-def]
        revision, providers = await asyncio.to_thread(self.providers.list)
        return admin_pb2.ListProvidersResponse(
            revision=revision, providers=[provider_message(p) for p in providers]
        )

    @_rpc
    async def UpdateProvider(self, request, context):  # type: ignore[no-untyped-def]
        changes = ProviderChanges(
            name=request.name if request.HasField("name") else None,
            base_url=request.base_url if request.HasField("base_url") else None,
            enabled=request.enabled if request.HasField("enabled") else None,
            display_name=request.display_name if request.HasField("display_name") else None,
            add_keys=list(request.add_keys),
            remove_key_ids=list(request.remove_key_ids),
            region=request.region if request.HasField("region") else None,
            project=request.project if request.HasField("project") else None,
            model_map=_model_map(request.model_map),
            clear_model_map=request.clear_model_map,
        )

        def change(who: str) -> admin_pb2.ProviderResponse:
            revision, provider = self.providers.update(
                who, request.ref, changes, _expected(request)
            )
            return admin_pb2.ProviderResponse(
                revision=revision, provider=provider_message(provider)
            )

        return await self._mutate(request, context, change)

    @_rpc
    async def DeleteProvider(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.DeleteProviderResponse:
            revision, provider = self.providers.delete(who, request.ref, _expected(request))
            return admin_pb2.DeleteProviderResponse(
                revision=revision, id=provider.id, name=provider.name
            )

        return await self._mutate(request, context, change)

    # Gateway tokens

    @_rpc
    async def CreateToken(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.CreateTokenResponse:
            revision, token, plaintext = self.tokens.create(
                who, request.name, request.expires_in_seconds, _expected(request), request.user
            )
            return admin_pb2.CreateTokenResponse(
                revision=revision, info=token_message(token), token=plaintext
            )

        return await self._mutate(request, context, change)

    @_rpc
    async def ListTokens(self, request, context):  # type: ignore[no-untyped-def]
        revision, tokens = await asyncio.to_thread(self.tokens.list, request.include_revoked)
        return admin_pb2.ListTokensResponse(
            revision=revision, tokens=[token_message(t) for t in tokens]
        )

    @_rpc
    async def RevokeToken(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.TokenResponse:
            revision, token = self.tokens.revoke(who, request.ref, _expected(request))
            return admin_pb2.TokenResponse(revision=revision, info=token_message(token))

        return await self._mutate(request, context, change)

    # Users and teams

    @_rpc
    async def CreateUser(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.UserResponse:
            revision, user = self.users.create(
                who, request.name, request.email, not request.disabled, _expected(request)
            )
            return admin_pb2.UserResponse(revision=revision, user=user_message(user))

        return await self._mutate(request, context, change)

    @_rpc
    async def GetUser(self, request, context):  # type: ignore[no-untyped-def]
        return user_message(await asyncio.to_thread(self.users.get, request.ref))

    @_rpc
    async def ListUsers(self, request, context):  # type: ignore[no-untyped-def]
        revision, users = await asyncio.to_thread(self.users.list)
        return admin_pb2.ListUsersResponse(
            revision=revision, users=[user_message(u) for u in users]
        )

    @_rpc
    async def UpdateUser(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.UserResponse:
            revision, user = self.users.update(
                who,
                request.ref,
                request.enabled if request.HasField("enabled") else None,
                request.email if request.HasField("email") else None,
                _expected(request),
            )
            return admin_pb2.UserResponse(revision=revision, user=user_message(user))

        return await self._mutate(request, context, change)

    @_rpc
    async def DeleteUser(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.DeleteUserResponse:
            revision, deleted = self.users.delete(who, request.ref, _expected(request))
            return admin_pb2.DeleteUserResponse(
                revision=revision,
                id=deleted.user.id,
                name=deleted.user.name,
                revoked_tokens=deleted.revoked_tokens,
            )

        return await self._mutate(request, context, change)

    @_rpc
    async def CreateTeam(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.TeamResponse:
            revision, team = self.teams.create(who, request.name, _expected(request))
            return admin_pb2.TeamResponse(revision=revision, team=team_message(team))

        return await self._mutate(request, context, change)

    @_rpc
    async def GetTeam(self, request, context):  # type: ignore[no-untyped-def]
        return team_message(await asyncio.to_thread(self.teams.get, request.ref))

    @_rpc
    async def ListTeams(self, request, context):  # type: ignore[no-untyped-def]
        revision, teams = await asyncio.to_thread(self.teams.list)
        return admin_pb2.ListTeamsResponse(
            revision=revision, teams=[team_message(t) for t in teams]
        )

    @_rpc
    async def DeleteTeam(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.DeleteTeamResponse:
            revision, team = self.teams.delete(who, request.ref, _expected(request))
            return admin_pb2.DeleteTeamResponse(revision=revision, id=team.id, name=team.name)

        return await self._mutate(request, context, change)

    @_rpc
    async def AddTeamMember(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.TeamResponse:
            revision, team = self.teams.add_member(
                who, request.team, request.user, _expected(request)
            )
            return admin_pb2.TeamResponse(revision=revision, team=team_message(team))

        return await self._mutate(request, context, change)

    @_rpc
    async def RemoveTeamMember(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.TeamResponse:
            revision, team = self.teams.remove_member(
                who, request.team, request.user, _expected(request)
            )
            return admin_pb2.TeamResponse(revision=revision, team=team_message(team))

        return await self._mutate(request, context, change)

    # Gateway settings

    @_rpc
    async def ListSettings(self, request, context):  # type: ignore[no-untyped-def]
        revision, values = await asyncio.to_thread(self.settings.list)
        return admin_pb2.ListSettingsResponse(
            revision=revision, settings=[setting_message(v) for v in values]
        )

    @_rpc
    async def SetSetting(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.SetSettingResponse:
            revision, value = self.settings.set(who, request.key, request.value, _expected(request))
            return admin_pb2.SetSettingResponse(revision=revision, setting=setting_message(value))

        return await self._mutate(request, context, change)

    # Limit sets

    @_rpc
    async def SetLimits(self, request, context):  # type: ignore[no-untyped-def]
        def given(field: str) -> Any:
            return getattr(request, field) if request.HasField(field) else None

        changes = LimitChanges(
            per_member=given("per_member"),
            requests_per_minute=given("requests_per_minute"),
            tokens_per_minute=given("tokens_per_minute"),
            max_concurrent=given("max_concurrent"),
            monthly_budget_usd=given("monthly_budget_usd"),
            providers=list(request.providers.values) if request.HasField("providers") else None,
            models=list(request.models.values) if request.HasField("models") else None,
            clear=list(request.clear),
        )

        def change(who: str) -> admin_pb2.LimitsResponse:
            revision, limit_set = self.limit_sets.set(
                who, request.scope, changes, _expected(request)
            )
            return admin_pb2.LimitsResponse(revision=revision, limits=limits_message(limit_set))

        return await self._mutate(request, context, change)

    @_rpc
    async def ListLimits(self, request, context):  # type: ignore[no-untyped-def]
        revision, sets = await asyncio.to_thread(self.limit_sets.list)
        return admin_pb2.ListLimitsResponse(
            revision=revision, limits=[limits_message(s) for s in sets]
        )

    @_rpc
    async def ClearLimits(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.ClearLimitsResponse:
            revision, scope = self.limit_sets.clear_set(who, request.scope, _expected(request))
            return admin_pb2.ClearLimitsResponse(revision=revision, scope=scope)

        return await self._mutate(request, context, change)

    # Prices

    @_rpc
    async def ListPrices(self, request, context):  # type: ignore[no-untyped-def]
        revision, prices = await asyncio.to_thread(self.prices.list)
        return admin_pb2.ListPricesResponse(
            revision=revision, prices=[price_message(p) for p in prices]
        )

    @_rpc
    async def SetPrice(self, request, context):  # type: ignore[no-untyped-def]
        entry = price_entry(
            request.model,
            request.input,
            request.output,
            request.cache_read if request.HasField("cache_read") else None,
            request.cache_write if request.HasField("cache_write") else None,
        )

        def change(who: str) -> admin_pb2.PriceResponse:
            revision, price = self.prices.set(who, entry, _expected(request))
            return admin_pb2.PriceResponse(revision=revision, price=price_message(price))

        return await self._mutate(request, context, change)

    @_rpc
    async def DeletePrice(self, request, context):  # type: ignore[no-untyped-def]
        def change(who: str) -> admin_pb2.DeletePriceResponse:
            revision, model = self.prices.delete(who, request.model, _expected(request))
            return admin_pb2.DeletePriceResponse(revision=revision, model=model)

        return await self._mutate(request, context, change)

    @_rpc
    async def ImportPrices(self, request, context):  # type: ignore[no-untyped-def]
        entries = []
        for n, p in enumerate(request.prices, 1):
            try:
                entries.append(price_entry(p.model, p.input, p.output, p.cache_read, p.cache_write))
            except InvalidArgument as exc:
                raise InvalidArgument(f"prices[{n}].{exc.field}", exc.message) from None

        def change(who: str) -> admin_pb2.ImportPricesResponse:
            revision, imported, deleted = self.prices.import_entries(
                who, entries, request.replace, _expected(request)
            )
            return admin_pb2.ImportPricesResponse(
                revision=revision, imported=imported, deleted=deleted
            )

        return await self._mutate(request, context, change)

    # Subscribers

    @_rpc
    async def GetStatus(self, request, context):  # type: ignore[no-untyped-def]
        revision = await asyncio.to_thread(self.db.current_revision)
        keyring = self.providers.keyring
        protected = await asyncio.to_thread(key_rotation.protection, self.db, keyring)
        return admin_pb2.Status(
            revision=revision,
            snapshot_version=self.cache.version,
            controlplane_id=self.controlplane_id,
            subscribers=[subscriber_message(s) for s in await self.fleet.all()],
            key_ring=[
                admin_pb2.KeyRingEntry(position=i + 1, fingerprint=f, stored_keys=n)
                for i, (f, n) in enumerate(
                    zip(keyring.fingerprints, protected.by_entry, strict=True)
                )
            ],
            undecryptable_keys=protected.undecryptable,
        )

    @_rpc
    async def ReencryptKeys(self, request, context):  # type: ignore[no-untyped-def]
        size = request.batch_size or DEFAULT_REENCRYPT_BATCH
        if size > MAX_REENCRYPT_BATCH:
            raise InvalidArgument("batch_size", f"must be at most {MAX_REENCRYPT_BATCH:,}")

        def change(who: str) -> admin_pb2.ReencryptKeysResponse:
            batch = key_rotation.reencrypt_batch(self.db, self.providers.keyring, who, size)
            return admin_pb2.ReencryptKeysResponse(
                reencrypted=batch.reencrypted, remaining=batch.remaining
            )

        return await self._mutate(request, context, change)

    @_rpc
    async def WaitForRevision(self, request, context):  # type: ignore[no-untyped-def]
        if request.revision == 0:
            raise InvalidArgument("revision", "is required")
        timeout = request.timeout_seconds or 30.0
        if not 0 < timeout <= MAX_WAIT_SECONDS:
            raise InvalidArgument("timeout_seconds", f"must be between 0 and {MAX_WAIT_SECONDS:g}")
        grace = DEFAULT_GRACE.total_seconds()
        if request.HasField("fleet_grace_seconds"):
            grace = request.fleet_grace_seconds
        if not 0 <= grace <= MAX_GRACE.total_seconds():
            raise InvalidArgument(
                "fleet_grace_seconds", f"must be between 0 and {MAX_GRACE.total_seconds():g}"
            )
        remaining = context.time_remaining()
        if remaining is not None:
            timeout = min(timeout, max(remaining - 0.2, 0))
        laggards = await self.fleet.wait_for(request.revision, timeout, timedelta(seconds=grace))
        return admin_pb2.WaitForRevisionResponse(
            done=not laggards, laggards=[subscriber_message(s) for s in laggards]
        )

    # Usage and audit

    @_rpc
    async def QueryUsage(self, request, context):  # type: ignore[no-untyped-def]
        group_by = request.group_by or "provider"
        rows = await asyncio.to_thread(
            self.usage.totals,
            group_by,
            _time(request, "since"),
            _time(request, "until"),
            request.provider,
            request.bucket_seconds,
        )
        return admin_pb2.QueryUsageResponse(
            group_by=group_by,
            rows=[
                admin_pb2.UsageRow(**{**vars(r), "bucket_start": timestamp(r.bucket_start)})
                for r in rows
            ],
        )

    @_rpc
    async def WhoAmI(self, request, context):  # type: ignore[no-untyped-def]
        role = self.credentials.role_of(context.invocation_metadata())
        return admin_pb2.WhoAmIResponse(role=str(role or ""), request_ids=True)

    @_rpc
    async def QuerySpend(self, request, context):  # type: ignore[no-untyped-def]
        report = await asyncio.to_thread(self.spending.report, request.by, request.month)
        return admin_pb2.QuerySpendResponse(
            by=report.by,
            month=report.month,
            rows=[
                admin_pb2.SpendRow(
                    key=line.name,
                    id=line.id,
                    spent_usd=line.spent_usd,
                    requests=line.requests,
                    budget_usd=line.budget_usd,
                )  # fmt: skip
                for line in report.lines
            ],
            unpriced=report.unpriced,
        )

    # Interceptions and sessions

    @_rpc
    async def ListInterceptions(self, request, context):  # type: ignore[no-untyped-def]
        records = Bounded(preview_record)
        cursor = await asyncio.to_thread(
            self.interceptions.calls,
            _filter(request.filter),
            request.limit,
            request.cursor,
            records.take,
        )
        return admin_pb2.ListInterceptionsResponse(
            interceptions=records.messages, next_cursor=cursor
        )

    @_rpc
    async def GetInterception(self, request, context):  # type: ignore[no-untyped-def]
        return whole_record(await asyncio.to_thread(self.interceptions.get, request.id))

    @_rpc
    async def ListSessions(self, request, context):  # type: ignore[no-untyped-def]
        sessions = Bounded(summary)
        cursor = await asyncio.to_thread(
            self.interceptions.sessions,
            _filter(request.filter),
            request.limit,
            request.cursor,
            sessions.take,
        )
        return admin_pb2.ListSessionsResponse(sessions=sessions.messages, next_cursor=cursor)

    @_rpc
    async def GetSession(self, request, context):  # type: ignore[no-untyped-def]
        records = Bounded(preview_record)
        summaries, cursor = await asyncio.to_thread(
            self.interceptions.session,
            request.session_id,
            request.token,
            request.limit,
            request.cursor,
            records.take,
        )
        return admin_pb2.GetSessionResponse(
            sessions=[summary(s) for s in summaries],
            interceptions=records.messages,
            next_cursor=cursor,
        )

    @_rpc
    async def ListAudit(self, request, context):  # type: ignore[no-untyped-def]
        limit = request.limit or 50
        if not 0 < limit <= 10_000:
            raise InvalidArgument("limit", "must be between 1 and 10000")
        entries = await asyncio.to_thread(audit.list_entries, self.db, limit)
        return admin_pb2.ListAuditResponse(
            entries=[
                admin_pb2.AuditEntry(
                    id=e.id,
                    at=timestamp(e.at),
                    actor=e.actor,
                    action=e.action,
                    target=e.target,
                    revision=e.revision,
                    details=e.details,
                )
                for e in entries
            ]
        )


def _no_check(session: Session) -> None:
    """A call without a request_id has nothing to check once it holds the lock."""


def _expected(request: Any) -> int | None:
    return request.expected_revision if request.HasField("expected_revision") else None


def _time(request: Any, field: str) -> datetime | None:
    if not request.HasField(field):
        return None
    try:
        return getattr(request, field).ToDatetime(tzinfo=UTC)
    except ValueError:  # seconds beyond the years 1 to 9999, or nanos beyond a second
        raise InvalidArgument(field, "is not a time between the years 1 and 9999") from None


def _filter(f: admin_pb2.InterceptionFilter) -> InterceptionFilter:
    return InterceptionFilter(
        since=_time(f, "since"),
        until=_time(f, "until"),
        token=f.token,
        provider=f.provider,
        model=f.model,
        client=f.client,
        session_id=f.session_id,
        status_class=f.status_class,
        user=f.user,
    )


def provider_message(p: models.Provider) -> admin_pb2.Provider:
    return admin_pb2.Provider(
        id=p.id,
        name=p.name,
        type=p.type,
        display_name=p.display_name,
        enabled=p.enabled,
        base_url=p.base_url,
        keys=[
            admin_pb2.ProviderKeyInfo(id=k.id, hint=k.hint, created_at=timestamp(k.created_at))
            for k in p.keys
        ],
        created_at=timestamp(p.created_at),
        updated_at=timestamp(p.updated_at),
        region=p.region,
        project=p.project,
        model_map=[
            admin_pb2.ModelMapping(model=model, upstream_model=upstream)
            for model, upstream in sorted(model_map_of(p.model_map).items())
        ],
        effective_region=effective_region(p.type, p.base_url, p.region),
    )


def _model_map(entries: Iterable[admin_pb2.ModelMapping]) -> list[tuple[str, str]]:
    return [(e.model, e.upstream_model) for e in entries]


def token_message(t: models.GatewayToken) -> admin_pb2.Token:
    return admin_pb2.Token(
        id=t.id,
        name=t.name,
        hint=t.hint,
        created_at=timestamp(t.created_at),
        expires_at=timestamp(t.expires_at),
        revoked_at=timestamp(t.revoked_at),
        user=t.user.name if t.user else "",
        user_id=t.user_id or "",
    )


def user_message(info: UserInfo) -> admin_pb2.User:
    u = info.user
    return admin_pb2.User(
        id=u.id,
        name=u.name,
        email=u.email,
        enabled=u.enabled,
        teams=info.teams,
        tokens=info.tokens,
        created_at=timestamp(u.created_at),
        updated_at=timestamp(u.updated_at),
    )


def team_message(info: TeamInfo) -> admin_pb2.Team:
    return admin_pb2.Team(
        id=info.team.id,
        name=info.team.name,
        members=info.members,
        created_at=timestamp(info.team.created_at),
    )


def limits_message(s: LimitSet) -> admin_pb2.Limits:
    row = s.row
    return admin_pb2.Limits(
        scope=s.scope,
        per_member=row.per_member,
        requests_per_minute=row.requests_per_minute,
        tokens_per_minute=row.tokens_per_minute,
        max_concurrent=row.max_concurrent,
        monthly_budget_usd=row.monthly_budget_usd,
        providers=providers_of(row),
        models=models_of(row),
        updated_at=timestamp(row.updated_at),
    )


def price_message(p: models.Price) -> admin_pb2.Price:
    return admin_pb2.Price(
        model=p.model,
        input=p.input,
        output=p.output,
        cache_read=p.cache_read,
        cache_write=p.cache_write,
        updated_at=timestamp(p.updated_at),
    )


def setting_message(v: SettingValue) -> admin_pb2.Setting:
    return admin_pb2.Setting(
        key=v.spec.key,
        value=v.value,
        default_value=v.spec.default,
        description=v.spec.description,
        updated_at=timestamp(v.updated_at),
    )


def subscriber_message(s: SubscriberState) -> admin_pb2.Subscriber:
    return admin_pb2.Subscriber(
        id=s.id,
        role=s.role.value,
        address=s.address,
        connected_since=timestamp(s.connected_since),
        applied_version=s.applied_version,
        sent_version=s.sent_version,
        last_error=s.last_error,
        controlplane_id=s.controlplane_id,
        connected=s.connected,
        disconnected_at=timestamp(s.disconnected_at),
        instance=s.fingerprint,
        skipped=[
            admin_pb2.SkippedProviderInfo(provider_id=k.provider_id, name=k.name, reason=k.reason)
            for k in s.skipped
        ],
    )
