"""The secret file: format, rotation, and the file-system checks."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from mosqit_failover.authkeys import (
    Key,
    Keyring,
    SecretFileError,
    generate_secret_text,
    load_keyring,
    parse_secret_text,
    write_secret_file,
)

ME = os.getuid()  # stands in for root: the owner check takes the expected uid
HEX_A = "00112233445566778899aabbccddeeff"  # 16 bytes, the minimum
HEX_B = "fedcba9876543210" * 4


def secret_file(tmp_path: Path, text: str, mode: int = 0o600, name: str = "secret") -> Path:
    p = tmp_path / name
    p.write_text(text)
    p.chmod(mode)
    return p


def test_generated_text_loads(tmp_path: Path) -> None:
    text = generate_secret_text()
    ring = load_keyring(secret_file(tmp_path, text), owner_uid=ME)
    assert ring.key_ids == (1,)
    assert len(ring.signing.secret) == 32
    assert generate_secret_text() != text  # random each time


def test_generated_text_other_key_id() -> None:
    assert parse_secret_text(generate_secret_text(7)).key_ids == (7,)
    with pytest.raises(ValueError):
        generate_secret_text(0)


def test_comments_blank_lines_and_case() -> None:
    text = f"# header\n\n   \n  # indented comment\n3 {HEX_A.upper()}\n\n"
    ring = parse_secret_text(text)
    assert ring.keys == (Key(3, bytes.fromhex(HEX_A)),)


def test_two_keys_first_signs_both_verify() -> None:
    ring = parse_secret_text(f"2 {HEX_B}\n1 {HEX_A}\n")
    assert ring.signing.key_id == 2
    assert ring.secret_for(2) == bytes.fromhex(HEX_B)
    assert ring.secret_for(1) == bytes.fromhex(HEX_A)
    assert ring.secret_for(3) is None


def test_secret_not_in_repr() -> None:
    ring = parse_secret_text(f"1 {HEX_B}\n")
    assert HEX_B not in repr(ring) and "ffff" not in repr(ring)


def test_mode_0400_accepted(tmp_path: Path) -> None:
    p = secret_file(tmp_path, f"1 {HEX_A}\n", 0o400)
    assert load_keyring(p, owner_uid=ME).key_ids == (1,)


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660, 0o700, 0o200, 0o000, 0o4600])
def test_bad_mode_refused(tmp_path: Path, mode: int) -> None:
    p = secret_file(tmp_path, f"1 {HEX_A}\n", mode)
    with pytest.raises(SecretFileError) as e:
        load_keyring(p, owner_uid=ME)
    msg = str(e.value)
    assert str(p) in msg
    assert f"chmod 600 {p}" in msg
    assert f"{mode & 0o7777:04o}" in msg


def test_mode_0644_message(tmp_path: Path) -> None:
    p = secret_file(tmp_path, f"1 {HEX_A}\n", 0o644)
    with pytest.raises(SecretFileError, match="chmod 600") as e:
        load_keyring(p, owner_uid=ME)
    assert e.value.path == str(p)
    assert "0644" in e.value.problem


def test_wrong_owner_refused(tmp_path: Path) -> None:
    p = secret_file(tmp_path, f"1 {HEX_A}\n")
    with pytest.raises(SecretFileError) as e:
        load_keyring(p, owner_uid=ME + 1)
    assert f"owned by uid {ME}" in str(e.value)
    assert f"chown root:root {p}" in str(e.value)


def test_default_owner_is_root(tmp_path: Path) -> None:
    p = secret_file(tmp_path, f"1 {HEX_A}\n")
    if ME == 0:
        assert load_keyring(p).key_ids == (1,)
    else:
        with pytest.raises(SecretFileError, match=r"not root \(uid 0\)"):
            load_keyring(p)


def test_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "nope"
    with pytest.raises(SecretFileError, match="does not exist") as e:
        load_keyring(p, owner_uid=ME)
    assert str(p) in str(e.value)
    assert "gen-secret" in str(e.value)


def test_empty_file(tmp_path: Path) -> None:
    p = secret_file(tmp_path, "")
    with pytest.raises(SecretFileError, match="no key found"):
        load_keyring(p, owner_uid=ME)


def test_only_comments(tmp_path: Path) -> None:
    p = secret_file(tmp_path, "# nothing\n\n")
    with pytest.raises(SecretFileError, match="no key found"):
        load_keyring(p, owner_uid=ME)


def test_directory_refused(tmp_path: Path) -> None:
    d = tmp_path / "dir"
    d.mkdir(mode=0o700)
    with pytest.raises(SecretFileError, match="not a regular file"):
        load_keyring(d, owner_uid=ME)


def test_fifo_refused_without_blocking(tmp_path: Path) -> None:
    f = tmp_path / "fifo"
    os.mkfifo(f, 0o600)
    with pytest.raises(SecretFileError, match="not a regular file"):
        load_keyring(f, owner_uid=ME)


def test_symlink_refused(tmp_path: Path) -> None:
    real = secret_file(tmp_path, f"1 {HEX_A}\n")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(SecretFileError, match="symbolic link"):
        load_keyring(link, owner_uid=ME)


def test_not_utf8(tmp_path: Path) -> None:
    p = tmp_path / "secret"
    p.write_bytes(b"1 \xff\xfe\n")
    p.chmod(0o600)
    with pytest.raises(SecretFileError, match="UTF-8"):
        load_keyring(p, owner_uid=ME)


def test_a_byte_order_mark_is_named(tmp_path: Path) -> None:
    """Saved by an editor as "UTF-8 with BOM": the message said "key id is not a number"."""
    p = secret_file(tmp_path, "\ufeff" + generate_secret_text())
    with pytest.raises(SecretFileError, match="byte-order mark") as caught:
        load_keyring(p, owner_uid=ME)
    assert "gen-secret" in caught.value.fix


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        (f"0 {HEX_A}", "key id"),
        (f"256 {HEX_A}", "key id"),
        (f"-1 {HEX_A}", "key id"),
        (f"x1 {HEX_A}", "key id"),
        (f"{HEX_A} 1", "key id"),  # swapped fields
        (f"1 {HEX_A} extra", "expected 2 fields"),
        ("1", "expected 2 fields"),
        (f"1 {HEX_A[:-2]}", "at least 32"),  # 15 bytes
        (f"1 {HEX_A}0", "not hexadecimal"),  # odd length
        (f"1 {HEX_A[:-1]}g", "not hexadecimal"),
        (f"1 {'é' * 32}", "not hexadecimal"),
        (f"1 {HEX_A}  # inline comment", "expected 2 fields"),
    ],
)
def test_bad_line_names_its_number(tmp_path: Path, line: str, problem: str) -> None:
    text = f"# comment\n\n1 {HEX_B}\n{line}\n"  # the bad line is line 4
    if line.startswith("1 "):
        text = f"# comment\n\n2 {HEX_B}\n{line}\n"
    p = secret_file(tmp_path, text)
    with pytest.raises(SecretFileError) as e:
        load_keyring(p, owner_uid=ME)
    msg = str(e.value)
    assert "line 4" in msg
    assert problem in msg
    assert str(p) in msg
    assert HEX_A not in msg and HEX_B not in msg  # never leak the secret


def test_duplicate_key_id() -> None:
    with pytest.raises(SecretFileError, match="line 2: key id 1 is listed twice"):
        parse_secret_text(f"1 {HEX_A}\n1 {HEX_B}\n")


def test_three_keys_refused() -> None:
    with pytest.raises(SecretFileError, match="line 3: more than 2 keys"):
        parse_secret_text(f"1 {HEX_A}\n2 {HEX_B}\n3 {HEX_B}\n")


def test_keyring_invariants() -> None:
    k = Key(1, bytes(16))
    with pytest.raises(ValueError):
        Keyring(())
    with pytest.raises(ValueError):
        Keyring((k, k))
    with pytest.raises(ValueError):
        Keyring((Key(0, bytes(16)),))
    with pytest.raises(ValueError):
        Keyring((Key(1, bytes(15)),))


def test_write_secret_file(tmp_path: Path) -> None:
    p = tmp_path / "new"
    old = os.umask(0)
    try:
        write_secret_file(p, generate_secret_text())
    finally:
        os.umask(old)
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert load_keyring(p, owner_uid=ME).key_ids == (1,)
    with pytest.raises(SecretFileError, match="already exists"):
        write_secret_file(p, generate_secret_text())


def test_write_secret_file_never_follows_a_dangling_symlink(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere"
    link = tmp_path / "secret"
    link.symlink_to(target)
    for replace in (False, True):
        with pytest.raises(SecretFileError, match="is a symbolic link") as e:
            write_secret_file(link, generate_secret_text(), replace=replace)
        assert f"rm {link}" in e.value.fix
    assert not target.exists()


def test_write_secret_file_replaces_by_renaming_a_new_0600_file(tmp_path: Path) -> None:
    p = secret_file(tmp_path, f"1 {HEX_A}\n", 0o644)
    with p.open() as reader:  # opened while the file was 0644
        write_secret_file(p, f"1 {HEX_B}\n", replace=True)
        assert reader.read() == f"1 {HEX_A}\n"  # the old inode, never the new secret
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert load_keyring(p, owner_uid=ME).signing.secret == bytes.fromhex(HEX_B)
    assert sorted(f.name for f in tmp_path.iterdir()) == ["secret"]  # no temporary left


def test_write_secret_file_in_a_missing_directory_is_a_secret_file_error(tmp_path: Path) -> None:
    p = tmp_path / "missing" / "secret"
    with pytest.raises(SecretFileError, match="cannot be written") as e:
        write_secret_file(p, generate_secret_text())
    assert str(p) in str(e.value)


def gen_secret(*args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    from mosqit_failover.cli import main

    code = main(["gen-secret", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_gen_secret_refuses_a_dangling_symlink_and_names_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "target"
    link = tmp_path / "secret"
    link.symlink_to(target)
    for extra in ((), ("--force",)):
        code, output = gen_secret(str(link), *extra, capsys=capsys)
        assert code == 2
        assert f"secret file {link}: is a symbolic link" in output
        assert f"rm {link}" in output and "Traceback" not in output
    assert not target.exists() and link.is_symlink()


def test_gen_secret_force_never_shows_the_new_secret_to_an_open_reader(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = secret_file(tmp_path, f"1 {HEX_A}\n", 0o644)
    with p.open() as reader:
        assert gen_secret(str(p), capsys=capsys)[0] == 2  # exists, no --force
        code, output = gen_secret(str(p), "--force", capsys=capsys)
        assert code == 0, output
        assert reader.read() == f"1 {HEX_A}\n"
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert load_keyring(p, owner_uid=ME).signing.secret != bytes.fromhex(HEX_A)


def test_gen_secret_creates_a_new_0600_file_and_its_directory(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    p = tmp_path / "etc" / "secret"
    old = os.umask(0)
    try:
        code, output = gen_secret(str(p), capsys=capsys)
    finally:
        os.umask(old)
    assert code == 0, output
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    assert load_keyring(p, owner_uid=ME).key_ids == (1,)


def test_gen_secret_below_a_file_is_a_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "file").write_text("")
    code, output = gen_secret(str(tmp_path / "file" / "secret"), capsys=capsys)
    assert code == 2
    assert "cannot create the directory" in output and "Traceback" not in output


def test_a_file_that_is_no_secret_file_is_not_told_to_chmod(tmp_path: Path) -> None:
    """A helper's attack: secret_file = "/etc/passwd" was told `chmod 600 /etc/passwd`."""
    p = secret_file(tmp_path, "root:x:0:0:root:/root:/bin/bash\n", 0o644)
    with pytest.raises(SecretFileError) as caught:
        load_keyring(p, owner_uid=ME)
    assert "chmod" not in str(caught.value), caught.value
    assert "line 1: expected 2 fields 'KEYID SECRET'" in str(caught.value)


