"""docs/settings.md is generated from stt2v_ray/config.py and must not go stale."""
from __future__ import annotations

from pathlib import Path

from stt2v_ray.config import setting_keys
from stt2v_ray.settings_doc import COMMAND, main, render

DOC = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def test_settings_doc_is_up_to_date():
    assert DOC.read_text(encoding="utf-8") == render(), f"docs/settings.md is stale: run `{COMMAND}`"


def test_every_setting_key_has_a_row_with_its_description():
    text = render()
    for key, description in setting_keys():
        assert f"| `{key}` |" in text, key
        assert description.replace("|", "\\|") in text, key


def test_check_flags_a_stale_file_and_write_fixes_it(tmp_path, capsys):
    path = tmp_path / "settings.md"
    path.write_text(render().replace("Frames one chunk generates", "Frames per chunk"), encoding="utf-8")
    assert main(["--check", str(path)]) == 1
    assert COMMAND in capsys.readouterr().err
    assert main([str(path)]) == 0
    assert main(["--check", str(path)]) == 0
    assert path.read_text(encoding="utf-8") == render()
