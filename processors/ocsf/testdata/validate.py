"""Validate OCSF events (JSON lines on stdin) against a published OCSF schema version.

The schema is the OCSF export bundled in the ocsf-json-schema package, turned into
JSON Schema 2020-12 per class (no profiles) and checked with the jsonschema package.
Prints one JSON object per input line: {"line": N, "class_uid": C, "errors": [...]}.
Exits 1 if any event is invalid, 2 on bad usage.

    python validate.py OCSF_VERSION < events.jsonl
"""
import json
import sys

from jsonschema import Draft202012Validator
from ocsf_json_schema import OcsfJsonSchemaEmbedded, get_ocsf_schema


def main() -> int:
    if len(sys.argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    schema = OcsfJsonSchemaEmbedded(get_ocsf_schema(version=sys.argv[1]))
    validators = {}
    bad = 0
    for n, line in enumerate(sys.stdin, 1):
        if not line.strip():
            continue
        event = json.loads(line)
        uid = event.get("class_uid")
        if uid not in validators:
            name = schema.lookup_class_name_from_uid(class_uid=uid)
            validators[uid] = Draft202012Validator(schema.get_class_schema(class_name=name, profiles=[]))
        errors = [f"{'/'.join(map(str, e.absolute_path)) or '(event)'}: {e.message}"
                  for e in validators[uid].iter_errors(event)]
        bad += bool(errors)
        print(json.dumps({"line": n, "class_uid": uid, "errors": errors}))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
