"""Ray job entrypoint: the same arguments as `stt2v-ray render`.

    ray job submit --address http://HEAD:8265 --working-dir . \
        --runtime-env-json '{"excludes": [".git", ".venv", "outputs"]}' \
        -- python jobs/render.py manifests/demo.yaml --output s3://bucket/runs/1

Inside a job, `ray.init()` joins the job's cluster, so the Ray executor uses it.
"""
import os
import sys

# The working dir is uploaded as-is: make the package importable without installing it.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from stt2v_ray.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["render", *sys.argv[1:]]))
