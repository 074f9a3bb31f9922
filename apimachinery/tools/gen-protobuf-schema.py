#!/usr/bin/env python3
"""Generate apimachinery/src/protobuf/schema.json from the Kubernetes API sources.

Inputs are plain checkouts of two Kubernetes staging repositories at the release the server
speaks (v0.32.x for Kubernetes 1.32):

    git clone --branch v0.32.9 https://github.com/kubernetes/api
    git clone --branch v0.32.9 https://github.com/kubernetes/apimachinery
    python3 apimachinery/tools/gen-protobuf-schema.py --api api --apimachinery apimachinery \
        > apimachinery/src/protobuf/schema.json

(Any tree of those tags works, e.g. `git -C <bare clone> archive v0.32.9 | tar -x -C api`.)
The output is deterministic: regenerating from the same tags gives the committed file.

Two sources per package are read:

* `generated.proto`: messages, field numbers, wire types and the referenced message types.
* the Go type definitions (`*.go`): the JSON name of each field, whether it is `,inline`
  (its message's fields belong to the parent JSON object), and whether a zero value is
  dropped from JSON (a non-pointer field tagged `omitempty`: Go always writes such fields on
  the wire, so an empty string or a zero number there means "unset").

Output (one message per line, stable order):

    {"kinds": [[apiVersion, kind, message index], ...],
     "messages": [[name, [[tag, json name, type, flags], ...]], ...]}

`type` is a message index or a code: s string, b bool, i int32, l int64, d double, y bytes,
Q Quantity, I IntOrString, T Time, M MicroTime, D Duration, R RawExtension, F FieldsV1,
L a list-of-strings wrapper message (`type ExtraValue []string`: items = 1; JSON array).
`flags` letters: r repeated, m map (string keys; `type` is the value type), z zero value
omitted, n inline. apiVersion `*` means the kind is accepted under any apiVersion.
"""

import argparse
import json
import os
import re
import sys

# Group/version packages whose kinds are decoded. Every kind registered there (except lists)
# is a root; everything reachable from a root is emitted.
GROUP_PACKAGES = [
    "core/v1",
    "apps/v1",
    "batch/v1",
    "autoscaling/v1",
    "coordination/v1",
    "discovery/v1",
    "events/v1",
    "networking/v1",
    "policy/v1",
    "rbac/v1",
    "authentication/v1",
    "authorization/v1",
    "certificates/v1",
    "node/v1",
    "scheduling/v1",
    "storage/v1",
]

META = "k8s.io.apimachinery.pkg.apis.meta.v1"
# Kinds that every group version registers: accepted under any apiVersion.
META_KINDS = ["DeleteOptions"]

SPECIAL = {
    "k8s.io.apimachinery.pkg.api.resource.Quantity": "Q",
    "k8s.io.apimachinery.pkg.util.intstr.IntOrString": "I",
    META + ".Time": "T",
    META + ".MicroTime": "M",
    META + ".Duration": "D",
    "k8s.io.apimachinery.pkg.runtime.RawExtension": "R",
    META + ".FieldsV1": "F",
}

SCALAR = {"string": "s", "bool": "b", "int32": "i", "int64": "l", "double": "d", "bytes": "y"}

APIMACHINERY_PACKAGES = [
    "pkg/apis/meta/v1",
    "pkg/api/resource",
    "pkg/util/intstr",
    "pkg/runtime",
    "pkg/runtime/schema",
]


def warn(msg):
    print("gen-protobuf-schema: " + msg, file=sys.stderr)


def strip_comments(text):
    return re.sub(r"//[^\n]*", "", text)


FIELD_RE = re.compile(r"^\s*(optional|repeated|required)\s+(\S+)\s+(\w+)\s*=\s*(\d+)")
MAP_RE = re.compile(r"^\s*map<\s*(\w+)\s*,\s*(\S+)\s*>\s+(\w+)\s*=\s*(\d+)")


def parse_proto(path):
    """(package, {message name: [(label, type, name, tag)]}) for one generated.proto."""
    text = strip_comments(open(path, encoding="utf-8").read())
    package = re.search(r"^package\s+([\w.]+);", text, re.M).group(1)
    messages = {}
    for m in re.finditer(r"^message\s+(\w+)\s*\{(.*?)^\}", text, re.M | re.S):
        fields = []
        for line in m.group(2).splitlines():
            if not line.strip():
                continue
            f = FIELD_RE.match(line)
            if f:
                fields.append((f.group(1), f.group(2), f.group(3), int(f.group(4))))
                continue
            f = MAP_RE.match(line)
            if f:
                if f.group(1) != "string":
                    sys.exit(f"{path}: map key {f.group(1)} not supported")
                fields.append(("map", f.group(2), f.group(3), int(f.group(4))))
                continue
            if line.strip().startswith(("option", "reserved")):
                continue
            sys.exit(f"{path}: message {m.group(1)}: cannot parse {line.strip()!r}")
        messages[m.group(1)] = fields
    return package, messages


GO_FIELD_RE = re.compile(r"^\s*(?:(\w+)\s+)?(\S+)\s+`([^`]*)`")


