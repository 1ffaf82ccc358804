"""Arrow schemas of the lake's tables (``docs/architecture.md``, "Tables"): the contract between ingest, store and query.

Only pyarrow here, so that label kernels can produce rows of the right types without
importing the store.
"""

from __future__ import annotations

import pyarrow as pa

TABLE_NAMES = ("utterances", "frames", "errors")

OPTIONAL = b"neurolake.optional"


def _optional(name: str, type_: pa.DataType) -> pa.Field:
    """A column a writer may leave out (it is then null): every view still has it."""
    return pa.field(name, type_, metadata={OPTIONAL: b"1"})


def is_optional(field: pa.Field) -> bool:
    return bool(field.metadata and field.metadata.get(OPTIONAL))


SCHEMAS: dict[str, pa.Schema] = {
    "utterances": pa.schema(
        [
            ("run_id", pa.string()),
            ("utterance_id", pa.string()),
            ("speaker_id", pa.string()),
            ("chapter_id", pa.string()),
            ("audio_uri", pa.string()),
            ("duration_s", pa.float64()),
            ("n_frames", pa.int64()),
            ("first_frame_id", pa.int64()),
            ("reference", pa.string()),
            ("hypothesis", pa.string()),
            ("wer", pa.float64()),
            ("cer", pa.float64()),
            ("n_word_errors", pa.int32()),
            _optional("n_reference_words", pa.int64()),
            _optional("phoneme_source", pa.string()),
        ]
    ),
    "frames": pa.schema(
        [
            ("run_id", pa.string()),
            ("frame_id", pa.int64()),
            ("utterance_id", pa.string()),
            ("frame_index", pa.int32()),
            ("start_s", pa.float64()),
            ("end_s", pa.float64()),
            ("ref_token", pa.string()),
            ("pred_token", pa.string()),
            ("pred_prob", pa.float32()),
            ("phoneme", pa.string()),
            ("word", pa.string()),
            ("word_index", pa.int32()),
            ("word_error", pa.bool_()),
            ("token_error", pa.bool_()),
            # segment labels (neurolake.labels.frames.label_utterance); null in runs made before them
            _optional("ref_segment", pa.string()),
            _optional("pred_segment", pa.string()),
            _optional("segment_error", pa.bool_()),
            _optional("confusion", pa.string()),
            # where the frame's phoneme came from: "alignments" (a forced aligner's TextGrid),
            # "sidecar" (the corpus's own timings) or "lexicon"; null in runs made before it
            _optional("phoneme_source", pa.string()),
        ]
    ),
    "errors": pa.schema(
        [
            ("run_id", pa.string()),
            ("utterance_id", pa.string()),
            ("audio_uri", pa.string()),
            ("stage", pa.string()),
            ("message", pa.string()),
        ]
    ),
}


#: Mining results, as ``neurolake mine`` writes them and the ``patterns`` view shows them.
PATTERNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("mining_id", pa.string()),
        ("pattern_id", pa.int64()),
        ("items", pa.list_(pa.string())),
        ("size", pa.int64()),
        ("support_target", pa.int64()),
        ("support_background", pa.int64()),
        ("score", pa.float64()),
        ("p_value", pa.float64()),
        ("relative_risk", pa.float64()),
        ("p_value_raw", pa.float64()),
        ("target", pa.string()),
        ("background", pa.string()),
    ]
)

# ------------------------------------------------------------------ views built from
# run manifests, derived data and group files (not Parquet tables of a run's parts)

RUNS = pa.schema(
    [
        ("run_id", pa.string()),
        ("status", pa.string()),
        ("model", pa.string()),
        ("corpus", pa.string()),
        ("n_utterances", pa.int64()),
        ("n_frames", pa.int64()),
        ("frames_committed", pa.int64()),
        ("parts_committed", pa.int64()),
        ("parts_total", pa.int64()),
        ("n_layers", pa.int64()),
        ("created_at", pa.string()),
    ]
)

LAYERS = pa.schema(
    [
        ("run_id", pa.string()),
        ("layer", pa.string()),
        ("units", pa.int64()),
        ("dtype", pa.string()),
        ("module", pa.string()),
    ]
)

NEURONS = pa.schema(
    [
        ("run_id", pa.string()),
        ("layer", pa.string()),
        ("unit", pa.int64()),
        ("mean", pa.float64()),
        ("std", pa.float64()),
        ("q50", pa.float64()),
        ("q90", pa.float64()),
        ("q99", pa.float64()),
        ("max", pa.float64()),
        ("active_rate", pa.float64()),
        ("n_frames", pa.int64()),
    ]
)

