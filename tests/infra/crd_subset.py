"""Derive the compact KubeRay schemas of ``kuberay_crds.yaml`` from KubeRay's real CRDs.

No package on PyPI ships KubeRay's CRDs, and the tests have no network, so the tests validate the
manifests of infra/k8s against the part of each CRD's ``openAPIV3Schema`` that they use: every
property a manifest sets (with its type, enum, pattern, required fields and int-or-string
marker, at every depth), the required properties of each object, and nothing else. Each object
that lists properties gets ``additionalProperties: false``, which is what ``kubectl apply``'s
strict field validation does with an unknown field. A manifest that starts using another field
of the CRD needs this file regenerated:

    python -m tests.infra.crd_subset ray.io_rayclusters.yaml ray.io_rayjobs.yaml > tests/infra/kuberay_crds.yaml

with the CRDs of the KubeRay release named in ``KUBERAY`` (``ray-operator/config/crd/bases/`` of
its repository). CEL rules (``x-kubernetes-validations``) are left out: jsonschema cannot run them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import yaml

KUBERAY = "v1.7.0"
MANIFESTS = Path(__file__).resolve().parents[2] / "infra" / "k8s"
# Keywords of a structural schema that constrain a value (descriptions and defaults do not).
KEPT = (
    "type",
    "format",
    "enum",
    "pattern",
    "minimum",
    "maximum",
    "minLength",
    "maxLength",
    "minItems",
    "maxItems",
    "anyOf",
    "nullable",
    "x-kubernetes-int-or-string",
    "x-kubernetes-preserve-unknown-fields",
)


def subset(schema: dict[str, Any], values: list[Any], where: str) -> dict[str, Any]:
    """The part of ``schema`` that ``values`` (the manifests' values at this place) use."""
    out = {key: schema[key] for key in KEPT if key in schema}
    if "required" in schema:
        out["required"] = list(schema["required"])
    if "properties" in schema:
        objects = [v for v in values if isinstance(v, dict)]
        used = sorted({key for obj in objects for key in obj} | set(schema.get("required", [])))
        unknown = [key for key in used if key not in schema["properties"]]
        if unknown:
            raise SystemExit(f"{where}: {unknown} are not properties of the CRD here")
        out["properties"] = {
            key: subset(schema["properties"][key], [obj[key] for obj in objects if key in obj], f"{where}.{key}")
            for key in used
        }
        if not schema.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
    elif isinstance(schema.get("additionalProperties"), dict):
        inner = [item for v in values if isinstance(v, dict) for item in v.values()]
        out["additionalProperties"] = subset(schema["additionalProperties"], inner, f"{where}.*")
    if isinstance(schema.get("items"), dict):
        inner = [item for v in values if isinstance(v, list) for item in v]
        out["items"] = subset(schema["items"], inner, f"{where}[]")
    return out


def manifests_of(kind: str) -> list[dict]:
    found = []
    for path in sorted(MANIFESTS.glob("*.yaml")):
        with open(path, encoding="utf-8") as fh:
            found += [doc for doc in yaml.safe_load_all(fh) if doc and doc.get("kind") == kind]
    return found


def main(crd_paths: list[str]) -> None:
    schemas = {}
    for path in crd_paths:
        with open(path, encoding="utf-8") as fh:
            crd = yaml.safe_load(fh)
        kind = crd["spec"]["names"]["kind"]
        (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1"]
        schemas[kind] = subset(version["schema"]["openAPIV3Schema"], manifests_of(kind), kind)
    print(
        f"# The parts of KubeRay {KUBERAY}'s CRDs (ray.io/v1 RayCluster, ray.io_rayclusters.yaml; RayJob,\n"
        "# ray.io_rayjobs.yaml; openAPIV3Schema) that the manifests of infra/k8s use, derived by\n"
        "# tests/infra/crd_subset.py (its docstring says how to regenerate this file).\n"
        f"kuberay: {KUBERAY}"
    )
    print(yaml.safe_dump({"schemas": schemas}, sort_keys=True, width=120), end="")


if __name__ == "__main__":
    main(sys.argv[1:])