def parse_go_structs(directory):
    """({type name: {proto tag: (json name, inline, pointer, omitempty)}}, {string slice
    type names}) for one Go package."""
    structs = {}
    string_lists = set()
    for name in sorted(os.listdir(directory)):
        if not name.endswith(".go") or name.endswith("_test.go"):
            continue
        if name.startswith("zz_generated") or name.startswith("generated"):
            continue
        text = open(os.path.join(directory, name), encoding="utf-8").read()
        string_lists.update(re.findall(r"^type\s+(\w+)\s+\[\]string\s*$", text, re.M))
        for m in re.finditer(r"^type\s+(\w+)\s+struct\s*\{\n(.*?)^\}", text, re.M | re.S):
            fields = {}
            for line in m.group(2).splitlines():
                if line.strip().startswith("//"):
                    continue
                f = GO_FIELD_RE.match(line)
                if not f:
                    continue
                go_type, tags = f.group(2), f.group(3)
                pb = re.search(r'protobuf:"([^"]*)"', tags)
                if not pb or pb.group(1) == "-":
                    continue
                tag = int(pb.group(1).split(",")[1])
                js = re.search(r'json:"([^"]*)"', tags)
                parts = js.group(1).split(",") if js else [""]
                fields[tag] = (
                    parts[0],
                    "inline" in parts[1:],
                    go_type.startswith("*"),
                    "omitempty" in parts[1:],
                )
            structs[m.group(1)] = fields
    return structs, string_lists


def register_kinds(directory):
    """(group, version, [kinds]) from a group package's register.go."""
    text = open(os.path.join(directory, "register.go"), encoding="utf-8").read()
    group = re.search(r'GroupName\s*=\s*"([^"]*)"', text).group(1)
    version = os.path.basename(directory)
    body = re.search(r"AddKnownTypes\(SchemeGroupVersion,(.*?)\)\n", text, re.S).group(1)
    kinds = [k for k in re.findall(r"&(\w+)\{\}", body) if not k.endswith("List")]
    return group, version, kinds


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--api", required=True, help="checkout of k8s.io/api")
    ap.add_argument("--apimachinery", required=True, help="checkout of k8s.io/apimachinery")
    args = ap.parse_args()

    protos = {}  # package -> {message: fields}
    go = {}  # package -> {struct: {tag: info}}
    special = dict(SPECIAL)
    dirs = [os.path.join(args.api, p) for p in GROUP_PACKAGES]
    dirs += [os.path.join(args.apimachinery, p) for p in APIMACHINERY_PACKAGES]
    for d in dirs:
        package, messages = parse_proto(os.path.join(d, "generated.proto"))
        protos[package] = messages
        go[package], string_lists = parse_go_structs(d)
        for name in string_lists:
            if messages.get(name) == [("repeated", "string", "items", 1)]:
                special[f"{package}.{name}"] = "L"

    def resolve(package, type_name):
        if type_name.startswith("."):
            type_name = type_name[1:]
        if "." not in type_name:
            type_name = package + "." + type_name
        return type_name

    roots = []  # (apiVersion, kind, full message name)
    for p in GROUP_PACKAGES:
        group, version, kinds = register_kinds(os.path.join(args.api, p))
        package = "k8s.io.api." + p.replace("/", ".")
        api_version = f"{group}/{version}" if group else version
        for kind in kinds:
            if kind not in protos[package]:
                warn(f"kind {api_version} {kind} has no protobuf message; skipped")
                continue
            roots.append((api_version, kind, f"{package}.{kind}"))
    for kind in META_KINDS:
        roots.append(("*", kind, f"{META}.{kind}"))

    # Breadth-first over message references, assigning indices in discovery order.
    order, index = [], {}

    def visit(full):
        if full in special or full in index:
            return
        package, _, name = full.rpartition(".")
        if package not in protos or name not in protos[package]:
            sys.exit(f"unknown message {full}")
        index[full] = len(order)
        order.append(full)

    for _, _, full in roots:
        visit(full)
    i = 0
    while i < len(order):
        package, _, name = order[i].rpartition(".")
        for label, type_name, _, _ in protos[package][name]:
            if type_name not in SCALAR:
                visit(resolve(package, type_name))
        i += 1

    problems = 0
    out_messages = []
    for full in order:
        package, _, name = full.rpartition(".")
        go_fields = go[package].get(name)
        if go_fields is None:
            warn(f"{full}: no Go struct; zero values kept, names from .proto")
            go_fields = {}
        fields = []
        for label, type_name, proto_name, tag in protos[package][name]:
            if type_name in SCALAR:
                code = SCALAR[type_name]
            else:
                ref = resolve(package, type_name)
                code = special.get(ref, index.get(ref))
            flags = {"repeated": "r", "map": "m"}.get(label, "")
            info = go_fields.get(tag)
            json_name = proto_name
            if info is None:
                if go_fields:
                    warn(f"{full}.{proto_name} ({tag}): no Go field")
                    problems += 1
            else:
                go_json, inline, pointer, omitempty = info
                if inline:
                    if not isinstance(code, int) or flags:
                        sys.exit(f"{full}.{proto_name}: inline field is not a message")
                    flags += "n"
                elif go_json != proto_name:
                    warn(f"{full}.{proto_name}: JSON name {go_json!r} differs; using it")
                    json_name = go_json
                if isinstance(code, str) and code in SCALAR.values() and not flags:
                    if omitempty and not pointer:
                        flags += "z"
            fields.append([tag, json_name, code, flags])
        fields.sort(key=lambda f: f[0])
        out_messages.append([full.removeprefix("k8s.io."), fields])

    kinds = [[api_version, kind, index[full]] for api_version, kind, full in roots]
    lines = ["{", '"kinds": [']
    lines.append(",\n".join(json.dumps(k, separators=(",", ":")) for k in kinds))
    lines.append("],")
    lines.append('"messages": [')
    lines.append(",\n".join(json.dumps(m, separators=(",", ":")) for m in out_messages))
    lines.append("]")
    lines.append("}")
    print("\n".join(lines))
    warn(f"{len(kinds)} kinds, {len(out_messages)} messages, {problems} unmatched fields")


if __name__ == "__main__":
    main()
