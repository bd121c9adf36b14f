"""docs/cluster.md: its ``ray up`` config is valid for Ray's cluster launcher, its KubeRay cluster is well formed."""

import json
import re
from pathlib import Path

import yaml

DOC = Path(__file__).resolve().parents[1] / "docs" / "cluster.md"


def yaml_blocks() -> list[dict]:
    return [yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", DOC.read_text(), re.S)]


def test_the_ray_up_example_follows_rays_cluster_schema():
    import jsonschema
    import ray

    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    [config] = [b for b in yaml_blocks() if "cluster_name" in b]
    jsonschema.validate(config, schema)
    assert config["file_mounts"]["~/.ray/auth_token"] == "~/.ray/auth_token"  # every node gets the token
    assert any("make install" in c for c in config["setup_commands"])  # and imprint
    assert all("RAY_AUTH_MODE=token" in c for c in config["worker_start_ray_commands"] if "ray start" in c)


def test_the_kuberay_example_gives_every_node_the_data_and_the_token():
    [cluster] = [b for b in yaml_blocks() if b.get("kind") == "RayCluster"]
    assert cluster["apiVersion"] == "ray.io/v1"
    groups = [cluster["spec"]["headGroupSpec"], *cluster["spec"]["workerGroupSpecs"]]
    for group in groups:
        [container] = group["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env["RAY_AUTH_MODE"] == "token" and env["RAY_AUTH_TOKEN_PATH"].startswith("/etc/ray-token/")
        assert {m["mountPath"] for m in container["volumeMounts"]} == {"/shared", "/etc/ray-token"}
    gpu = [g for g in cluster["spec"]["workerGroupSpecs"] if g["groupName"] == "gpu"]
    assert gpu[0]["template"]["spec"]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
