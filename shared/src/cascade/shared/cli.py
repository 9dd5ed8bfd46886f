"""`cascade`: the operator CLI (local stack, tokens, migrations, Kafka jars)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx

from cascade.shared import migrations
from cascade.shared.auth import Role, generate_keypair, mint_token
from cascade.shared.catalog import SERVICE_PORTS
from cascade.shared.settings import BrokerKind

# The local-stack commands import their infrastructure lazily: service images ship without
# the embedded PostgreSQL and broker (the `local` extra) and still run `cascade migrate`.


def _home() -> Path:
    return Path(os.environ.get("CASCADE_HOME", ".local")).resolve()


def cmd_up(args: argparse.Namespace) -> int:
    """Starts the local stack in the background; returns when every service is ready."""
    from cascade.shared import stack

    broker = BrokerKind(args.broker) if args.broker else None
    started = time.monotonic()
    state = stack.up(stack.StackConfig.from_env(_home(), broker))
    print(f"stack ready in {time.monotonic() - started:.1f} s (broker: {state.broker})")
    print(f"  KAFKA_BOOTSTRAP_SERVERS={state.bootstrap_servers}")
    for name, url in state.service_urls.items():
        print(f"  {name:<14} {url}")
    print(f"environment written to {_home() / 'stack.env'}; stop with `make down`")
    return 0


def cmd_demo(_: argparse.Namespace) -> int:
    """Runs the platform on the embedded defaults and reports what it did."""
    from cascade.shared import stack

    started = time.monotonic()
    state = stack.up(stack.StackConfig.from_env(_home(), BrokerKind.EMBEDDED))
    print(f"Cascade is up in {time.monotonic() - started:.1f} s on the embedded defaults:")
    print(f"  broker {state.broker} at {state.bootstrap_servers}; PostgreSQL embedded")
    for name, url in state.service_urls.items():
        readiness = httpx.get(f"{url}/readyz", timeout=5).json()
        print(f"  {name:<14} {url}  readyz={json.dumps(readiness['checks'])}")
    print(
        'Try:  curl -H "Authorization: Bearer $(make -s token ROLE=collector)" '
        f"{state.service_urls['accounts']}/openapi.json"
    )
    print("The stack keeps running in the background; `make down` stops it.")
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    """Stops everything `up` started and checks that no process is left."""
    from cascade.shared import stack

    leftovers = stack.down(_home())
    if leftovers:
        print("processes still running after down:", *leftovers, sep="\n  ", file=sys.stderr)
        return 1
    print("stack stopped; no process left")
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    """Prints a bearer token for the local stack's key pair."""
    private_key, _ = generate_keypair(_home() / "keys")
    token = mint_token(
        private_key.read_bytes(),
        subject=args.subject,
        roles=args.role,
        issuer=args.issuer,
        audience=args.audience,
        ttl=timedelta(minutes=args.ttl_minutes),
    )
    print(token)
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    """Applies a service's migrations to the database its settings name."""
    services = list(SERVICE_PORTS) if args.service == "all" else [args.service]
    for service in services:
        url = args.database_url or os.environ.get(f"{service.upper()}_DATABASE__URL")
        if not url:
            print(f"set {service.upper()}_DATABASE__URL or pass --database-url", file=sys.stderr)
            return 2
        migrations.upgrade(f"cascade.{service}", url, args.revision)
        print(f"{service}: migrated to {args.revision}")
    return 0


def cmd_kafka_fetch(_: argparse.Namespace) -> int:
    """Downloads the Apache Kafka jars from Maven Central into the user cache."""
    from cascade.shared.infra.kafka import ensure_kafka_jars, kafka_cache_bytes

    started = time.monotonic()
    lib = ensure_kafka_jars()
    megabytes = kafka_cache_bytes() / 1_000_000
    print(f"Kafka jars in {lib} ({megabytes:.1f} MB, {time.monotonic() - started:.1f} s)")
    return 0


