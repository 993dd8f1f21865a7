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

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.rating",
                                     description="Set up, serve, export and analyse a blinded expert rating study "
                                                 "(the paper's Fig. 3).",
                                     epilog="\n".join(__doc__.splitlines()[2:]),
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    init = commands.add_parser("init", help="set a study up from its YAML")
    init.add_argument("study", help="a study YAML file, or a shipped study's name (demo)")
    init.add_argument("--out", required=True, help="the study folder to create (holds study.sqlite and media/)")
    init.add_argument("--database", help="a SQLAlchemy URL instead of SQLite in the study folder")
    init.add_argument("--base-url", default="http://127.0.0.1:8000", help="where raters will reach the server")
    init.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a study key (repeatable)")
    serve = commands.add_parser("serve", help="run the web application")
    serve.add_argument("folder")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback only)")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--database")
    serve.add_argument("--behind-tls", action="store_true",
                       help="mark the session cookie Secure and trust X-Forwarded-* from 127.0.0.1 (a TLS proxy)")
    for name, text in (("link", "issue a rater a new link"), ("revoke", "close a rater's link")):
        sub = commands.add_parser(name, help=text)
        sub.add_argument("folder")
        sub.add_argument("rater")
        sub.add_argument("--database")
        if name == "link":
            sub.add_argument("--base-url", default="http://127.0.0.1:8000")
    export = commands.add_parser("export", help="write the ratings as CSV")
    export.add_argument("folder")
    export.add_argument("--out", help="output folder (default FOLDER/export)")
    export.add_argument("--database")
    analyse = commands.add_parser("analyse", help="analyse the ratings (Fig. 3a/3b, tables, agreement, checks)")
    analyse.add_argument("folder", help="a study folder, or a ratings.csv written by export")
    analyse.add_argument("--out", help="output folder (default FOLDER/analysis)")
    analyse.add_argument("--database")
    analyse.add_argument("--bootstrap", type=int, default=2000, help="bootstrap resamples (default 2000)")
    analyse.add_argument("--seed", type=int, default=0)
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
