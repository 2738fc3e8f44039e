"""The results store: every `check`, `verify` and `ladder` can record its report, and `history` reads
them back (a table, a report again, trends, the baseline of a later run).

One small storage layer over SQLAlchemy Core: SQLite by default (one file, created on first use) or
PostgreSQL for a team (`postgresql://...`). The schema is Alembic's (`history_migrations/`), brought to
head on every open. Two CI jobs may write at once: on SQLite every transaction takes the write lock
when it begins (BEGIN IMMEDIATE, waiting up to a minute), on PostgreSQL the migration runs under an
advisory lock; an insert is one transaction either way.

Where the store is: `--history URL` on the command, else the config's top-level `history = "..."`
(a path relative to the config, or a URL), else $EDGE_DISTILL_HISTORY.
"""

from __future__ import annotations

import builtins
import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from .errors import BadInput, MissingDependency

ENV = "EDGE_DISTILL_HISTORY"
MIGRATION_LOCK = 7_401_337  # pg_advisory_xact_lock key: one migrating writer at a time
FIGURES = (("size_bytes",), ("latency", "p50_ms"), ("latency", "p95_ms"), ("memory", "peak_mb"))


@dataclass
class Run:
    """One recorded report: what `history` lists."""

    id: int
    recorded: str
    command: str
    model: str
    targets: str
    branch: str | None
    commit: str | None
    exit_code: int
    passed: bool
    folder: str | None


def store_url(option: str | None = None, configured: str | None = None, config_dir: Path | None = None) -> str | None:
    """The store's SQLAlchemy URL, or None when none is configured. A bare path is a SQLite file."""
    value = option or configured or os.environ.get(ENV)
    if not value:
        return None
    if "://" not in value:
        path = Path(value).expanduser()
        if not path.is_absolute() and configured and not option and config_dir is not None:
            path = config_dir / path
        return f"sqlite:///{path.resolve()}"
    if value.startswith(("postgresql://", "postgres://")):  # psycopg 3, not SQLAlchemy's default psycopg2
        return "postgresql+psycopg://" + value.split("://", 1)[1]
    if value.startswith(("sqlite://", "postgresql+")):
        return value
    raise BadInput(f"results store {value!r}: use a file path, sqlite:///PATH or postgresql://...")


def _engine(url: str):
    import sqlalchemy as sa

    if url.startswith("sqlite"):
        path = Path(url.split(":///", 1)[1]) if ":///" in url else None
        if path is not None and not path.parent.is_dir():
            raise BadInput(f"the results store's folder does not exist: {path.parent}")
        engine = sa.create_engine(url, connect_args={"timeout": 60})

        @sa.event.listens_for(engine, "connect")
        def _autocommit_driver(dbapi_connection, _record):
            dbapi_connection.isolation_level = None  # SQLAlchemy emits BEGIN itself (below)
            dbapi_connection.execute("PRAGMA journal_mode=WAL")

        @sa.event.listens_for(engine, "begin")
        def _write_lock_first(conn):
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # wait for the lock here, not fail mid-transaction
        return engine
    try:
        return sa.create_engine(url, pool_pre_ping=True)
    except ImportError as exc:
        raise MissingDependency("psycopg", "postgresql", "a PostgreSQL results store") from exc


def _migrate(conn) -> None:
    from alembic import command
    from alembic.config import Config

    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({MIGRATION_LOCK})")
    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).with_name("history_migrations")))
    cfg.attributes["connection"] = conn
    command.upgrade(cfg, "head")


