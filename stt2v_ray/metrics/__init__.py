"""Quality metrics of rendered videos: MAWE, scene cuts, seam smoothness, appearance drift, toy prompt adherence.

One idea per module; `evaluate.evaluate_run` computes all of them for every video of a run.
"""
from stt2v_ray.metrics.adherence import motion_direction, prompt_adherence
from stt2v_ray.metrics.drift import appearance_drift, drift_curve
from stt2v_ray.metrics.evaluate import evaluate_run, evaluate_video, format_table
from stt2v_ray.metrics.flow import consecutive_flows
from stt2v_ray.metrics.mawe import mawe, mawe_paper
from stt2v_ray.metrics.scenecuts import detect_scene_cuts, scene_cuts
from stt2v_ray.metrics.seams import seam_stats, seam_transitions
from stt2v_ray.metrics.track import Track, classify_shape, track_object

__all__ = [
    "Track", "appearance_drift", "classify_shape", "consecutive_flows", "detect_scene_cuts", "drift_curve",
    "evaluate_run", "evaluate_video", "format_table", "mawe", "mawe_paper", "motion_direction",
    "prompt_adherence", "scene_cuts", "seam_stats", "seam_transitions", "track_object",
]
