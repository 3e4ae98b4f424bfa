"""deploy/ (issue 28, 5): every pod runs as a non-root user without privilege escalation,
with CPU and memory requests and limits and a size-limited shared-memory volume, from an
image built from a lock (no pip install at start), and a NetworkPolicy lets only the job's
own pods reach the TensorFlow gRPC port.

The manifests are read with tests/yaml_subset.py (PyYAML is not installed here, and the
project allows no skipped test): a reader of the subset they are written in, which
refuses anything outside it.
"""
import os
import re
import sys

import pytest

import yaml_subset

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEPLOY = os.path.join(REPO, "deploy")
MANIFESTS = ("tfjob.yaml", "shared_volume.yaml")


def documents(name):
    with open(os.path.join(DEPLOY, name)) as f:
        return yaml_subset.load_all(f.read())


def every_document():
    return [d for name in MANIFESTS for d in documents(name)]


def pod_specs():
    """(where, pod spec, pod labels) of every pod the manifests create."""
    found = []
    for document in every_document():
        if document["kind"] == "TFJob":
            for role, replica in document["spec"]["tfReplicaSpecs"].items():
                template = replica["template"]
                found.append((f"TFJob {role}", template["spec"],
                              template.get("metadata", {}).get("labels", {})))
        elif document["kind"] == "Pod":
            found.append((f"Pod {document['metadata']['name']}", document["spec"],
                          document["metadata"].get("labels", {})))
    return found


QUANTITY = re.compile(r"^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti)?$")
SCALE = {None: 1, "m": 1e-3, "Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40}


def quantity(value):
    number, unit = QUANTITY.match(str(value)).groups()
    return float(number) * SCALE[unit]


def test_the_subset_reader_refuses_what_it_does_not_read():
    with pytest.raises(yaml_subset.Unsupported):
        yaml_subset.load_all("a: |\n  text\n")
    with pytest.raises(yaml_subset.Unsupported):
        yaml_subset.load_all("a: &anchor 1\n")
    assert yaml_subset.load_all("a:\n- 1\n- b: [x, 'y']\n  c: true\n") == [
        {"a": [1, {"b": ["x", "y"], "c": True}]}]


def test_every_pod_runs_unprivileged_as_a_non_root_user():
    specs = pod_specs()
    assert {where for where, _, _ in specs} == {
        "TFJob Worker", "TFJob Evaluator", "Pod deeplab-shared-loader"}
    for where, spec, _ in specs:
        pod = spec["securityContext"]
        assert pod["runAsNonRoot"] is True and pod["runAsUser"] > 0, where
        assert pod["runAsGroup"] > 0 and pod["seccompProfile"]["type"] == "RuntimeDefault"
        assert spec["automountServiceAccountToken"] is False, where
        assert "hostNetwork" not in spec and "hostPID" not in spec, where
        for container in spec["containers"]:
            own = container["securityContext"]
            assert own["allowPrivilegeEscalation"] is False, where
            assert own.get("privileged") is not True, where
            assert own["capabilities"]["drop"] == ["ALL"], where
            assert "add" not in own["capabilities"], where
            assert own.get("runAsUser", 1) != 0, where


def test_every_container_has_cpu_and_memory_requests_and_limits():
    for where, spec, _ in pod_specs():
        for container in spec["containers"]:
            resources = container["resources"]
            for kind in ("cpu", "memory"):
                request = quantity(resources["requests"][kind])
                limit = quantity(resources["limits"][kind])
                assert 0 < request <= limit, (where, kind)
            # Memory volumes count against the limit: they must fit inside it.
            memory_volumes = sum(quantity(v["emptyDir"]["sizeLimit"])
                                 for v in spec.get("volumes", ())
                                 if v.get("emptyDir", {}).get("medium") == "Memory")
            assert memory_volumes < quantity(resources["limits"]["memory"]), where


def test_shared_memory_volumes_have_a_size_limit():
    memory = [(where, volume) for where, spec, _ in pod_specs()
              for volume in spec.get("volumes", ()) if "emptyDir" in volume]
    assert len(memory) == 2  # /dev/shm of the workers and of the evaluator
    for where, volume in memory:
        assert volume["emptyDir"]["medium"] == "Memory"
        assert quantity(volume["emptyDir"]["sizeLimit"]) > 0, where


def test_pods_run_the_image_built_from_the_lock_and_install_nothing():
    for where, spec, _ in pod_specs():
        for container in spec["containers"]:
            command = " ".join(container.get("command", ()) + container.get("args", []))
            assert "pip" not in command and "install" not in command, where
            image = container["image"]
            assert ":" in image and not image.endswith(":latest"), where
            if where.startswith("TFJob"):
                assert image.startswith("REGISTRY/deeplab-tf:"), where
                assert container["command"][:3] == ["python", "-m", "tools.train"]
    with open(os.path.join(DEPLOY, "Dockerfile")) as f:
        dockerfile = f.read()
    base = re.search(r"^FROM (\S+)", dockerfile, re.M).group(1)
    assert re.fullmatch(r"tensorflow/tensorflow:\d+\.\d+\.\d+-gpu(@sha256:[0-9a-f]{64})?", base)
    installs = re.findall(r"^RUN python -m pip install (.*)$", dockerfile, re.M)
    assert installs[0] == "--no-deps -r /tmp/requirements.lock"
    assert all("--no-deps" in line for line in installs)
    user = re.search(r"^USER (\d+):(\d+)$", dockerfile, re.M)
    runs_as = {spec["securityContext"]["runAsUser"] for where, spec, _ in pod_specs()}
    assert user and int(user.group(1)) > 0 and runs_as == {int(user.group(1))}


def test_the_lock_pins_every_runtime_dependency():
    sys.path.insert(0, DEPLOY)
    try:
        import make_lock
    finally:
        sys.path.remove(DEPLOY)
    with open(make_lock.LOCK) as f:
        text = f.read()
    pins = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*==[0-9][^\s=]*", p) for p in pins)
    names = {make_lock.canonical(p.split("==")[0]) for p in pins}
    required = make_lock.install_requires()
    assert "tensorflow" in required and len(required) >= 10
    assert {make_lock.canonical(n) for n in required} <= names
    # Not compared with this environment's versions: CI installs the newest releases, and
    # the lock is what the image is built from (deploy/make_lock.py --check reports drift).


def test_only_the_jobs_own_pods_reach_the_grpc_port():
    policies = [d for d in every_document() if d["kind"] == "NetworkPolicy"]
    assert len(policies) == 1
    policy = policies[0]["spec"]
    selector = policy["podSelector"]["matchLabels"]
    job_pods = [(where, labels) for where, _, labels in pod_specs()
                if where.startswith("TFJob")]
    for where, labels in job_pods:  # the policy covers every pod of the job ...
        assert selector.items() <= labels.items(), where
    assert policy["policyTypes"] == ["Ingress"]
    (rule,) = policy["ingress"]  # ... and admits only the job's pods, only on the port
    assert rule["from"] == [{"podSelector": {"matchLabels": selector}}]
    worker = next(spec for where, spec, _ in pod_specs() if where == "TFJob Worker")
    (port,) = worker["containers"][0]["ports"]
    assert rule["ports"] == [{"protocol": "TCP", "port": port["containerPort"]}]
    services = [d for d in every_document() if d["kind"] in ("Service", "Ingress")]
    assert services == []  # nothing publishes the port