class Store:
    """A results store at `url`, migrated to the current schema when opened."""

    def __init__(self, url: str):
        for package in ("sqlalchemy", "alembic"):
            try:
                __import__(package)
            except ImportError as exc:
                raise MissingDependency(package, "history", "the results store") from exc
        import sqlalchemy as sa

        self.url = url
        self.engine = _engine(url)
        try:
            with self.engine.begin() as conn:
                _migrate(conn)
        except sa.exc.DatabaseError as exc:  # unreachable, locked, or a file that is no database at all
            raise BadInput(f"cannot open the results store {self.safe_url}: {exc.orig}") from exc
        meta = sa.MetaData()
        self.runs = sa.Table("runs", meta, autoload_with=self.engine)
        self.figures = sa.Table("figures", meta, autoload_with=self.engine)

    @property
    def safe_url(self) -> str:
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    def record(self, report_json: str, folder: Path | None = None) -> int:
        """Store one report (its canonical JSON) and its figures; return the run's id."""
        data = json.loads(report_json)
        row = {
            "recorded": datetime.now(timezone.utc).replace(microsecond=0),
            "command": data["command"], "model": data["student"].get("reference", ""),
            "model_sha256": data["student"].get("fingerprint"),
            "teacher_sha256": (data.get("teacher") or {}).get("fingerprint"),
            "config": data.get("config"),
            "targets": ",".join(dict.fromkeys(r["target"] for r in data["results"])),
            "branch": _first_env("EDGE_DISTILL_BRANCH", "GITHUB_HEAD_REF", "GITHUB_REF_NAME", "CI_COMMIT_REF_NAME"),
            "commit": _first_env("EDGE_DISTILL_COMMIT", "GITHUB_SHA", "CI_COMMIT_SHA"),
            "exit_code": data["exit_code"], "passed": data["passed"],
            "folder": str(Path(folder).resolve()) if folder else None, "report": report_json,
        }
        with self.engine.begin() as conn:
            run_id = conn.execute(self.runs.insert().values(**row)).inserted_primary_key[0]
            rows = [{"run_id": run_id, **f} for f in figures_of_report(data)]
            if rows:
                conn.execute(self.figures.insert(), rows)
        return int(run_id)

    def list(self, model: str | None = None, target: str | None = None, since: str | None = None,
             passed: bool | None = None, branch: str | None = None, limit: int = 50,
             model_is: str | None = None, command: str | None = None) -> list[Run]:
        """Runs, newest first, filtered by model (a substring; `model_is`: exactly), target, date, verdict
        and branch."""
        import sqlalchemy as sa

        r = self.runs
        query = sa.select(*[r.c[f] for f in Run.__dataclass_fields__]).order_by(r.c.id.desc()).limit(limit)
        if model:
            query = query.where(r.c.model.contains(model, autoescape=True))
        if model_is:
            query = query.where(r.c.model == model_is)
        if command:
            query = query.where(r.c.command == command)
        if target:
            query = query.where(sa.or_(r.c.targets == target, r.c.targets.like(f"{target},%"),
                                       r.c.targets.like(f"%,{target}"), r.c.targets.like(f"%,{target},%")))
        if since:
            query = query.where(r.c.recorded >= _iso_date(since))
        if passed is not None:
            query = query.where(r.c.passed == passed)
        if branch:
            query = query.where(r.c.branch == branch)
        with self.engine.connect() as conn:
            return [Run(**{**row._mapping, "passed": bool(row.passed), "recorded": _iso(row.recorded)})
                    for row in conn.execute(query)]

    def report(self, run_id: int) -> tuple[dict, str | None]:
        """A recorded run's report (as JSON data) and the folder it was written to."""
        import sqlalchemy as sa

        with self.engine.connect() as conn:
            row = conn.execute(sa.select(self.runs.c.report, self.runs.c.folder)
                               .where(self.runs.c.id == run_id)).first()
        if row is None:
            raise BadInput(f"no run {run_id} in the results store {self.safe_url} (see `edge-distill history`)")
        return json.loads(row.report), row.folder

    def trend(self, artifact: str, model: str, limit: int = 30) -> builtins.list[dict]:  # not Store.list
        """One artifact's figures over its model's last `limit` runs, oldest first."""
        import sqlalchemy as sa

        r, f = self.runs, self.figures
        recent = sa.select(r.c.id).where(r.c.model == model).order_by(r.c.id.desc()).limit(limit).subquery()
        query = (sa.select(r.c.id, r.c.recorded, r.c.passed, f.c.figure, f.c.slice, f.c.value)
                 .join(f, f.c.run_id == r.c.id).where(f.c.artifact == artifact, r.c.id.in_(sa.select(recent.c.id)))
                 .order_by(r.c.id))
        with self.engine.connect() as conn:
            return [{**row._mapping, "recorded": _iso(row.recorded)} for row in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()


def figures_of_report(data: dict) -> list[dict]:
    """The figures worth a trend, per artifact: size, latency, memory, and every metric overall and per slice."""
    rows = []
    for res in data["results"]:
        for path in FIGURES:
            value = res
            for key in path:
                value = (value or {}).get(key)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                rows.append({"artifact": res["name"], "figure": ".".join(path), "slice": None, "value": float(value)})
        for slice_name, metrics in [(None, res.get("metrics") or {}), *(res.get("slices") or {}).items()]:
            rows += [{"artifact": res["name"], "figure": k, "slice": slice_name, "value": float(v)}
                     for k, v in metrics.items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return rows


def _first_env(*names: str) -> str | None:
    return next((os.environ[n] for n in names if os.environ.get(n)), None)


def _iso(when: datetime) -> str:
    """A recorded time as UTC ISO text (SQLite gives it back without its zone)."""
    return (when if when.tzinfo else when.replace(tzinfo=timezone.utc)).isoformat(timespec="seconds")


def _iso_date(text: str) -> datetime:
    try:
        when = datetime.fromisoformat(text)
        return when if when.tzinfo else when.replace(tzinfo=timezone.utc)
    except ValueError as exc:
        raise BadInput(f"--since {text!r}: give a date as YYYY-MM-DD") from exc


def resolve_baseline(store: Store | None, which: str, model: str, command: str = "check") -> tuple[dict, str | None, str]:
    """A baseline from the store: a run id, or `latest-passing[@BRANCH]` (the newest passing run of the
    same command on the same model, on that branch if given). Returns the report data, its folder and a
    label."""
    if store is None:
        raise BadInput(f"--baseline {which}: no results store is configured (history = ... in the config, "
                       f"--history, or ${ENV})")
    if which.isdigit():
        data, folder = store.report(int(which))
        return data, folder, f"run {which} of {store.safe_url}"
    _, _, branch = which.partition("@")
    match = next(iter(store.list(model_is=model, command=command, passed=True, branch=branch or None,
                                       limit=1)), None)
    if match is None:
        raise BadInput(f"--baseline {which}: no passing run of {model}" + (f" on branch {branch}" if branch else "")
                       + f" in {store.safe_url}")
    data, folder = store.report(match.id)
    return data, folder, f"run {match.id} of {store.safe_url} ({match.recorded})"
