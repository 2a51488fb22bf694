"""`aibridgectl providers list|get|create|update|delete`: upstream providers.

A bedrock or vertex provider's keys are credential JSON documents (an AWS credential, a
Google service account), best given by --key-file; it also has a region (read from the
base_url's host unless given), vertex a project, and both a model map."""

from __future__ import annotations

import argparse

from aibridge.v1 import admin_pb2
from common.clouds import CLOUD_TYPES, VERTEX
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK
from controlplane.ctl.keys import add_key_sources, read_keys
from controlplane.ctl.mutation import add_mutation_options, mutate
from controlplane.ctl.output import emit_json, fmt_time, key_values, table, yes_no


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    group = commands.add_parser("providers", parents=[everywhere], help="upstream providers")
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    sub.add_parser("list", parents=[everywhere], help="list providers").set_defaults(func=cmd_list)

    get = sub.add_parser("get", parents=[everywhere], help="show one provider")
    get.add_argument("ref", metavar="NAME|ID")
    get.set_defaults(func=cmd_get)

    create = sub.add_parser("create", parents=[everywhere], help="add a provider")
    create.add_argument("name", metavar="NAME")
    create.add_argument(
        "--type", required=True, help="openai, anthropic, openai-compatible, bedrock, vertex, …"
    )
    create.add_argument("--base-url", required=True, metavar="URL")
    add_key_sources(
        create, "--key", "keys",
        "an API key (repeat for failover, in order); for bedrock an AWS credential JSON "
        '({"access_key_id", "secret_access_key", optional "session_token"}), for vertex a '
        "service-account JSON",
    )  # fmt: skip
    create.add_argument("--display-name", metavar="TEXT")
    create.add_argument("--disabled", action="store_true", help="create it disabled")
    _add_cloud_options(create)
    add_mutation_options(create)
    create.set_defaults(func=cmd_create)

    update = sub.add_parser("update", parents=[everywhere], help="change a provider")
    update.add_argument("ref", metavar="NAME|ID")
    update.add_argument("--name", metavar="NEW", help="rename it")
    update.add_argument("--base-url", metavar="URL")
    toggle = update.add_mutually_exclusive_group()
    toggle.add_argument("--enable", dest="enabled", action="store_const", const=True)
    toggle.add_argument("--disable", dest="enabled", action="store_const", const=False)
    update.add_argument("--display-name", metavar="TEXT")
    add_key_sources(
        update, "--add-key", "add_keys",
        "an API key to append (repeatable); for bedrock and vertex a credential JSON",
    )  # fmt: skip
    update.add_argument(
        "--remove-key",
        action="append",
        default=[],
        dest="remove_key_ids",
        metavar="KEY_ID",
        help="remove a key by its id (repeatable)",
    )
    _add_cloud_options(update, updating=True)
    update.add_argument(
        "--clear-model-map", action="store_true",
        help="remove every model mapping (before any --model-map)",
    )  # fmt: skip
    add_mutation_options(update)
    update.set_defaults(func=cmd_update, check=check_update)

    delete = sub.add_parser("delete", parents=[everywhere], help="delete a provider")
    delete.add_argument("ref", metavar="NAME|ID")
    add_mutation_options(delete)
    delete.set_defaults(func=cmd_delete)


def _add_cloud_options(parser: argparse.ArgumentParser, updating: bool = False) -> None:
    parser.add_argument(
        "--region", metavar="REGION",
        help="bedrock and vertex: the cloud region (like us-east-1, europe-west1), when the "
        "base URL's host names none" + ('; "" reads it from the host again' if updating else ""),
    )  # fmt: skip
    parser.add_argument(
        "--project", metavar="PROJECT",
        help="vertex: the Google Cloud project"
        + ("" if updating else " (default: the first key's project_id)"),
    )  # fmt: skip
    parser.add_argument(
        "--model-map", action="append", default=[], type=model_mapping, metavar="MODEL=ID",
        help="bedrock and vertex: send the model clients call MODEL as the cloud's model ID "
        "(repeatable)" + ("; MODEL= removes MODEL's mapping" if updating else ""),
    )  # fmt: skip


def model_mapping(value: str) -> admin_pb2.ModelMapping:
    """MODEL=ID (ID may be empty: on update, that removes MODEL's mapping)."""
    model, equals, upstream = value.partition("=")
    if not equals or not model:
        raise argparse.ArgumentTypeError(
            f"expected MODEL=ID (like claude-sonnet-4-5=anthropic.claude-sonnet-4-5-v1:0), "
            f"got {value!r}"
        )
    return admin_pb2.ModelMapping(model=model, upstream_model=upstream)


