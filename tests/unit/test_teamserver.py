"""flowops server: what it writes for MLflow before it becomes `mlflow server`."""

from __future__ import annotations

import os
from pathlib import Path


def test_a_new_start_removes_the_auth_configs_of_servers_that_have_exited(tmp_path):
    """Hardening 3 item 25: every `flowops server --auth` start left an auth.ini (with the admin
    and database passwords) behind: four starts, four files."""
    import subprocess

    from flowops.teamserver import server as srv

    exited = subprocess.Popen(["true"])
    exited.wait()
    gone, alive, unnamed = (tmp_path / f"{srv.PRIVATE_PREFIX}{n}" for n in ("gone", "alive", "unnamed"))
    for folder, pid in ((gone, exited.pid), (alive, os.getpid()), (unnamed, None)):
        folder.mkdir(mode=0o700)
        (folder / "auth.ini").write_text("admin_password = s3cret\n")
        if pid:
            (folder / "pid").write_text(f"{pid}\n")
    settings = srv.ServerSettings(
        "sqlite:///x.db", str(tmp_path / "a"), None, "127.0.0.1", 5000, 1, True, "admin", "pw-12345678", "READ"
    )
    env = srv.environment(settings, tmp_path)
    made = Path(env["MLFLOW_AUTH_CONFIG_PATH"]).parent
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, unnamed.name, made.name])
    assert (made / "pid").read_text() == f"{os.getpid()}\n"  # this process becomes mlflow server