def cmd_topics_apply(args: argparse.Namespace) -> int:
    """Creates every declared topic that is missing (idempotent) and reports drift."""
    from cascade.shared.messaging.admin import apply_topology

    bootstrap = args.bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap-servers", file=sys.stderr)
        return 2
    names = asyncio.run(apply_topology(bootstrap, replication_factor=args.replication_factor))
    print(f"{len(names)} topics declared on {bootstrap}")
    try:
        drift = asyncio.run(_drift_after_aligning(bootstrap, args))
    except Exception as error:
        what = "align" if args.align_configs else "compare"
        if args.check or args.align_configs:
            raise RuntimeError(f"could not {what} the topics: {error}") from error
        # Creating them was the job; the comparison is a report (a broker may refuse it).
        print(f"could not compare the topics: {type(error).__name__} {error}", file=sys.stderr)
        return 0
    for name, differences in drift.items():
        print(f"{name} is not as declared: {'; '.join(differences)}", file=sys.stderr)
    return 1 if drift and args.check else 0


async def _drift_after_aligning(bootstrap: str, args: argparse.Namespace) -> dict[str, list[str]]:
    from cascade.shared.messaging.topic_drift import align_topic_configs, topology_drift
    from cascade.shared.messaging.topology import CONSUMING_SERVICES, topic

    factor = args.replication_factor
    drift = await topology_drift(bootstrap, replication_factor=factor)
    # Only the platform's own topics (its services own them): another system's (core
    # banking's) are its to change.
    ours = [topic(name) for name in drift if topic(name).owner in CONSUMING_SERVICES]
    if not args.align_configs or not ours:
        return drift
    aligned = await align_topic_configs(bootstrap, ours, replication_factor=factor)
    print(f"configs aligned: {', '.join(aligned) or 'none needed'}")
    return await topology_drift(bootstrap, replication_factor=factor)


def _dlq_bootstrap(args: argparse.Namespace) -> str | None:
    bootstrap: str | None = args.bootstrap_servers or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("set KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap-servers", file=sys.stderr)
    return bootstrap


def cmd_dlq_list(args: argparse.Namespace) -> int:
    """Lists a service's dead letters, one line each (never their values)."""
    from cascade.shared.messaging.replay import read_dead_letters, summary_line

    bootstrap = _dlq_bootstrap(args)
    if not bootstrap:
        return 2
    letters = asyncio.run(
        read_dead_letters(
            bootstrap, args.service, limit=args.limit, dead_letter_topic=args.dead_letter_topic
        )
    )
    for letter in letters:
        print(summary_line(letter))
    print(f"{len(letters)} dead letter(s)", file=sys.stderr)
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    """Shows one dead letter's headers and size (its value only with --show-value)."""
    from cascade.shared.messaging.replay import detail_lines, read_dead_letters

    bootstrap = _dlq_bootstrap(args)
    if not bootstrap:
        return 2
    letters = asyncio.run(
        read_dead_letters(bootstrap, args.service, dead_letter_topic=args.dead_letter_topic)
    )
    found = [letter for letter in letters if letter.offset == args.offset]
    if not found:
        print(f"no dead letter at offset {args.offset}", file=sys.stderr)
        return 1
    for letter in found:
        print("\n".join(detail_lines(letter, show_value=args.show_value)))
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    """Re-produces dead letters (all, or those at --offset) to the service's replay topic."""
    from cascade.shared.messaging.replay import replay_dead_letters

    bootstrap = _dlq_bootstrap(args)
    if not bootstrap:
        return 2
    count = asyncio.run(
        replay_dead_letters(
            bootstrap,
            args.service,
            offsets=args.offset,
            dead_letter_topic=args.dead_letter_topic,
            replay_topic=args.replay_topic,
            enable_idempotence=not args.no_idempotence,
        )
    )
    print(f"{count} dead letter(s) replayed")
    return 0


def cmd_contracts(args: argparse.Namespace) -> int:
    """Writes (generate) or verifies (check) the committed event catalogue."""
    from cascade.shared.contracts import catalogue

    directory = Path(args.directory)
    if args.contracts_command == "generate":
        try:
            written = catalogue.write_catalogue(directory, accept_breaks=args.accept_breaks)
        except catalogue.VersionBreakError as error:
            print(f"nothing written: {error}", file=sys.stderr)
            return 1
        print(f"{len(written)} files written to {directory}")
        return 0
    drift = catalogue.catalogue_drift(directory)
    for line in drift:
        print(line, file=sys.stderr)
    return 1 if drift else 0


