"""MLOps: the data, evaluation and operations side of an ML system.

Each module is small and named for what it holds. Names are exported lazily:
``from tinyml_lab.mlops import stratified_sample`` imports only
:mod:`~tinyml_lab.mlops.sampling`, so a notebook that needs one tool does not pay
for the rest (scikit-learn, scipy, matplotlib are imported where they are used).

* :mod:`~tinyml_lab.mlops.sampling`: simple random, stratified, weighted,
  reservoir (Algorithms R and L) and importance sampling;
* :mod:`~tinyml_lab.mlops.labeling`: labeling functions, label matrix statistics,
  majority vote and a Dawid-Skene label model;
* :mod:`~tinyml_lab.mlops.active`: active learning by uncertainty, margin and entropy;
* :mod:`~tinyml_lab.mlops.imbalance`: class weights, over/under-sampling, SMOTE, focal loss;
* :mod:`~tinyml_lab.mlops.leakage`: train/test leakage detectors and their report;
* :mod:`~tinyml_lab.mlops.importance`: permutation feature importance;
* :mod:`~tinyml_lab.mlops.evaluation`: slice metrics, baselines, invariance and directional tests;
* :mod:`~tinyml_lab.mlops.calibration`: reliability diagrams, ECE/MCE, temperature scaling.
* :mod:`~tinyml_lab.mlops.drift`: drift detectors (KS, PSI, chi-square, MMD, BBSE label shift)
  and streaming change detectors (Page-Hinkley, ADWIN);
* :mod:`~tinyml_lab.mlops.monitoring`: the metrics store on SQLite (predictions, feature summaries,
  events), window queries, drift checks and alert rules; :mod:`~tinyml_lab.mlops.dashboard` draws it.
* :mod:`~tinyml_lab.mlops.accountant`: the Rényi-DP accountant of DP-SGD (sampled Gaussian
  mechanism, classic and improved conversions, noise for a target epsilon);
* :mod:`~tinyml_lab.mlops.federated`: federated averaging over simulated clients (IID and
  Dirichlet non-IID partitions, client-level DP, bytes per round);
* :mod:`~tinyml_lab.mlops.fairness`: demographic parity, equalized odds, equal opportunity, FairnessReport;
* :mod:`~tinyml_lab.mlops.model_card`: model cards measured by the engine (Markdown, HTML).
* the fleet: :mod:`~tinyml_lab.mlops.streams` (per-device drifting streams),
  :mod:`~tinyml_lab.mlops.signing` (Ed25519-signed update packages), :mod:`~tinyml_lab.mlops.rollout`
  (shadow, canary, A/B, Thompson sampling), :mod:`~tinyml_lab.mlops.continual` (retraining stages, full
  and sparse updates, their bytes and energy) and :mod:`~tinyml_lab.mlops.fleet` (the simulation).
* serving and infrastructure: :mod:`~tinyml_lab.mlops.queueing` (M/M/c queues, replicas for a latency
  target, a queue simulator), :mod:`~tinyml_lab.mlops.pipeline` (a cached DAG of steps keyed by
  fingerprints) and :mod:`~tinyml_lab.mlops.registry` (versions, stages, rollback, hash check on load).
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

# public name -> module (relative to this package) that defines it
_EXPORTS: dict[str, str] = {
    # privacy and responsible AI
    "RDPAccountant": "accountant", "PrivacySpent": "accountant", "dp_epsilon": "accountant",
    "compute_rdp": "accountant", "rdp_to_epsilon": "accountant", "noise_multiplier_for": "accountant",
    "FedAvg": "federated", "Client": "federated", "make_clients": "federated", "partition_iid": "federated",
    "partition_dirichlet": "federated", "label_skew": "federated",
    "FairnessReport": "fairness", "GroupCounts": "fairness", "confusion_by_group": "fairness",
    "demographic_parity_difference": "fairness", "demographic_parity_ratio": "fairness",
    "equalized_odds_difference": "fairness", "equal_opportunity_difference": "fairness",
    "per_class_gaps": "fairness", "ModelCard": "model_card", "build_model_card": "model_card",
    # sampling
    "simple_random_sample": "sampling", "stratified_sample": "sampling", "stratified_split": "sampling",
    "allocate_largest_remainder": "sampling", "weighted_sample": "sampling", "Reservoir": "sampling",
    "reservoir_sample": "sampling", "ImportanceEstimate": "sampling", "importance_sampling": "sampling",
    "effective_sample_size": "sampling",
    # labeling and active learning
    "ABSTAIN": "labeling", "LabelingFunction": "labeling", "labeling_function": "labeling",
    "apply_lfs": "labeling", "LFSummary": "labeling", "lf_summary": "labeling",
    "MajorityVoteLabelModel": "labeling", "LabelModel": "labeling", "suggest_groups": "labeling",
    "least_confidence": "active", "margin_score": "active", "entropy_score": "active",
    "query_indices": "active", "LearningCurve": "active", "active_learning_curve": "active",
    # class imbalance
    "class_weights": "imbalance", "sample_weights": "imbalance", "random_oversample": "imbalance",
    "random_undersample": "imbalance", "smote": "imbalance", "focal_loss": "imbalance",
    "focal_loss_grad": "imbalance",
    # leakage
    "LeakageFinding": "leakage", "LeakageReport": "leakage", "find_duplicates": "leakage",
    "check_duplicates": "leakage", "check_time_split": "leakage", "check_feature_times": "leakage",
    "check_scaler": "leakage", "check_target_leakage": "leakage", "detect_leakage": "leakage",
    "find_near_duplicates": "leakage", "single_feature_scores": "leakage",
    # feature importance
    "PermutationImportance": "importance", "permutation_importance": "importance",
    # offline evaluation
    "SliceReport": "evaluation", "SliceMetrics": "evaluation", "classification_metrics": "evaluation",
    "slice_metrics": "evaluation", "MajorityClassBaseline": "evaluation",
    "StratifiedBaseline": "evaluation", "BehaviourTestResult": "evaluation", "invariance_test": "evaluation",
    "directional_test": "evaluation",
    "softmax": "calibration", "nll": "calibration", "ReliabilityDiagram": "calibration",
    "reliability_diagram": "calibration", "expected_calibration_error": "calibration",
    "maximum_calibration_error": "calibration", "plot_reliability": "calibration",
    "TemperatureScaling": "calibration",
    # drift detection
    "DriftResult": "drift", "KSDrift": "drift", "PSIDrift": "drift", "ChiSquareDrift": "drift",
    "MMDDrift": "drift", "BBSEDrift": "drift", "PageHinkley": "drift", "ADWIN": "drift",
    # monitoring
    "MetricsStore": "monitoring", "AlertRule": "monitoring", "Alert": "monitoring",
    "PredictionWindow": "monitoring", "plot_dashboard": "dashboard",
    # the fleet: streams, signed updates, rollouts, continual learning
    "DriftSchedule": "streams", "DeviceStream": "streams", "DigitsSource": "streams",
    "VibrationSource": "streams", "make_streams": "streams",
    "SignatureError": "signing", "signing_key": "signing", "package_model": "signing",
    "package_patch": "signing", "verify_package": "signing", "ModelSlot": "signing",
    "Rollout": "rollout", "Direct": "rollout", "Shadow": "rollout", "Canary": "rollout", "ABTest": "rollout",
    "ThompsonBandit": "rollout", "make_rollout": "rollout", "two_proportion_z": "rollout",
    "ab_sample_size": "rollout",
    "ContinualLearner": "continual", "FullRetrain": "continual", "SparseUpdate": "continual",
    "DriftTriggered": "continual", "Scheduled": "continual", "training_cost": "continual",
    "radio_energy_mj": "continual",
    "Fleet": "fleet", "FleetConfig": "fleet", "FleetReport": "fleet", "plot_fleet": "fleet",
    # serving and infrastructure
    "erlang_c": "queueing", "QueueStats": "queueing", "mmc": "queueing", "replicas_for": "queueing",
    "poisson_arrivals": "queueing",
    "Pipeline": "pipeline", "Step": "pipeline", "Cache": "pipeline", "RunReport": "pipeline",
    "fingerprint": "pipeline",
    "ModelRegistry": "registry", "ModelVersion": "registry", "RegistryError": "registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
