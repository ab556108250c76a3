"""Renders, lints and validates a Helm chart offline, for tests/helm_chart.rs.

    render.py CHART OUT [--values FILE] [--name NAME] [--namespace NS]

Helm's own engine does the work (helm-python-sdk binds Helm v4's Go library: no helm
binary, no cluster, no network). The chart is linted strictly and rendered with the
values file, and every rendered object is validated against the Kubernetes API schemas
of kubernetes-validate, strictly (unknown fields are errors), for the oldest Kubernetes
the chart accepts and for the newest the validator knows. OUT/manifests.json receives
the objects as a JSON list of {"template", "object"}, OUT/NOTES.txt the rendered notes.

Exit status: 0 all passed; 2 the chart did not render (the message is Helm's, on
stderr); 3 lint findings; 4 an object failed validation.
"""

import argparse
import json
import os
import sys

import helm_python as helm
import kubernetes_validate
import yaml

OLDEST_KUBERNETES = "1.25.0"


def fail(status, message):
    print(message, file=sys.stderr)
    sys.exit(status)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("chart")
    ap.add_argument("out")
    ap.add_argument("--values")
    ap.add_argument("--name", default="vpn")
    ap.add_argument("--namespace", default="vpn")
    args = ap.parse_args()

    values = None
    if args.values:
        with open(args.values, encoding="utf-8") as f:
            values = helm.values_from_yaml(f.read())

    with helm.Chart.load(args.chart) as chart:
        try:
            rendered = chart.render(values, name=args.name, namespace=args.namespace, is_install=True)
        except helm.HelmError as e:
            fail(2, f"render failed: {e}")

    newest = kubernetes_validate.latest_version()
    findings = []
    for kube in (OLDEST_KUBERNETES, newest):
        report = helm.lint(args.chart, values, strict=True, namespace=args.namespace, kube_version="v" + kube)
        # Severity 1 is informational (e.g. "icon is recommended"); 2 and 3 are findings.
        findings += [
            f"lint (Kubernetes {kube}): {m['path']}: {m['error']}"
            for m in report["messages"]
            if m["severity"] >= 2
        ]
        findings += [f"lint (Kubernetes {kube}): {e}" for e in report["errors"]]
    if findings:
        fail(3, "\n".join(findings))

    objects = []
    notes = ""
    for template, text in sorted(rendered.items()):
        if template.endswith("NOTES.txt"):
            notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc is not None:
                objects.append({"template": template, "object": doc})
    if not objects:
        fail(4, "the chart rendered no objects")

    problems = []
    for entry in objects:
        obj = entry["object"]
        what = f"{entry['template']}: {obj.get('kind')}/{obj.get('metadata', {}).get('name')}"
        for kube in (OLDEST_KUBERNETES, newest):
            try:
                kubernetes_validate.validate(obj, kube, strict=True)
            except kubernetes_validate.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{what} (Kubernetes {kube}): {path}: {e.message}")
            except kubernetes_validate.SchemaNotFoundError as e:
                problems.append(f"{what} (Kubernetes {kube}): no schema: {e.message}")
    if problems:
        fail(4, "\n".join(problems))

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "manifests.json"), "w", encoding="utf-8") as f:
        json.dump(objects, f, indent=1)
    with open(os.path.join(args.out, "NOTES.txt"), "w", encoding="utf-8") as f:
        f.write(notes)
    kinds = sorted(f"{o['object']['kind']}/{o['object']['metadata']['name']}" for o in objects)
    print(f"rendered, linted and validated against Kubernetes {OLDEST_KUBERNETES} and {newest} "
          f"(Helm {helm.helm_sdk_version()}): {', '.join(kinds)}")


if __name__ == "__main__":
    main()
