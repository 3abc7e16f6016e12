"""
A throwaway PostgreSQL cluster a test owns: made in a temporary folder,
started, stopped and started again by the test, removed at the end.

It needs the PostgreSQL server binaries (C{initdb}, C{pg_ctl}) in
C{/usr/lib/postgresql/*/bin} or on C{PATH}; run as root, the server runs as
the C{postgres} user (as C{.ci/run} does). L{SKIP} says why not, if not.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import tempfile
from pathlib import Path

from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue


def _bindir() -> str | None:
    for folder in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if os.access(os.path.join(folder, "initdb"), os.X_OK):
            return folder
    found = shutil.which("initdb")
    return os.path.dirname(found) if found else None


def _run_as() -> list[str] | None:
    """The command prefix that runs the server's tools as a user allowed to run them, or None."""
    if os.getuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        return None
    runuser = shutil.which("runuser")
    return [runuser, "-u", "postgres", "--"] if runuser else None


BINDIR = _bindir()
RUN_AS = _run_as()
SKIP: str | None = None
if BINDIR is None:
    SKIP = "no PostgreSQL server binaries (initdb, pg_ctl)"
elif RUN_AS is None:
    SKIP = "running as root without a postgres user to run the server as"


class Cluster:
    """
    A PostgreSQL cluster in its own folder, listening only on a Unix socket
    there. L{dsn} names its database C{geniam}.
    """

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="geniam-pg-"))
        self.folder.chmod(0o755)
        if os.getuid() == 0:
            postgres = pwd.getpwnam("postgres")
            os.chown(self.folder, postgres.pw_uid, postgres.pw_gid)
        self.data = self.folder / "data"
        self.dsn = f"host={self.folder} user=geniam dbname=geniam connect_timeout=5"

    async def _tool(self, name: str, *args: str) -> None:
        assert BINDIR is not None and RUN_AS is not None
        command = [*RUN_AS, os.path.join(BINDIR, name), *args]
        out, err, status = await getProcessOutputAndValue(command[0], command[1:], env=dict(os.environ), reactor=reactor)
        if status != 0:
            raise RuntimeError(f"{name} failed ({status}): {(out + err).decode(errors='replace')[-500:]}")

    async def create(self) -> None:
        """Make the cluster, start it and create the database."""
        await self._tool("initdb", "-D", str(self.data), "-A", "trust", "-U", "geniam", "--no-sync")
        await self.start()
        await self._tool("createdb", "-h", str(self.folder), "-U", "geniam", "geniam")

    async def start(self) -> None:
        """Start the server and wait until it accepts connections."""
        options = f"-k {self.folder} -c listen_addresses='' -c fsync=off"
        await self._tool("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "log"), "-w", "-o", options, "start")

    async def stop(self) -> None:
        """Stop the server (ending every session) and wait until it is down."""
        await self._tool("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop")

    async def destroy(self) -> None:
        """Stop the server if it runs and remove the folder."""
        try:
            await self.stop()
        except RuntimeError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)