GROUPS = pa.schema(
    [
        ("name", pa.string()),
        ("run_id", pa.string()),
        ("predicate", pa.string()),
        ("n_frames", pa.int64()),
        ("created_at", pa.string()),
    ]
)

GROUP_FRAMES = pa.schema([("name", pa.string()), ("run_id", pa.string()), ("frame_id", pa.int64())])

#: Ablations, as ``neurolake ablate`` writes them: one row per decoded condition (the model as it
#: is, the units ablated, each random control) with its units and error rates.
ABLATIONS = pa.schema(
    [
        ("run_id", pa.string()),
        ("ablation_id", pa.string()),
        ("condition", pa.string()),
        ("draw", pa.int64()),
        ("units", pa.list_(pa.string())),
        ("mode", pa.string()),
        ("n_utterances", pa.int64()),
        ("cer", pa.float64()),
        ("wer", pa.float64()),
        ("cer_change", pa.float64()),
        # with a slice (neurolake ablate --finding): its predicate, and its frames in this decoding
        ("slice", pa.string()),
        ("slice_frames", pa.int64()),
    ]
)

#: Findings of ``neurolake scan``: a slice of frames where the model errs (``target`` and
#: ``background`` are SQL predicates for ``neurolake group create``) and a pattern of units that
#: singles it out, ranked by excess frames (``finding_id`` 1 is the first).
FINDINGS = pa.schema(
    [
        ("run_id", pa.string()),
        ("scan_id", pa.string()),
        ("finding_id", pa.int64()),
        ("slice_id", pa.int64()),
        ("kind", pa.string()),
        ("slice", pa.string()),
        ("target", pa.string()),
        ("background", pa.string()),
        ("items", pa.list_(pa.string())),
        ("size", pa.int64()),
        ("support_target", pa.int64()),
        ("n_target", pa.int64()),
        ("support_background", pa.int64()),
        ("n_background", pa.int64()),
        ("relative_risk", pa.float64()),
        ("effect", pa.float64()),
        ("excess_frames", pa.float64()),
        ("error_share", pa.float64()),
        ("p_value", pa.float64()),
        ("p_value_raw", pa.float64()),
    ]
)

#: The slices a scan mined, with their sizes (``n_*_mined``: after sampling) and test counts.
SLICES = pa.schema(
    [
        ("run_id", pa.string()),
        ("scan_id", pa.string()),
        ("slice_id", pa.int64()),
        ("kind", pa.string()),
        ("slice", pa.string()),
        ("target", pa.string()),
        ("background", pa.string()),
        ("n_target", pa.int64()),
        ("n_background", pa.int64()),
        ("n_target_mined", pa.int64()),
        ("n_background_mined", pa.int64()),
        ("n_tested", pa.int64()),
        ("n_findings", pa.int64()),
    ]
)

#: Neuron activation profiles (``neurolake naps``; GradNAPs with ``--relevance``): a group's mean
#: response (or relevance) per unit, and the
#: contrastive profile (less the mean over the groups compared); ``offset`` is the frame offset
#: from an event's centre for event-aligned profiles, 0 otherwise.
NAPS = pa.schema(
    [
        ("run_id", pa.string()),
        ("nap_id", pa.string()),
        ("measure", pa.string()),  # "activation" (NAPs) or "relevance" (GradNAPs)
        ("layer", pa.string()),
        ("group", pa.string()),
        ("offset", pa.int64()),
        ("unit", pa.int64()),
        ("mean", pa.float64()),
        ("contrastive", pa.float64()),
        ("n_frames", pa.int64()),
    ]
)

#: Clusters of NAPs (``neurolake naps --cluster K``): per layer, each group's cluster (scipy
#: ``fcluster`` of average linkage with optimal leaf ordering over its contrastive profile) and
#: its place among the dendrogram's leaves.
NAP_CLUSTERS = pa.schema(
    [
        ("run_id", pa.string()),
        ("clustering_id", pa.string()),
        ("nap_id", pa.string()),
        ("layer", pa.string()),
        ("metric", pa.string()),  # "cosine" or "euclidean"
        ("group", pa.string()),
        ("cluster", pa.int64()),
        ("leaf_order", pa.int64()),
    ]
)

