"""cluster/*.yaml: valid KubeRay v1.7 resources (strict offline validation against the CRDs),
and consistent with stt2v-ray's own contracts: the RayJob runs jobs/render.py with valid
run settings, every pool is pinned to a worker group that can hold it, credentials come
from one Secret everywhere.
"""
from __future__ import annotations

import copy
import json
import shlex
import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from stt2v_ray.config import RunSettings, deep_merge, parse_override
from stt2v_ray.presets import get_preset

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
VALIDATOR = SHARED / "kuberay" / "validate_crs.py"
CLUSTER = REPO / "cluster"
YAML_FILES = sorted(CLUSTER.glob("*.yaml"))
POOLS = ("base", "enhance", "interpolate", "write")

needs_shared = pytest.mark.skipif(
    not SHARED.is_dir(), reason=f"{SHARED} is absent: the KubeRay CRDs and validate_crs.py live in ../shared beside the repo"
)


def load_docs(path: Path) -> list[dict[str, Any]]:
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def is_ray(doc: dict[str, Any]) -> bool:
    return str(doc.get("apiVersion", "")).startswith("ray.io/")


RAY_DOCS = [(path, doc) for path in YAML_FILES for doc in load_docs(path) if is_ray(doc)]
# Everything else (the S3 Secret template) is core Kubernetes: the validator has no CRD for it.
OTHER_DOCS = [(path, doc) for path in YAML_FILES for doc in load_docs(path) if not is_ray(doc)]


def only(kind: str) -> dict[str, Any]:
    found = [doc for _, doc in RAY_DOCS if doc["kind"] == kind]
    assert len(found) == 1, f"expected one {kind} in cluster/, found {len(found)}"
    return found[0]


def cluster_specs() -> dict[str, dict[str, Any]]:
    return {"RayCluster": only("RayCluster")["spec"], "RayJob": only("RayJob")["spec"]["rayClusterSpec"]}


def run_validator(*files: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(VALIDATOR), *map(str, files)], capture_output=True, text=True, timeout=60)


def entrypoint_argv() -> list[str]:
    return shlex.split(only("RayJob")["spec"]["entrypoint"])


def set_values(argv: list[str]) -> list[str]:
    return [argv[i + 1] for i, arg in enumerate(argv) if arg == "--set"]


def resolve(overrides: list[str]) -> RunSettings:
    """As `stt2v_ray.run.resolve_settings` does: the preset's defaults under the overrides."""
    merged: dict[str, Any] = {}
    for text in overrides:
        merged = deep_merge(merged, parse_override(text))
    named = RunSettings.model_validate(merged)
    return RunSettings.model_validate(deep_merge(get_preset(named.preset).defaults, merged))


def custom_resources(group: dict[str, Any]) -> dict[str, float]:
    """Parse rayStartParams.resources the way the Ray autoscaler does: drop the outer quotes and the backslashes."""
    raw = (group.get("rayStartParams") or {}).get("resources")
    if raw is None:
        return {}
    where = group.get("groupName", "head")
    assert raw[0] == raw[-1] == '"', f"{where}: resources must be the shell-quoted '\"{{...}}\"' form, got {raw!r}"
    return json.loads(raw[1:-1].replace("\\", ""))


