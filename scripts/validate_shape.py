#!/usr/bin/env python3
"""Validates a JSON request file against the input shape of an AWS API operation in botocore's model.

  validate_shape.py SERVICE OPERATION FILE              # e.g. ecs RegisterTaskDefinition deploy/ecs/task-definition.json
  validate_shape.py --self-test SERVICE OPERATION FILE  # mutated copies of FILE must each be rejected

The file is the operation's input as `aws SERVICE OPERATION --cli-input-json file://FILE` reads it. The
walk checks what the service would refuse:
  - structure: every key is a member, every required member is there, a union has one member set
  - list, map: element and key/value shapes, min/max element count
  - string: type, enum values, min/max length
  - integer, long, float, double: type (a JSON true/false is not a number), min/max value
  - boolean: type
and prints one error per line with its JSON path (`containerDefinitions[0].essential: ...`); the exit code
is 1 when there is any. Patterns are not checked: the model's patterns are unanchored regular expressions
in a dialect Python's re does not read (\\p{L}), and those in RegisterTaskDefinition accept every string.

--self-test proves the check can fail: it applies each mutation in SELF_TEST below (written for
deploy/ecs/task-definition.json) to a copy of FILE and fails unless every copy is rejected with the
expected error at the expected path, and the unmutated FILE is accepted.

Needs botocore: scripts/check-deploy.sh runs it with the python of its tools venv, where botocore is
pinned, so the model (and so the verdict) changes only when that pin does.
"""
import copy
import json
import sys

import botocore.session

NUMBER_TYPES = {"integer", "long", "float", "double"}


def json_type(value):
    if value is None:
        return "null"
    for kind, name in ((bool, "a boolean"), (int, "an integer"), (float, "a number"), (str, "a string"),
                       (list, "a list"), (dict, "an object")):
        if isinstance(value, kind):
            return name
    return type(value).__name__


def path_join(path, key):
    if isinstance(key, int):
        return f"{path}[{key}]"
    if path and not key.isidentifier():
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


def check_count(value, shape, path, what, errors):
    low, high = shape.metadata.get("min"), shape.metadata.get("max")
    if low is not None and len(value) < low:
        errors.append(f"{path}: {what} {len(value)} is below the minimum {low}")
    if high is not None and len(value) > high:
        errors.append(f"{path}: {what} {len(value)} is above the maximum {high}")


