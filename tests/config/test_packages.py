"""Reading General Bots packages: config.csv rows, param-X variables, dialogs."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.packages import PackageError, discover_packages, load_package, parse_config_csv

# The config.csv of General Bots' whatsapp template (AGPL-3.0), shortened.
WHATSAPP_CONFIG = """name,value
,
bot-name,WhatsApp Integration
bot-description,WhatsApp messaging integration
,
param-whatsappPhoneNumber,
param-whatsappVerifyToken,
,
llm-model,gpt-4o-mini
llm-temperature,0.3
,
param-admin1,admin@yourdomain.com
"""


def test_general_bots_config_csv() -> None:
    config = parse_config_csv(WHATSAPP_CONFIG)
    assert config["bot-name"] == "WhatsApp Integration"
    assert config["LLM Model"] == "gpt-4o-mini"  # spelling-insensitive keys
    assert config.number("llm-temperature", 1.0) == 0.3
    assert config.params() == {
        "whatsappphonenumber": "",
        "whatsappverifytoken": "",
        "admin1": "admin@yourdomain.com",
    }
    assert "name" not in config  # the header row is not a setting


def test_spaced_keys_and_quoted_values() -> None:
    config = parse_config_csv(
        'name,value\nTheme Color,teal\nStart Dialog,start\nGreeting,"Hi, there"\n'
    )
    assert config["theme-color"] == "teal"
    assert config["start_dialog"] == "start"
    assert config["greeting"] == "Hi, there"
    assert config.integer("missing", 7) == 7


def test_load_package(tmp_path: Path) -> None:
    root = tmp_path / "shop.gbai"
    (root / "shop.gbdialog").mkdir(parents=True)
    (root / "shop.gbot").mkdir()
    (root / "shop.gbdialog" / "Start.bas").write_text('TALK "hi"\n')
    (root / "shop.gbot" / "config.csv").write_text(
        "name,value\nbot-name,Shop\nparam-currency,EUR\n"
    )
    (tmp_path / "notabot").mkdir()
    assert discover_packages(tmp_path) == [root]
    package = load_package(root)
    assert package.name == "shop"
    assert package.display_name == "Shop"
    assert package.dialogs == {"start": 'TALK "hi"\n'}
    assert package.config.params() == {"currency": "EUR"}
    assert package.start_dialog == "start"


def test_not_a_package(tmp_path: Path) -> None:
    with pytest.raises(PackageError):
        load_package(tmp_path)
    with pytest.raises(PackageError):
        discover_packages(tmp_path / "missing")
