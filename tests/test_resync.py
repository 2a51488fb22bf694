"""No gap: changes committed while subscribers connect, reconnect or are away all arrive."""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

from aibridge.v1 import admin_pb2
from tests.harness import Controlplane, RecordingSubscriber, Secrets


def live_state(cp: Controlplane) -> tuple[int, list[tuple[str, str, bool]]]:
    listing = cp.admin.ListProviders(admin_pb2.ListProvidersRequest())
    return listing.revision, sorted((p.name, p.base_url, p.enabled) for p in listing.providers)


def snapshot_state(sub: RecordingSubscriber) -> list[tuple[str, str, bool]]:
    return sorted((p.name, p.base_url, p.enabled) for p in sub.snapshot.providers)


def mutate_randomly(cp: Controlplane, count: int, seed: int) -> None:
    """Creates, updates, renames, disables and deletes providers as fast as it can."""
    rng = random.Random(seed)
    names: list[str] = []
    for i in range(count):
        choice = rng.random()
        if not names or choice < 0.3:
            name = f"p{i}"
            cp.admin.create_provider(name, f"https://h{i}.example/v1")
            names.append(name)
        elif choice < 0.5:
            old = rng.choice(names)
            new = f"r{i}"
            cp.admin.UpdateProvider(admin_pb2.UpdateProviderRequest(ref=old, name=new))
            names[names.index(old)] = new
        elif choice < 0.7:
            cp.admin.UpdateProvider(
                admin_pb2.UpdateProviderRequest(
                    ref=rng.choice(names), enabled=rng.random() < 0.5,
                    base_url=f"https://u{i}.example/v1",
                )
            )  # fmt: skip
        else:
            name = rng.choice(names)
            cp.admin.DeleteProvider(admin_pb2.DeleteProviderRequest(ref=name))
            names.remove(name)


def test_subscribers_racing_mutations_end_at_the_final_state(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    async def scenario() -> None:
        cp = controlplane
        rng = random.Random(7)
        roles = [("bridged", secrets.bridged), ("proxyd", secrets.proxyd)]
        subs = [
            RecordingSubscriber([cp.address], *roles[i % 2], subscriber_id=f"s{i}").start()
            for i in range(6)
        ]
        fresh: list[RecordingSubscriber] = []
        mutations = asyncio.create_task(asyncio.to_thread(mutate_randomly, cp, 150, seed=3))
        try:
            # While the mutations run: drop and resume connections, and connect new subscribers.
            while not mutations.done():
                sub = rng.choice(subs)
                await sub.stop()
                sub.start()
                if len(fresh) < 6:
                    role, token = roles[len(fresh) % 2]
                    fresh.append(RecordingSubscriber([cp.address], role, token).start())
                await asyncio.sleep(rng.uniform(0, 0.05))  # pacing the chaos, not synchronising
            await mutations
            final_revision, final_state = await asyncio.to_thread(live_state, cp)
            for sub in subs + fresh:
                await sub.wait_version(final_revision)
                assert sub.version == final_revision
                assert snapshot_state(sub) == final_state
                versions = [s.version for s in sub.applied]
                assert versions == sorted(set(versions)), "a version went backwards"
        finally:
            for sub in subs + fresh:
                await sub.stop()

    asyncio.run(scenario())


def test_change_made_while_away_arrives_after_reconnect(
    controlplane: Controlplane, secrets: Secrets, tmp_path: Path
) -> None:
    async def scenario() -> None:
        cp = controlplane
        created = cp.admin.create_provider("before")
        sub = RecordingSubscriber([cp.address], "bridged", secrets.bridged).start()
        try:
            await sub.wait_version(created.revision)
            await asyncio.to_thread(cp.stop)
            # Fail static: the subscriber keeps its snapshot while the controlplane is gone.
            assert [p.name for p in sub.snapshot.providers] == ["before"]

            # The change is made through another controlplane the subscriber does not know.
            other = Controlplane(cp.database_url, cp.workdir, secrets, name="other")
            await asyncio.to_thread(other.start)
            try:
                changed = await asyncio.to_thread(
                    other.admin.UpdateProvider,
                    admin_pb2.UpdateProviderRequest(ref="before", name="after"),
                )
            finally:
                await asyncio.to_thread(other.stop)
            assert sub.version < changed.revision

            await asyncio.to_thread(cp.start)
            await sub.wait_version(changed.revision)
            assert [p.name for p in sub.snapshot.providers] == ["after"]
        finally:
            await sub.stop()

    asyncio.run(scenario())


def test_subscriber_fails_over_between_addresses(
    controlplane: Controlplane, secrets: Secrets
) -> None:
    """Given two controlplanes, losing the one in use moves the subscriber to the other."""

    async def scenario() -> None:
        cp = controlplane
        other = Controlplane(cp.database_url, cp.workdir, secrets, name="second")
        await asyncio.to_thread(other.start)
        sub = RecordingSubscriber([cp.address, other.address], "proxyd", secrets.proxyd).start()
        try:
            await sub.wait_version(cp.admin.revision())
            first = sub.subscriber.connected_to
            gone, stays = (cp, other) if first == cp.address else (other, cp)
            await asyncio.to_thread(gone.kill)
            created = await asyncio.to_thread(stays.admin.create_provider, "moved")
            await sub.wait_version(created.revision)
            assert sub.subscriber.connected_to == stays.address
        finally:
            await sub.stop()
            await asyncio.to_thread(other.stop)

    asyncio.run(scenario())