def validate(value, shape, path, errors):
    kind = shape.type_name
    where = path or "(top level)"
    if kind == "structure":
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object ({shape.name}), got {json_type(value)}")
            return
        for key in value:
            if key not in shape.members:
                errors.append(f"{path_join(path, key)}: unknown member of {shape.name}")
        for key in shape.required_members:
            if key not in value:
                errors.append(f"{path_join(path, key)}: required member of {shape.name} is missing")
        if shape.metadata.get("union") and len(value) != 1:
            errors.append(f"{where}: {shape.name} is a union: exactly one member must be set, found {len(value)}")
        for key, item in value.items():
            if key in shape.members:
                validate(item, shape.members[key], path_join(path, key), errors)
    elif kind == "list":
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list ({shape.name}), got {json_type(value)}")
            return
        check_count(value, shape, where, "length", errors)
        for i, item in enumerate(value):
            validate(item, shape.member, path_join(path, i), errors)
    elif kind == "map":
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object ({shape.name}), got {json_type(value)}")
            return
        check_count(value, shape, where, "entry count", errors)
        for key, item in value.items():
            validate(key, shape.key, f"{path_join(path, key)} (key)", errors)
            validate(item, shape.value, path_join(path, key), errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{where}: expected a string ({shape.name}), got {json_type(value)}")
            return
        if shape.enum and value not in shape.enum:
            errors.append(f"{where}: {json.dumps(value)} is not one of {shape.name}: {', '.join(shape.enum)}")
        check_count(value, shape, where, "length", errors)
    elif kind in NUMBER_TYPES:
        integral = kind in {"integer", "long"}
        if isinstance(value, bool) or not isinstance(value, int if integral else (int, float)):
            errors.append(f"{where}: expected {'an integer' if integral else 'a number'} ({shape.name}), "
                          f"got {json_type(value)}")
            return
        low, high = shape.metadata.get("min"), shape.metadata.get("max")
        if low is not None and value < low:
            errors.append(f"{where}: {value} is below the minimum {low}")
        if high is not None and value > high:
            errors.append(f"{where}: {value} is above the maximum {high}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{where}: expected a boolean ({shape.name}), got {json_type(value)}")
    else:
        # timestamp, blob, document: none is in RegisterTaskDefinition; refuse rather than pass unchecked.
        errors.append(f"{where}: shape type {kind} ({shape.name}) is not supported by this validator")


def errors_for(document, shape):
    errors = []
    validate(document, shape, "", errors)
    return errors


# (what the copy changes, path to the value, new value or DELETE, the error path, a word the error must contain)
DELETE = object()
SELF_TEST = [
    ("unknown top-level key", ["familyName"], "imgfleet-worker", "familyName", "unknown member"),
    ("unknown container key", ["containerDefinitions", 0, "essentail"], True,
     "containerDefinitions[0].essentail", "unknown member"),
    ("boolean as a string", ["containerDefinitions", 0, "essential"], "yes",
     "containerDefinitions[0].essential", "expected a boolean"),
    ("integer as a string", ["containerDefinitions", 0, "portMappings", 0, "containerPort"], "9090",
     "containerDefinitions[0].portMappings[0].containerPort", "expected an integer"),
    ("integer as a boolean", ["containerDefinitions", 0, "stopTimeout"], True,
     "containerDefinitions[0].stopTimeout", "expected an integer"),
    ("string as a number", ["cpu"], 1024, "cpu", "expected a string"),
    ("bad enum", ["networkMode"], "bogus", "networkMode", "is not one of"),
    ("bad enum in a list", ["requiresCompatibilities", 0], "LAMBDA", "requiresCompatibilities[0]", "is not one of"),
    ("missing required member", ["family"], DELETE, "family", "required member"),
    ("missing required nested member", ["containerDefinitions", 0, "logConfiguration", "logDriver"], DELETE,
     "containerDefinitions[0].logConfiguration.logDriver", "required member"),
    ("string below its minimum length", ["tags", 0, "key"], "", "tags[0].key", "below the minimum"),
    ("string above its maximum length", ["tags", 0, "key"], "k" * 129, "tags[0].key", "above the maximum"),
    ("list where an object goes", ["runtimePlatform"], [], "runtimePlatform", "expected an object"),
    ("map value of the wrong type", ["containerDefinitions", 0, "logConfiguration", "options", "mode"], 1,
     "containerDefinitions[0].logConfiguration.options.mode", "expected a string"),
]


def mutated(document, path, value):
    out = copy.deepcopy(document)
    parent = out
    for step in path[:-1]:
        parent = parent[step]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return out


def self_test(document, shape):
    problems = []
    base = errors_for(document, shape)
    if base:
        problems.append("the unmutated file is not accepted, so the mutations prove nothing:")
        problems.extend(f"  {e}" for e in base)
    for what, path, value, error_path, word in SELF_TEST:
        try:
            candidate = mutated(document, path, value)
        except (KeyError, IndexError, TypeError):
            problems.append(f"{what}: the file has nothing at {path}; SELF_TEST needs updating")
            continue
        errors = errors_for(candidate, shape)
        if not any(e.startswith(f"{error_path}: ") and word in e for e in errors):
            problems.append(f"{what}: expected an error '{error_path}: ...{word}...', got {errors or 'none'}")
    if problems:
        print(*problems, sep="\n")
        return 1
    print(f"{len(SELF_TEST)} mutated copies rejected, each at the expected path")
    return 0


def unique_keys(pairs):
    keys = [key for key, _ in pairs]
    duplicates = sorted({key for key in keys if keys.count(key) > 1})
    if duplicates:
        raise ValueError(f"duplicate keys {duplicates} (only the last one would be sent)")
    return dict(pairs)


def main(argv):
    test = argv[:1] == ["--self-test"]
    args = argv[1:] if test else argv
    if len(args) != 3:
        sys.exit(__doc__)
    service, operation, path = args
    model = botocore.session.get_session().get_service_model(service)
    shape = model.operation_model(operation).input_shape
    try:
        with open(path) as f:
            document = json.load(f, object_pairs_hook=unique_keys)
    except (OSError, ValueError) as e:
        sys.exit(f"{path}: {e}")
    if test:
        return self_test(document, shape)
    errors = errors_for(document, shape)
    if errors:
        print(*errors, sep="\n")
        return 1
    print(f"{path}: valid {service} {operation} input (botocore {botocore.__version__})")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
