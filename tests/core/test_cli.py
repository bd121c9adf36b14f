import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from imprint.cli import COMMANDS, main

REPO = Path(__file__).resolve().parents[2]


ROOMS = ("ingest", "pairing", "augment", "shards", "train", "eval")


def test_subpackages_are_the_repository_folders():
    for sub in ROOMS:
        spec = importlib.util.find_spec(f"imprint.{sub}")
        assert spec is not None and Path(spec.origin).parent.resolve() == REPO / sub
        link = REPO / "imprint" / sub  # a relative link, so any clone (and any static tool) sees the room
        assert link.is_symlink() and str(link.readlink()) == f"../{sub}"


@pytest.mark.slow
def test_a_type_checker_resolves_every_room_to_its_real_signature(tmp_path):
    # The static view: mypy from the repository root, no import hook, sees imprint.pairing.plan's real types.
    probe = tmp_path / "probe.py"
    probe.write_text("from imprint.pairing.plan import stable_hash\nreveal_type(stable_hash)\n"
                     + "".join(f"import imprint.{sub}\n" for sub in ROOMS))
    out = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "--follow-imports=silent",
                          "--config-file", str(REPO / "pyproject.toml"), str(probe)],
                         cwd=REPO, capture_output=True, text=True)
    assert "def (*parts: object) -> str" in out.stdout, out.stdout
    assert "error" not in out.stdout.replace("0 errors", ""), out.stdout


def test_nothing_generic_lands_at_the_top_of_site_packages(tmp_path):
    # Outside the repository (python -m puts the cwd on sys.path), only `imprint` is importable.
    code = ("import importlib.util as u; "
            "print([m for m in ('ingest','pairing','augment','shards','train','eval') if u.find_spec(m)])")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("command", [c.name for c in COMMANDS])
def test_every_subcommand_has_help(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    assert "usage: imprint " + command in capsys.readouterr().out


def test_ingest_rejects_unknown_source(capsys):
    with pytest.raises(SystemExit):
        main(["ingest", "nope", "--out", "x"])
    assert "invalid choice" in capsys.readouterr().err


def test_ingest_requires_root_for_a_real_source(tmp_path, capsys):
    assert main(["ingest", "ytvos", "--out", str(tmp_path), "--executor", "local"]) == 2
    assert "--root is required" in capsys.readouterr().err


def test_ingest_rejects_unknown_config_key(tmp_path, capsys):
    assert main(["ingest", "ytvos", "--root", str(tmp_path), "--out", str(tmp_path), "--executor", "local",
                 "--set", "min_area=0.1"]) == 2
    assert "unknown config key 'min_area'" in capsys.readouterr().err


def test_wrong_layout_fails_at_once_saying_what_was_expected(tmp_path, capsys):
    (tmp_path / "random.txt").write_text("hello")
    for source, expected in [("ytvos", "meta.json"), ("vipseg", "panomasks"), ("ppr10k", "masks/"),
                             ("mvimgnet", "<class>/<instance>/images")]:
        assert main(["ingest", source, "--root", str(tmp_path), "--out", str(tmp_path / "out"),
                     "--executor", "local"]) == 1
        err = capsys.readouterr().err
        assert "is not a" in err and expected in err, err


def test_help_and_verify_never_import_torch(tmp_path):
    # Only the chosen command's module is imported: `imprint --help` and `imprint verify` stay light.
    code = ("import sys; from imprint.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "main(['verify', sys.argv[1]])\n"
            "assert 'torch' not in sys.modules, 'torch was imported'")
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


@pytest.mark.parametrize("debug", [False, True])
def test_an_expected_failure_is_one_line_without_traceback_unless_debug(tmp_path, capsys, debug):
    argv = ["preview", str(tmp_path / "nowhere"), "--out", str(tmp_path / "p.html")] + (["--debug"] if debug else [])
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert "imprint preview:" in err and "manifest.json" in err and "imprint pairs" in err
    assert ("Traceback" in err) == debug
    if not debug:
        assert len(err.strip().splitlines()) == 1, err
