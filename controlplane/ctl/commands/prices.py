"""`aibridgectl prices list|set|delete|import`: the price table that turns each
interception's tokens into its cost (USD per million tokens)."""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

from aibridge.v1 import admin_pb2
from common.money import usd
from controlplane import pricing
from controlplane.ctl.api import Context
from controlplane.ctl.errors import EXIT_OK, CtlError
from controlplane.ctl.mutation import add_mutation_options, mutate
from controlplane.ctl.output import emit_json, fmt_time, table
from controlplane.errors import InvalidArgument


def _price(value: str) -> float:
    try:
        number = float(value.strip().removeprefix("$"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid price {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"invalid price {value!r}")
    return number


def register(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
    everywhere: argparse.ArgumentParser,
) -> None:
    group = commands.add_parser(
        "prices", parents=[everywhere], help="USD per million tokens of each model"
    )
    sub = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND", required=True)

    sub.add_parser("list", parents=[everywhere], help="the price table").set_defaults(func=cmd_list)

    set_ = sub.add_parser(
        "set",
        parents=[everywhere],
        help="add or replace a model's price",
        description="Prices are USD per million tokens. MODEL is a model's name or a glob "
        "pattern for dated names (claude-sonnet-4-5*): the exact name wins, else the "
        "longest matching pattern.",
    )
    set_.add_argument("model", metavar="MODEL")
    set_.add_argument("--input", type=_price, required=True, metavar="USD")
    set_.add_argument("--output", type=_price, required=True, metavar="USD")
    set_.add_argument("--cache-read", type=_price, metavar="USD", help="default: --input")
    set_.add_argument("--cache-write", type=_price, metavar="USD", help="default: --input")
    add_mutation_options(set_)
    set_.set_defaults(func=cmd_set)

    delete = sub.add_parser("delete", parents=[everywhere], help="delete a model's price")
    delete.add_argument("model", metavar="MODEL")
    add_mutation_options(delete)
    delete.set_defaults(func=cmd_delete)

    import_ = sub.add_parser(
        "import",
        parents=[everywhere],
        help="set the prices of a file, all at once",
        description='FILE is JSON: {"prices": [{"model", "input", "output", "cache_read"?, '
        '"cache_write"?}, ...]}, like the table the gateway ships; "-" reads standard input.',
    )
    import_.add_argument("file", metavar="FILE")
    import_.add_argument(
        "--replace", action="store_true", help="also delete every price not in the file"
    )
    add_mutation_options(import_)
    import_.set_defaults(func=cmd_import)


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    response = ctx.call(ctx.stub.ListPrices, admin_pb2.ListPricesRequest())
    if ctx.json:
        emit_json(response)
        return EXIT_OK
    rows = [
        [p.model, usd(p.input), usd(p.output), usd(p.cache_read), usd(p.cache_write),
         fmt_time(p, "updated_at")]
        for p in response.prices
    ]  # fmt: skip
    headers = ["MODEL", "INPUT", "OUTPUT", "CACHE_READ", "CACHE_WRITE", "UPDATED"]
    if rows:
        print(table(headers, rows))
    else:
        print("no prices: every call is unpriced")
    print(
        f"USD per million tokens; the prices the gateway ships are as of {pricing.shipped_as_of()}"
    )
    return EXIT_OK


def cmd_set(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.PriceResponse) -> None:
        p = response.price
        print(
            f"set the price of {p.model} at revision {response.revision}: input "
            f"{usd(p.input)}, output {usd(p.output)}, cache read {usd(p.cache_read)}, "
            f"cache write {usd(p.cache_write)} per million tokens"
        )

    request = admin_pb2.SetPriceRequest(model=args.model, input=args.input, output=args.output)
    if args.cache_read is not None:
        request.cache_read = args.cache_read
    if args.cache_write is not None:
        request.cache_write = args.cache_write
    return mutate(ctx, args, ctx.stub.SetPrice, request, describe)


def cmd_delete(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.DeletePriceResponse) -> None:
        print(f"deleted the price of {response.model} at revision {response.revision}")

    request = admin_pb2.DeletePriceRequest(model=args.model)
    return mutate(ctx, args, ctx.stub.DeletePrice, request, describe)


def cmd_import(ctx: Context, args: argparse.Namespace) -> int:
    def describe(response: admin_pb2.ImportPricesResponse) -> None:
        deleted = f", deleted {response.deleted}" if args.replace else ""
        print(f"imported {response.imported} prices{deleted} at revision {response.revision}")

    try:
        text = sys.stdin.buffer.read() if args.file == "-" else Path(args.file).read_bytes()
    except OSError as exc:
        raise CtlError(f"{args.file}: {exc.strerror or exc}") from None
    try:
        entries = pricing.parse_file(text)
    except InvalidArgument as exc:
        raise CtlError(f"{args.file}: {exc}") from None
    request = admin_pb2.ImportPricesRequest(
        prices=[
            admin_pb2.Price(
                model=e.model, input=e.input, output=e.output,
                cache_read=e.cache_read, cache_write=e.cache_write,
            )
            for e in entries
        ],
        replace=args.replace,
    )  # fmt: skip
    return mutate(ctx, args, ctx.stub.ImportPrices, request, describe)
