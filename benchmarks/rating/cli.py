"""``python -m benchmarks.rating`` (and ``ophora rate``): set up, serve, export and analyse a rating study.

    init STUDY --out FOLDER      validate the study YAML (a path, or a shipped name: demo), blind its videos,
                                 write the database and print each rater's personal link (shown only now)
    serve FOLDER                 run the web application (127.0.0.1:8000 by default)
    link FOLDER RATER            a new link for RATER (the old one stops working)
    revoke FOLDER RATER          close RATER's link
    export FOLDER                the ratings (latest revisions) and every revision as CSV files
    analyse FOLDER               means with bootstrap intervals, agreement, attention checks, Fig. 3a/3b
"""
from __future__ import annotations

import argparse
import ipaddress
import sys
from pathlib import Path

from benchmarks.rating.study import StudyError
from ophora.cli import HelpFormatter, add_output, add_overrides, add_seed, make_parser

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = make_parser("benchmarks.rating",
                         "Set up, serve, export and analyse a blinded expert rating study (the paper's Fig. 3).",
                         command="rate", epilog="commands:\n\n" + "\n".join(__doc__.splitlines()[2:]))
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=text[:1].upper() + text[1:] + ".",
                                   formatter_class=HelpFormatter)

    def database(sub: argparse.ArgumentParser) -> None:
        sub.add_argument("--database", metavar="URL",
                         help="a SQLAlchemy URL instead of the study folder's study.sqlite")

    init = command("init", "set a study up from its YAML")
    init.add_argument("study", help="a study YAML file, or a shipped study's name (demo)")
    add_output(init, "the study folder to create (holds study.sqlite and media/)", required=True)
    database(init)
    init.add_argument("--base-url", default="http://127.0.0.1:8000", help="where raters will reach the server")
    add_overrides(init, "override a study key (dotted; the value is read as YAML); repeatable")
    serve = command("serve", "run the web application")
    serve.add_argument("folder", help="the study folder")
    serve.add_argument("--host", default="127.0.0.1",
                       help="address to bind (any other than loopback is reachable from other machines: put a TLS "
                            "proxy in front and pass --behind-tls)")
    serve.add_argument("--port", type=int, default=8000, help="port to listen on")
    database(serve)
    serve.add_argument("--behind-tls", action="store_true",
                       help="mark the session cookie Secure and trust X-Forwarded-* from 127.0.0.1 (a TLS proxy)")
    for name, text in (("link", "issue a rater a new link (the old one stops working)"),
                       ("revoke", "close a rater's link")):
        sub = command(name, text)
        sub.add_argument("folder", help="the study folder")
        sub.add_argument("rater", help="the rater's id")
        database(sub)
        if name == "link":
            sub.add_argument("--base-url", default="http://127.0.0.1:8000", help="where raters will reach the server")
    export = command("export", "write the ratings as CSV")
    export.add_argument("folder", help="the study folder")
    add_output(export, "output folder (default: FOLDER/export)")
    database(export)
    analyse = command("analyse", "analyse the ratings (Fig. 3a/3b, tables, agreement, checks)")
    analyse.add_argument("folder", help="a study folder, or a ratings.csv written by export")
    add_output(analyse, "output folder (default: FOLDER/analysis)")
    database(analyse)
    analyse.add_argument("--bootstrap", type=int, default=2000, metavar="N", help="bootstrap resamples")
    add_seed(analyse, "seed of the bootstrap resamples")
    return parser


def _links(tokens: dict[str, str], base_url: str) -> None:
    for rater, token in tokens.items():
        print(f"{rater}\t{base_url.rstrip('/')}/r/{token}")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "init":
        from benchmarks.rating.config import load_study
        from benchmarks.rating.study import init_study
        from ophora.configs.loader import parse_overrides

        config = load_study(args.study, parse_overrides(args.set))
        tokens = init_study(config, args.out, args.database, log=lambda line: print(line, file=sys.stderr))
        print(f"study {config.name!r} set up in {args.out}; personal links (shown only now; "
              f"`link` issues new ones):", file=sys.stderr)
        _links(tokens, args.base_url)
        return 0
    from benchmarks.rating.study import issue_link, open_study, revoke_rater

    if args.command == "analyse":
        from benchmarks.rating.analysis import analyse_folder

        out = analyse_folder(args.folder, args.out, args.database, n_boot=args.bootstrap, seed=args.seed)
        print(f"analysis written to {out}", file=sys.stderr)
        return 0
    study = open_study(args.folder, args.database)
    if args.command == "serve":
        return _serve(study, args)
    if args.command == "link":
        _links({args.rater: issue_link(study, args.rater)}, args.base_url)
        return 0
    if args.command == "revoke":
        revoke_rater(study, args.rater)
        print(f"{args.rater}: link revoked", file=sys.stderr)
        return 0
    if args.command == "export":
        from benchmarks.rating.export import export_study

        for path in export_study(study, Path(args.out or Path(args.folder) / "export")):
            print(path)
        return 0
    raise AssertionError(args.command)


def _serve(study, args) -> int:
    import uvicorn

    from benchmarks.rating.app import create_app

    try:
        loopback = ipaddress.ip_address(args.host).is_loopback
    except ValueError:
        loopback = args.host == "localhost"
    if not loopback:
        print(f"warning: serving on {args.host}, reachable from other machines; put it behind a TLS proxy "
              "(README: Rating study) and pass --behind-tls", file=sys.stderr)
    app = create_app(study, secure_cookies=args.behind_tls)
    print(f"serving {args.folder} on http://{args.host}:{args.port} (raters open their links; Ctrl-C stops; "
          "every acknowledged rating is already in the database)", file=sys.stderr)
    uvicorn.run(app, host=args.host, port=args.port, proxy_headers=args.behind_tls,
                forwarded_allow_ips="127.0.0.1" if args.behind_tls else None, server_header=False,
                log_level="warning", access_log=False)
    return 0


ERRORS = (StudyError,)
