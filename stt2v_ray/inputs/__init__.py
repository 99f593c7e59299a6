"""Inputs: prompt manifests (YAML/JSON) and Parquet datasets, validated before any rendering."""
from stt2v_ray.inputs.errors import InputError, InputIssue
from stt2v_ray.inputs.requests import VideoRequest, check_id, derive_id
from stt2v_ray.inputs.source import InputSource, open_input

__all__ = ["InputError", "InputIssue", "InputSource", "VideoRequest", "check_id", "derive_id", "open_input"]
