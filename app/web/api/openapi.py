"""The OpenAPI 3.1 document of /api/v1, generated from the registry's payload models, so a Node
app can generate a typed client (`npx openapi-typescript`) that always matches the worker.

Each job has its own request schema (`EnqueueProcessDocument`: `name` a constant, `payload` the
job's model as `model_json_schema(by_alias=True)` writes it); `EnqueueRequest` is their union,
discriminated by `name`. Aliases (`process-inbox`) are accepted by the API but not listed, so
a generated client has one name per job. Response shapes are written out in schemas.py.

Request schemas carry no `default` keyword (the default is named in the field's description):
openapi-typescript, with its default settings (`defaultNonNullable`), types a property that has a
`default` as always present, which is true of what a server returns but not of what a client
sends, so `{documentId, orgId}` would not compile against a payload with defaulted fields.
Their `required` lists are pydantic's in validation mode: exactly the fields without a default
(tests/web/test_readme_node.py compiles the README's call against the generated types). Response
schemas (schemas.py) have no defaults: what their own `required` lists name stays required.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic.json_schema import models_json_schema

from app import __version__
from app.queue.registry import ANY_QUEUE, JobSpec, Registry
from app.web.api import schemas
from app.web.api.calendar import NewConnectionBody
from app.web.api.submit import MAX_JOBS_PER_REQUEST, JobBody

REF = "#/components/schemas/{model}"


def request_name(job: str) -> str:
    """`process_document` -> `EnqueueProcessDocument`."""
    return "Enqueue" + "".join(part.capitalize() for part in job.replace("-", "_").split("_"))


def build(registry: Registry) -> dict[str, Any]:
    specs = sorted(registry, key=lambda s: s.name)
    payload_refs, components = _payload_components(specs)
    envelope = for_writers(JobBody.model_json_schema(by_alias=True))["properties"]
    queues = list(registry.table.queues)
    mapping: dict[str, str] = {}
    for spec in specs:
        name = request_name(spec.name)
        _add(components, name, _request_schema(spec, payload_refs[spec.payload], envelope, queues))
        mapping[spec.name] = REF.format(model=name)
    _add(components, "EnqueueRequest", {"oneOf": [{"$ref": ref} for ref in mapping.values()],
                                        "discriminator": {"propertyName": "name", "mapping": mapping}})
    _add(components, "NewCalendarConnection",
         for_writers(NewConnectionBody.model_json_schema(by_alias=True, ref_template=REF)))
    for name, schema in schemas.RESPONSES.items():
        _add(components, name, schema)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Workhorse API", "version": __version__,
                 "description": "Enqueue and inspect jobs, queues and dead letters of the Workhorse worker."},
        "servers": [{"url": "/api/v1"}],
        "security": [{"bearer": []}],
        "paths": schemas.paths(MAX_JOBS_PER_REQUEST),
        "components": {"schemas": components,
                       "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                                      "description": "a token of API_TOKEN; `ro:` ones only read"}}},
    }


def _payload_components(specs: list[JobSpec[Any]]) -> tuple[dict[type[Any], dict[str, Any]], dict[str, Any]]:
    """({model: its $ref}, components): every payload model (and the models and enums they
    use) once, named as pydantic names them (qualified by module when two share a name)."""
    models = list(dict.fromkeys(spec.payload for spec in specs))
    refs, top = models_json_schema([(m, "validation") for m in models], by_alias=True, ref_template=REF)
    defs: dict[str, Any] = top.get("$defs", {})
    return {model: dict(refs[(model, "validation")]) for model in models}, for_writers(defs)


# Keywords whose values are data, not schemas: never walked into.
_DATA_KEYWORDS = frozenset({"default", "const", "enum", "examples"})
# Keywords whose values map names to schemas (the names are not keywords).
_SCHEMA_MAPS = frozenset({"$defs", "patternProperties", "dependentSchemas"})


def for_writers(schema: Any) -> Any:
    """`schema` as a client sends it: no property (at any depth) has a `default`; a default
    other than null is named in the property's description instead (see the module docstring)."""
    if isinstance(schema, list):
        return [for_writers(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    view: dict[str, Any] = {}
    for key, value in schema.items():
        if key in _DATA_KEYWORDS:
            view[key] = value
        elif key == "properties" and isinstance(value, dict):
            view[key] = {name: _without_default(for_writers(sub)) for name, sub in value.items()}
        elif key in _SCHEMA_MAPS and isinstance(value, dict):
            view[key] = {name: for_writers(sub) for name, sub in value.items()}
        else:
            view[key] = for_writers(value)
    return view


def _without_default(prop: Any) -> Any:
    if not isinstance(prop, dict) or "default" not in prop:
        return prop
    prop = dict(prop)
    default = prop.pop("default")
    if default is not None:
        said = prop.get("description")
        prop["description"] = (f"{said}; " if said else "") + f"default {json.dumps(default)}"
    return prop


def _request_schema(spec: JobSpec[Any], payload_ref: dict[str, Any], envelope: dict[str, Any],
                    queues: list[str]) -> dict[str, Any]:
    any_queue = spec.queue == ANY_QUEUE
    has_required = any(field.is_required() for field in spec.payload.model_fields.values())
    queue = ({"type": "string", "enum": queues, "description": "the queue to run on (this job runs on any)"}
             if any_queue else {"type": "string", "const": spec.queue, "description": "optional; always this"})
    required = ["name", *(["payload"] if has_required else []), *(["queue"] if any_queue else [])]
    return {
        "type": "object",
        "title": request_name(spec.name),
        "description": spec.description or f"Enqueue {spec.name}.",
        "properties": {"name": {"type": "string", "const": spec.name}, "payload": payload_ref,
                       "jobId": envelope["jobId"], "queue": queue, "delayMs": envelope["delayMs"],
                       "runAt": envelope["runAt"]},
        "required": required,
        "additionalProperties": False,
    }


def _add(components: dict[str, Any], name: str, schema: dict[str, Any]) -> None:
    if name in components and components[name] != schema:
        raise ValueError(f"OpenAPI component {name!r} would be defined twice (a payload model has that name)")
    components[name] = schema
