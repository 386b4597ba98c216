"""Secrets of the embedded stack: a private RETRAIN_HOME, password and JWT files 0600 from their creation, and
a password Airflow never prints (the real stack's logs are grepped in tests/e2e/test_stack_processes.py)."""

from __future__ import annotations

import json
import stat

from retrain import stack


def _mode(path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_jwt_secret_is_private_from_its_creation(retrain_home, monkeypatch):
    retrain_home.chmod(0o755)
    created = []
    real_open = stack.os.open

    def recording_open(path, flags, mode=0o777, *args, **kwargs):
        created.append((str(path), mode))
        return real_open(path, flags, mode, *args, **kwargs)

    monkeypatch.setattr(stack.os, "open", recording_open)
    secret = stack._jwt_secret()
    path = retrain_home / "run" / "jwt_secret"
    assert (str(path), 0o600) in created  # created 0600, not chmod-ed afterwards
    assert _mode(path) == 0o600 and _mode(retrain_home) == 0o700 and _mode(retrain_home / "run") == 0o700
    assert stack._jwt_secret() == secret  # kept across calls


def test_the_password_file_is_written_before_airflow_and_airflow_keeps_it(retrain_home, capsys, monkeypatch):
    """SimpleAuthManager (the real one) finds our admin password: it generates none, prints none, and leaves
    the file 0600."""
    from airflow.api_fastapi.auth.managers.simple.simple_auth_manager import SimpleAuthManager

    path = retrain_home / "airflow" / "simple_auth_manager_passwords.json.generated"
    stack._ensure_admin_password(path)
    assert _mode(path) == 0o600 and _mode(path.parent) == 0o700
    password = json.loads(path.read_text())[stack.ADMIN_USER]
    assert len(password) == 20

    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(path))
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{stack.ADMIN_USER}:admin")
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
    capsys.readouterr()
    SimpleAuthManager().init()
    out = capsys.readouterr()
    assert password not in out.out + out.err and "Password for user" not in out.out + out.err
    assert json.loads(path.read_text()) == {stack.ADMIN_USER: password}
    assert _mode(path) == 0o600

    stack._ensure_admin_password(path)  # setup again: the same password
    assert json.loads(path.read_text()) == {stack.ADMIN_USER: password}


def test_an_older_password_file_is_tightened_and_completed(retrain_home):
    path = retrain_home / "airflow" / "passwords.json"
    path.parent.mkdir()
    path.write_text(json.dumps({"viewer": "v-secret"}))
    path.chmod(0o644)
    stack._ensure_admin_password(path)
    users = json.loads(path.read_text())
    assert users["viewer"] == "v-secret" and len(users[stack.ADMIN_USER]) == 20
    assert _mode(path) == 0o600
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no staging file left

