"""The JSON Schema of everything the sidecar sends the extension (`python -m sidecar.wire`).

`scripts/gen_protocol.sh` turns it into `extension/src/protocol.generated.ts`, and the test
run regenerates it and fails when the committed file differs: the TypeScript types can never
drift from the pydantic models in `sidecar/results.py`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic.json_schema import models_json_schema

from sidecar import results


def schema() -> dict[str, Any]:
    models = [getattr(results, name) for name in sorted(results.__all__)]
    _, top = models_json_schema(
        [(m, "serialization") for m in models], ref_template="#/$defs/{model}"
    )
    top["title"] = "OrchProtocol"
    top["type"] = "object"
    # One property per model, so the generator emits every one of them by name.
    top["properties"] = {m.__name__: {"$ref": f"#/$defs/{m.__name__}"} for m in models}
    top["additionalProperties"] = False
    for definition in top.get("$defs", {}).values():
        props = definition.get("properties", {})
        for prop in props.values():
            prop.pop("title", None)  # else the generator names an alias per field (Name1, …)
        # The sidecar sends model_dump(mode="json"): every field is always on the wire.
        if props:
            definition["required"] = sorted(props)
    return top


def main() -> int:
    json.dump(schema(), sys.stdout, indent=1, sort_keys=True)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
