from pathlib import Path

import pytest

from imprint.config import ConfigError, load_config
from imprint.ingest.config import IngestConfig

REPO = Path(__file__).resolve().parents[2]


def test_the_documented_default_file_equals_the_defaults():
    assert load_config(IngestConfig, REPO / "configs" / "ingest" / "default.yaml") == IngestConfig()


def test_overrides_are_typed_and_validated(tmp_path):
    cfg = load_config(IngestConfig, None, ["min_area_frac=0.01", "groups_per_part=4", "split=valid"])
    assert cfg.min_area_frac == 0.01 and cfg.groups_per_part == 4 and cfg.split == "valid"
    with pytest.raises(ConfigError, match="min_area_frac < max_area_frac"):
        load_config(IngestConfig, None, ["min_area_frac=0.95"])
    with pytest.raises(ConfigError, match="not key=value"):
        load_config(IngestConfig, None, ["min_area_frac"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("verify: sometimes\n")
    with pytest.raises(ConfigError, match="verify must be one of"):
        load_config(IngestConfig, bad)


def test_yaml_words_yes_and_no_stay_strings_where_a_string_is_expected():
    from imprint.config import load_yaml, parse_overrides

    assert parse_overrides(["mixed_precision=no", "flag=true", "other=False"]) == {
        "mixed_precision": "no", "flag": True, "other": False}
    assert load_yaml("a: no\nb: off\nc: yes\nd: false") == {"a": "no", "b": "off", "c": "yes", "d": False}