def test_a_missing_secret_file_is_made_at_its_own_path(tmp_path: Path) -> None:
    """The fix named `gen-secret` alone, which writes /etc/mosqit-failover/secret."""
    p = tmp_path / "custom secret"
    with pytest.raises(SecretFileError) as caught:
        load_keyring(p, owner_uid=ME)
    assert caught.value.fix == (
        f"generate a fresh file with `mosqit-failover gen-secret '{p}'` (copy it to every node)"
    )


def test_gen_secret_never_offers_force_for_what_force_cannot_replace(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    directory = tmp_path / "dir"
    directory.mkdir()
    code, output = gen_secret(str(directory), capsys=capsys)
    assert code == 2 and "is not a regular file" in output and "--force" not in output
    code, output = gen_secret("", capsys=capsys)
    assert code == 2 and "the secret file's path is empty" in output, output
    assert "Traceback" not in output


@pytest.mark.parametrize("secret", ["0" * 64, "ab" * 32, "F" * 64])
def test_a_placeholder_secret_is_refused(tmp_path: Path, secret: str) -> None:
    """A helper's attack: an all-zero secret was taken."""
    p = secret_file(tmp_path, f"1 {secret}\n")
    with pytest.raises(SecretFileError, match="line 1: secret is a repeated pattern"):
        load_keyring(p, owner_uid=ME)