def build_parser() -> argparse.ArgumentParser:
    """Returns the argument parser of `cascade`."""
    parser = argparse.ArgumentParser(prog="cascade", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    up = commands.add_parser("up", help=cmd_up.__doc__)
    up.add_argument("--broker", choices=[kind.value for kind in BrokerKind])
    up.set_defaults(handler=cmd_up)
    commands.add_parser("down", help=cmd_down.__doc__).set_defaults(handler=cmd_down)
    commands.add_parser("demo", help=cmd_demo.__doc__).set_defaults(handler=cmd_demo)

    token = commands.add_parser("token", help=cmd_token.__doc__)
    token.add_argument("--role", action="append", required=True, choices=[r.value for r in Role])
    token.add_argument("--subject", default="local-user")
    token.add_argument("--issuer", default="cascade-local")
    token.add_argument("--audience", default="cascade")
    token.add_argument("--ttl-minutes", type=int, default=60)
    token.set_defaults(handler=cmd_token)

    migrate = commands.add_parser("migrate", help=cmd_migrate.__doc__)
    migrate.add_argument("service", choices=[*SERVICE_PORTS, "all"])
    migrate.add_argument("--database-url")
    migrate.add_argument("--revision", default="head")
    migrate.set_defaults(handler=cmd_migrate)

    kafka = commands.add_parser("kafka", help="Apache Kafka from Maven Central")
    kafka_commands = kafka.add_subparsers(dest="kafka_command", required=True)
    kafka_commands.add_parser("fetch", help=cmd_kafka_fetch.__doc__).set_defaults(
        handler=cmd_kafka_fetch
    )
    topics = commands.add_parser("topics", help="the declared Kafka topics")
    topics_commands = topics.add_subparsers(dest="topics_command", required=True)
    apply = topics_commands.add_parser("apply", help=cmd_topics_apply.__doc__)
    apply.add_argument("--bootstrap-servers")
    apply.add_argument("--replication-factor", type=int, default=1)
    apply.add_argument(
        "--align-configs",
        action="store_true",
        help="set the drifted retention, cleanup policy, segment roll, max.message.bytes "
        "and (from --replication-factor 3) min.insync.replicas of the platform's own topics "
        "to the declaration, keeping their other configs (partitions and replicas never "
        "change)",
    )
    apply.add_argument("--check", action="store_true", help="exit 1 if a topic is not as declared")
    apply.set_defaults(handler=cmd_topics_apply)

    contracts = commands.add_parser("contracts", help="the event catalogue (JSON Schema, AsyncAPI)")
    contracts.add_argument("contracts_command", choices=["generate", "check"])
    contracts.add_argument("--directory", default="shared/schemas")
    contracts.add_argument(
        "--accept-breaks",
        action="store_true",
        help="generate even changes that break a type's major version (only while no one"
        " consumes that version)",
    )
    contracts.set_defaults(handler=cmd_contracts)

    _add_dlq_commands(commands)
    return parser


def _add_dlq_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dlq = commands.add_parser("dlq", help="a service's dead letters: list, show, replay")
    dlq_commands = dlq.add_subparsers(dest="dlq_command", required=True)
    handlers = {"list": cmd_dlq_list, "show": cmd_dlq_show, "replay": cmd_dlq_replay}
    for name, handler in handlers.items():
        command = dlq_commands.add_parser(name, help=handler.__doc__)
        command.add_argument("--service", required=True)
        command.add_argument("--bootstrap-servers")
        command.add_argument(
            "--dead-letter-topic", help="default: <service>.dead-letters.v1 (tests override it)"
        )
        command.set_defaults(handler=handler)
    dlq_commands.choices["list"].add_argument("--limit", type=int)
    show = dlq_commands.choices["show"]
    show.add_argument("--offset", type=int, required=True)
    show.add_argument("--show-value", action="store_true", help="may print personal data")
    replay = dlq_commands.choices["replay"]
    replay.add_argument("--offset", type=int, action="append", help="repeatable; default: all")
    replay.add_argument("--replay-topic", help="default: <service>.replay.v1 (tests override it)")
    replay.add_argument(
        "--no-idempotence", action="store_true", help="for the embedded broker only"
    )


def main(argv: list[str] | None = None) -> int:
    """Runs `cascade`."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.handler(args)
    except (RuntimeError, TimeoutError, ValueError) as error:
        print(f"cascade {args.command}: {error}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