#: Topographic map layouts (``neurolake topomap``): one row per unit kept and layout, its position
#: in the unit square (after the refinement, if any), with the layout's smoothness (mean over the
#: groups' maps, lower is smoother) and runtime; ``nap_id`` names the NAPs the units were laid
#: out by.
TOPOMAPS = pa.schema(
    [
        ("run_id", pa.string()),
        ("topomap_id", pa.string()),
        ("nap_id", pa.string()),
        ("layer", pa.string()),
        ("method", pa.string()),
        ("refine", pa.string()),  # "pso", or null for the layout as made
        ("unit", pa.int64()),
        ("x", pa.float64()),
        ("y", pa.float64()),
        ("smoothness", pa.float64()),
        ("seconds", pa.float64()),
    ]
)

#: Linear probes (``neurolake probe``): one row per layer and target, test metrics on a
#: speaker-disjoint split, the majority baseline and the control task's accuracy.
PROBES = pa.schema(
    [
        ("run_id", pa.string()),
        ("probe_id", pa.string()),
        ("target", pa.string()),
        ("level", pa.string()),
        ("layer", pa.string()),
        ("split", pa.string()),
        ("n_train", pa.int64()),
        ("n_test", pa.int64()),
        ("n_classes", pa.int64()),
        ("accuracy", pa.float64()),
        ("macro_f1", pa.float64()),
        ("baseline", pa.float64()),
        ("control_accuracy", pa.float64()),
        ("selectivity", pa.float64()),
        ("sampled", pa.bool_()),
    ]
)

#: Blocks (``neurolake blocks``): a finding's units connected across layers, one row per unit
#: (``seed``: one of the finding's own units; ``score``: attribution down or activation drop up),
#: with the block's activity over the slice and the ablation of the whole block.
BLOCKS = pa.schema(
    [
        ("run_id", pa.string()),
        ("block_id", pa.string()),
        ("finding", pa.string()),  # SCAN_ID/FINDING_ID
        ("slice", pa.string()),
        ("layer", pa.string()),
        ("unit", pa.int64()),
        ("seed", pa.bool_()),
        ("score", pa.float64()),
        ("layer_share", pa.float64()),
        ("active_share", pa.float64()),
        ("n_frames", pa.int64()),
        ("n_utterances", pa.int64()),
        ("ablation_id", pa.string()),
    ]
)

#: Phonetic agreement (``neurolake phonetics``): per layer, the cophenetic correlation between the
#: phoneme NAPs' dendrogram and articulatory distance, its permutation p-value, and the share of
#: the activations' variance phonemes and graphemes explain (eta squared).
PHONETICS = pa.schema(
    [
        ("run_id", pa.string()),
        ("phonetics_id", pa.string()),
        ("nap_id", pa.string()),
        ("layer", pa.string()),
        ("r", pa.float64()),
        ("p_value", pa.float64()),
        ("n_phones", pa.int64()),
        ("eta2_phoneme", pa.float64()),
        ("eta2_grapheme", pa.float64()),
    ]
)

#: Neuron rankings (``neurolake rank``): per layer, ranking method and class (NULL: over all
#: classes), every unit's rank (1 = carries the target most) and score; ``cluster`` groups
#: redundant units (correlated at ``|r| >=`` the ranking's threshold, average linkage), and
#: ``in_minimal`` marks the smallest top-k of an overall ranking that reaches the asked share of
#: the full probe's accuracy.
NEURON_RANKINGS = pa.schema(
    [
        ("run_id", pa.string()),
        ("ranking_id", pa.string()),
        ("target", pa.string()),
        ("level", pa.string()),
        ("layer", pa.string()),
        ("method", pa.string()),  # probe, classmean, mi
        ("class", pa.string()),
        ("unit", pa.int64()),
        ("rank", pa.int64()),
        ("score", pa.float64()),
        ("cluster", pa.int64()),
        ("in_minimal", pa.bool_()),
    ]
)

#: Accuracy of probes retrained on k units (``neurolake rank``): the top k of each overall ranking,
#: the bottom k of the probe ranking, and random k (the mean over seeded draws).
RANKING_CURVES = pa.schema(
    [
        ("run_id", pa.string()),
        ("ranking_id", pa.string()),
        ("target", pa.string()),
        ("layer", pa.string()),
        ("subset", pa.string()),  # probe, classmean, mi (their top k), bottom, random
        ("k", pa.int64()),
        ("accuracy", pa.float64()),
        ("share_of_full", pa.float64()),
    ]
)