def quantity(text: str | int) -> float:
    text = str(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


def containers() -> list[tuple[str, dict[str, Any]]]:
    """(where, container) for every container of head, workers and the RayJob submitter."""
    out = []
    for kind, spec in cluster_specs().items():
        out += [(f"{kind} head", c) for c in spec["headGroupSpec"]["template"]["spec"]["containers"]]
        for group in spec["workerGroupSpecs"]:
            out += [(f"{kind} {group['groupName']}", c) for c in group["template"]["spec"]["containers"]]
    submitter = only("RayJob")["spec"]["submitterPodTemplate"]["spec"]["containers"]
    return out + [("RayJob submitter", c) for c in submitter]


def gpus(container: dict[str, Any]) -> int:
    return int(container["resources"]["limits"].get("nvidia.com/gpu", 0))


# ------------------------------------------------------------------ CRD validation


def test_cluster_folder_holds_a_raycluster_a_rayjob_and_only_a_secret_besides():
    assert sorted(doc["kind"] for _, doc in RAY_DOCS) == ["RayCluster", "RayJob"]
    assert [(doc["apiVersion"], doc["kind"]) for _, doc in OTHER_DOCS] in ([], [("v1", "Secret")])


@needs_shared
def test_validator_accepts_every_ray_document():
    result = run_validator(*YAML_FILES)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    for path, doc in RAY_DOCS:
        assert f"OK   {path}: {doc['kind']}/{doc['metadata']['name']}" in lines
    # Non-ray.io documents are skipped on purpose: they are not KubeRay resources.
    skipped = sorted(line for line in lines if line.startswith("SKIP"))
    assert skipped == sorted(f"SKIP {p}: {d['kind']}/{d['metadata']['name']} (no CRD loaded)" for p, d in OTHER_DOCS)


@needs_shared
def test_validator_catches_a_typo_in_a_worker_group(tmp_path):
    bad_files = {}
    for kind, where in (("RayCluster", "spec"), ("RayJob", "spec/rayClusterSpec")):
        doc = copy.deepcopy(only(kind))
        spec = doc["spec"] if kind == "RayCluster" else doc["spec"]["rayClusterSpec"]
        spec["workerGroupSpecs"][1]["maxReplica"] = 8  # typo of maxReplicas
        bad_files[kind] = (tmp_path / f"{kind}.yaml", doc["metadata"]["name"], where)
        bad_files[kind][0].write_text(yaml.safe_dump(doc))
    result = run_validator(*(path for path, _, _ in bad_files.values()))  # one run: loading the CRDs is slow
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    for kind, (path, name, where) in bad_files.items():
        failed_at = lines.index(f"FAIL {path}: {kind}/{name}")
        assert lines[failed_at + 1] == (
            f"     - {where}/workerGroupSpecs/1: Additional properties are not allowed ('maxReplica' was unexpected)"
        )


# ------------------------------------------------------------------ the RayJob's entrypoint


def test_entrypoint_runs_the_render_job_on_ray_into_s3():
    argv = entrypoint_argv()
    assert argv[:2] == ["python", "jobs/render.py"]
    assert (REPO / "jobs" / "render.py").is_file()
    assert argv[2].startswith("s3://")
    assert argv[argv.index("--output") + 1].startswith("s3://")
    assert "executor=ray" in set_values(argv)


def test_entrypoint_settings_validate_against_run_settings():
    settings = resolve(set_values(entrypoint_argv()))
    assert settings.executor == "ray"
    for name in POOLS:
        assert getattr(settings.ray, name).resources, f"pool {name} is not pinned to a worker group"
    assert settings.ray.enhance.actors % settings.ray.enhance_shards == 0


def test_a_typo_in_an_entrypoint_setting_is_caught():
    overrides = set_values(entrypoint_argv()) + ["ray.base.num_gpu=1"]
    with pytest.raises(ValidationError, match=r"ray\.base\.num_gpu\n  Extra inputs are not permitted"):
        resolve(overrides)


def test_runtime_env_ships_the_repository_as_working_dir():
    env = yaml.safe_load(only("RayJob")["spec"]["runtimeEnvYAML"])
    # jobs/render.py is a path relative to the working_dir, not an installed module.
    assert env["working_dir"].endswith(".zip")
    assert any(str(req).startswith("stt2v-ray") for req in env["pip"])


# ------------------------------------------------------------------ groups <-> pools


def test_head_does_no_rendering_work():
    for kind, spec in cluster_specs().items():
        params = spec["headGroupSpec"]["rayStartParams"]
        assert (params["num-cpus"], params["num-gpus"]) == ("0", "0"), kind
        assert custom_resources(spec["headGroupSpec"]) == {}, kind
        assert all(gpus(c) == 0 for c in spec["headGroupSpec"]["template"]["spec"]["containers"]), kind


def test_every_gpu_group_is_pinned_by_a_pool_and_every_pin_exists():
    settings = resolve(set_values(entrypoint_argv()))
    wanted = {r for name in POOLS for r in getattr(settings.ray, name).resources}
    for kind, spec in cluster_specs().items():
        offered = set()
        for group in spec["workerGroupSpecs"]:
            markers = custom_resources(group)
            if any(gpus(c) for c in group["template"]["spec"]["containers"]):
                assert markers, f"{kind} {group['groupName']}: GPU group without a custom resource"
            assert set(markers) <= wanted, f"{kind} {group['groupName']}: {set(markers) - wanted} asked by no pool"
            offered |= set(markers)
        assert wanted <= offered, f"{kind}: pools ask for {wanted - offered}, which no group offers"


def test_pool_sizes_fit_their_worker_groups():
    ray = resolve(set_values(entrypoint_argv())).ray
    for kind, spec in cluster_specs().items():
        demand: dict[str, dict[str, float]] = defaultdict(lambda: defaultdict(float))
        groups = {g["groupName"]: g for g in spec["workerGroupSpecs"]}
        for name in POOLS:
            pool = getattr(ray, name)
            homes = [g for g in groups.values() if set(pool.resources) & set(custom_resources(g))]
            assert len(homes) == 1, f"{kind}: pool {name} must be pinned to exactly one group"
            group, markers = homes[0], custom_resources(homes[0])
            (container,) = group["template"]["spec"]["containers"]
            pod_gpus, pod_cpus = gpus(container), quantity(container["resources"]["limits"]["cpu"])
            per_pod = min(markers[r] // need for r, need in pool.resources.items())
            where = f"{kind} pool {name} on group {group['groupName']}"
            assert per_pod >= 1, where
            assert (pool.num_gpus > 0) == (pod_gpus > 0), f"{where}: GPU pools belong on GPU groups only"
            assert per_pod * pool.num_gpus <= pod_gpus and per_pod * pool.num_cpus <= pod_cpus, where
            assert pool.actors <= per_pod * group["maxReplicas"], f"{where}: {pool.actors} actors cannot fit"
            for r, need in pool.resources.items():
                demand[group["groupName"]][r] += pool.actors * need
            if name == "enhance":  # one gang holds enhance_shards actors at once
                assert ray.enhance_shards <= per_pod * group["maxReplicas"], where
        for group_name, needs in demand.items():
            for r, total in needs.items():
                offered = groups[group_name]["maxReplicas"] * custom_resources(groups[group_name])[r]
                assert total <= offered, f"{kind} group {group_name}: pools need {total} {r}, at most {offered}"


def test_rayjob_embeds_the_same_cluster_as_the_raycluster():
    specs = cluster_specs()
    assert specs["RayJob"] == specs["RayCluster"]
    assert specs["RayCluster"]["enableInTreeAutoscaling"] is True


# ------------------------------------------------------------------ pods


def test_images_match_the_ray_version():
    version = cluster_specs()["RayCluster"]["rayVersion"]
    for where, container in containers():
        repo, tag = container["image"].split(":")
        assert repo == "rayproject/ray" and tag.split("-")[0] == version, f"{where}: {container['image']}"


def test_every_container_requests_and_limits_cpu_memory_and_gpu():
    for where, container in containers():
        res = container["resources"]
        for key in ("cpu", "memory"):
            assert key in res["requests"] and key in res["limits"], f"{where}: {key}"
        assert res["requests"].get("nvidia.com/gpu") == res["limits"].get("nvidia.com/gpu"), where
    for kind, spec in cluster_specs().items():
        assert set(spec["autoscalerOptions"]["resources"]) == {"requests", "limits"}, kind
        for group in spec["workerGroupSpecs"]:
            if any(gpus(c) for c in group["template"]["spec"]["containers"]):
                tolerations = group["template"]["spec"]["tolerations"]
                assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations


def test_s3_credentials_come_from_one_secret_everywhere():
    seen = {}
    for where, container in containers():
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "secretKeyRef" in e.get("valueFrom", {})}
        seen[where] = refs
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            assert name in refs and not refs[name].get("optional", False), f"{where}: {name}"
    first = next(iter(seen.values()))
    assert all(refs == first for refs in seen.values()), "containers read different secrets or keys"
    (secret_name,) = {ref["name"] for ref in first.values()}
    secrets = [doc for _, doc in OTHER_DOCS if doc["kind"] == "Secret"]
    if secrets:  # the optional template must agree with what the pods read
        (secret,) = secrets
        assert secret["metadata"]["name"] == secret_name
        required = {ref["key"] for ref in first.values() if not ref.get("optional", False)}
        assert required <= set(secret["stringData"]), required - set(secret["stringData"])
        assert set(secret["stringData"]) <= {ref["key"] for ref in first.values()}


def test_rayjob_cleans_up_and_bounds_its_run_time():
    spec = only("RayJob")["spec"]
    assert spec["shutdownAfterJobFinishes"] is True
    assert spec["ttlSecondsAfterFinished"] > 0
    assert spec["activeDeadlineSeconds"] > 0
    assert spec["submitterConfig"]["backoffLimit"] >= 1
