"""The sandbox image's cache key: a new package list or customize hook means a new image."""

from pgmam_sandbox import image as sandbox_image


def test_the_key_follows_the_package_list_and_nothing_else(monkeypatch):
    key = sandbox_image.image_key()
    assert key == sandbox_image.image_key() and len(key) == 12
    monkeypatch.setattr(sandbox_image, "PACKAGES", (*sandbox_image.PACKAGES, "postgresql-16"))
    assert sandbox_image.image_key() != key


def test_the_image_carries_what_a_stock_database_server_has():
    for package in ("systemd", "openssh-server", "sudo", "cron", "postgresql-15", "pgbackrest", "locales"):
        assert package in sandbox_image.PACKAGES
