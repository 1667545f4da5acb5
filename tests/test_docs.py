from pathlib import Path

from scripts.settings_table import render_readme

ROOT = Path(__file__).resolve().parents[1]


def test_readme_configuration_table_lists_every_setting():
    readme = (ROOT / "README.md").read_text()
    assert render_readme(readme) == readme, "run: python scripts/settings_table.py --write"


def test_env_example_names_only_real_settings():
    from services.settings import Settings

    names = {f"REALRAG_{n.upper()}" for n in Settings.model_fields}
    for line in (ROOT / ".env.example").read_text().splitlines():
        line = line.lstrip("# ")
        if line.startswith("REALRAG_"):
            assert line.split("=", 1)[0] in names, line