def check_update(args: argparse.Namespace) -> str | None:
    changes = [
        args.name is not None,
        args.base_url is not None,
        args.enabled is not None,
        args.display_name is not None,
        args.add_keys,
        args.remove_key_ids,
        args.region is not None,
        args.project is not None,
        args.model_map,
        args.clear_model_map,
    ]
    if not any(changes):
        return (
            "providers update: nothing to change (give --name, --base-url, "
            "--enable/--disable, --display-name, --add-key, --remove-key, --region, "
            "--project, --model-map or --clear-model-map)"
        )
    return None


def _print_provider(provider: admin_pb2.Provider) -> None:
    cloud = provider.type in CLOUD_TYPES
    print(
        key_values(
            [
                ("id", provider.id),
                ("name", provider.name),
                ("type", provider.type),
                ("display name", provider.display_name or "-"),
                ("enabled", yes_no(provider.enabled)),
                ("base url", provider.base_url),
                *([("region", _region(provider))] if cloud else []),
                *([("project", provider.project)] if provider.type == VERTEX else []),
                ("created", fmt_time(provider, "created_at")),
                ("updated", fmt_time(provider, "updated_at")),
                ("keys", str(len(provider.keys))),
                *([("model map", str(len(provider.model_map)))] if cloud else []),
            ]
        )
    )
    if provider.keys:
        rows = [[k.id, k.hint, fmt_time(k, "created_at")] for k in provider.keys]
        print("\n" + table(["KEY_ID", "HINT", "CREATED"], rows))
    if provider.model_map:
        rows = [[m.model, m.upstream_model] for m in provider.model_map]
        print("\n" + table(["MODEL", "CLOUD_MODEL"], rows))


def _region(provider: admin_pb2.Provider) -> str:
    """The region calls go to, and whether it was given or read from the base URL."""
    if provider.region:
        return provider.region
    return f"{provider.effective_region} (from base_url)" if provider.effective_region else "-"


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.stub.ListProviders, admin_pb2.ListProvidersRequest())
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    if not response.providers:
        print(f"no providers (revision {response.revision})")
        return EXIT_OK
    rows = [
        [p.name, p.type, yes_no(p.enabled), p.base_url, str(len(p.keys)), p.id]
        for p in response.providers
    ]
    print(table(["NAME", "TYPE", "ENABLED", "BASE_URL", "KEYS", "ID"], rows))
    return EXIT_OK


def cmd_get(ctx: Context, args: argparse.Namespace) -> int:
    provider = ctx.call(ctx.stub.GetProvider, admin_pb2.GetProviderRequest(ref=args.ref))
    if ctx.json:
        emit_json(provider)
    else:
        _print_provider(provider)
    return EXIT_OK


def cmd_create(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.CreateProviderRequest(
        name=args.name,
        type=args.type,
        base_url=args.base_url,
        display_name=args.display_name or "",
        disabled=args.disabled,
        keys=read_keys(args.keys),
        region=args.region or "",
        project=args.project or "",
        model_map=args.model_map,
    )

    def describe(response: admin_pb2.ProviderResponse) -> None:
        p = response.provider
        state = "" if p.enabled else ", disabled"
        print(
            f"created provider {p.name} ({p.id}) with {len(p.keys)} key(s){state} "
            f"at revision {response.revision}"
        )

    return mutate(ctx, args, ctx.stub.CreateProvider, request, describe)


def cmd_update(ctx: Context, args: argparse.Namespace) -> int:
    request = admin_pb2.UpdateProviderRequest(
        ref=args.ref,
        add_keys=read_keys(args.add_keys),
        remove_key_ids=args.remove_key_ids,
        model_map=args.model_map,
        clear_model_map=args.clear_model_map,
    )
    if args.name is not None:
        request.name = args.name
    if args.base_url is not None:
        request.base_url = args.base_url
    if args.enabled is not None:
        request.enabled = args.enabled
    if args.display_name is not None:
        request.display_name = args.display_name
    if args.region is not None:
        request.region = args.region
    if args.project is not None:
        request.project = args.project

    def describe(response: admin_pb2.ProviderResponse) -> None:
        p = response.provider
        print(f"updated provider {p.name} ({p.id}) at revision {response.revision}")

    return mutate(ctx, args, ctx.stub.UpdateProvider, request, describe)


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.DeleteProviderResponse) -> None:
        print(f"deleted provider {response.name} ({response.id}) at revision {response.revision}")

    request = admin_pb2.DeleteProviderRequest(ref=args.ref)
    return mutate(ctx, args, ctx.stub.DeleteProvider, request, describe)
