import pytest

from localcluster.podspec import ConfigError, container_env, expand, field_value, pod_phase

POD = {
    "metadata": {"name": "runner-abc", "namespace": "team-a", "uid": "u-1", "labels": {"app": "kubescribe"}},
    "spec": {"nodeName": "node-1", "serviceAccountName": "runner"},
    "status": {"hostIP": "127.0.0.1"},
}
OBJECTS = {
    ("Secret", "s3"): {"accessKey": "AK", "secretKey": "SK"},
    ("ConfigMap", "settings"): {"LOG_LEVEL": "debug", "MODEL": "tiny.en"},
}


def data(kind, name):
    return OBJECTS.get((kind, name))


def test_expand_replaces_known_names_keeps_unknown_and_unescapes_dollars():
    env = {"BUCKET": "audio", "KEY": "a.wav"}
    assert expand("s3://$(BUCKET)/$(KEY)", env) == "s3://audio/a.wav"
    assert expand("$(MISSING)/x", env) == "$(MISSING)/x"
    assert expand("$$(BUCKET) costs $$5", env) == "$(BUCKET) costs $5"


def test_field_refs_read_the_pod():
    assert field_value(POD, "metadata.name") == "runner-abc"
    assert field_value(POD, "metadata.namespace") == "team-a"
    assert field_value(POD, "metadata.labels['app']") == "kubescribe"
    assert field_value(POD, "spec.nodeName") == "node-1"
    with pytest.raises(ConfigError, match="unsupported fieldPath"):
        field_value(POD, "spec.containers")


def test_env_from_then_env_with_later_values_winning_and_expansion():
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "s3"}, "prefix": "S3_"}],
        "env": [
            {"name": "LOG_LEVEL", "value": "info"},
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": {"secretKeyRef": {"name": "s3", "key": "secretKey"}}},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "WHERE", "value": "$(POD) uses $(MODEL)"},
            {"name": "EMPTY"},
        ],
    }
    env = container_env(POD, container, data)
    assert env == {
        "LOG_LEVEL": "info",
        "MODEL": "tiny.en",
        "S3_accessKey": "AK",
        "S3_secretKey": "SK",
        "AWS_SECRET_ACCESS_KEY": "SK",
        "POD": "runner-abc",
        "WHERE": "runner-abc uses tiny.en",
        "EMPTY": "",
    }


def test_missing_objects_and_keys_are_config_errors_unless_optional():
    missing_secret = {"env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k"}}}]}
    with pytest.raises(ConfigError, match="couldn't find key k in Secret nope"):
        container_env(POD, missing_secret, data)
    missing_key = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "k"}}}]}
    with pytest.raises(ConfigError, match="couldn't find key k in ConfigMap settings"):
        container_env(POD, missing_key, data)
    with pytest.raises(ConfigError, match='secret "nope" not found'):
        container_env(POD, {"envFrom": [{"secretRef": {"name": "nope"}}]}, data)
    optional = {
        "envFrom": [{"secretRef": {"name": "nope", "optional": True}}],
        "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "nope", "key": "k", "optional": True}}}],
    }
    assert container_env(POD, optional, data) == {}


RUNNING = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
WAITING = {"waiting": {"reason": "ContainerCreating"}}


def done(code):
    return {"terminated": {"exitCode": code}}


@pytest.mark.parametrize(
    ("policy", "init", "main", "phase"),
    [
        ("Never", [WAITING], [WAITING], "Pending"),
        ("Never", [RUNNING], [WAITING], "Pending"),
        ("Never", [done(1)], [WAITING], "Failed"),
        ("OnFailure", [done(1)], [WAITING], "Pending"),
        ("Never", [done(0)], [RUNNING], "Running"),
        ("Never", [], [done(0), done(0)], "Succeeded"),
        ("Never", [], [done(0), done(3)], "Failed"),
        ("Never", [], [RUNNING, done(3)], "Running"),
        ("OnFailure", [], [done(0), done(0)], "Succeeded"),
        ("Always", [], [done(0), done(0)], "Running"),
        ("Always", [], [WAITING], "Pending"),
    ],
)
def test_pod_phase(policy, init, main, phase):
    assert pod_phase(policy, init, main) == phase
