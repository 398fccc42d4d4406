"""Write docs/swagger.json from docs/swagger.yaml, the OpenAPI file that is edited by hand.

    python scripts/openapi_json.py           # (re)write docs/swagger.json
    python scripts/openapi_json.py --check   # exit 1 if docs/swagger.json is out of date

`tests/unit/test_openapi_spec.py` runs the same check, so a stale JSON file fails the suite.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
YAML_PATH = ROOT / "docs" / "swagger.yaml"
JSON_PATH = ROOT / "docs" / "swagger.json"


def load_yaml(path: Path = YAML_PATH) -> dict[str, Any]:
    """The spec as plain data; safe_load, so the file can hold nothing but data."""
    spec = yaml.safe_load(path.read_text(encoding="utf-8"))
    if not isinstance(spec, dict):
        raise ValueError(f"{path} does not hold a mapping")
    return spec


def render_json(spec: dict[str, Any]) -> str:
    """The JSON text as committed: key order of the YAML file, two-space indent, final newline."""
    return json.dumps(spec, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    expected = render_json(load_yaml())
    if "--check" in argv:
        current = JSON_PATH.read_text(encoding="utf-8") if JSON_PATH.exists() else ""
        if current != expected:
            print(f"{JSON_PATH} is out of date: run python scripts/openapi_json.py", file=sys.stderr)
            return 1
        return 0
    JSON_PATH.write_text(expected, encoding="utf-8")
    print(f"wrote {JSON_PATH.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
