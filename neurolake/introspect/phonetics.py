"""Does a layer's clustering of phonemes follow phonetic similarity?

For each layer, the phonemes' activation profiles (contrastive NAPs, :mod:`neurolake.introspect.naps`)
are clustered (average linkage with optimal leaf ordering over cosine distances, scipy), and the
dendrogram's cophenetic distances are correlated (Pearson) with the phonemes' articulatory
distances: Euclidean distances between their ``panphon`` feature vectors (24 features of
+1/0/-1; a diphthong or affricate is the mean of its segments). The p-value is a permutation
test: the phoneme labels of the articulatory distances are shuffled ``permutations`` times, and
p is the share of shuffles correlating at least as well (with the unshuffled one counted).

A layer whose r is high and p small groups sounds the way phonetics does, as the seeds' analysis
found for the middle layers of speech models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
from scipy.cluster.hierarchy import cophenet
from scipy.spatial.distance import pdist, squareform

from neurolake.errors import SpecError
from neurolake.introspect.clustering import profile_linkage

__all__ = ["ARPABET_IPA", "Agreement", "agreement", "articulatory_vectors", "phonetic_layers", "render_dendrogram"]

#: ARPAbet (no stress) to IPA, for panphon's feature table.
ARPABET_IPA = {
    "AA": "ɑ", "AE": "æ", "AH": "ʌ", "AO": "ɔ", "AW": "aʊ", "AY": "aɪ", "B": "b", "CH": "tʃ", "D": "d",
    "DH": "ð", "EH": "ɛ", "ER": "ɜ˞", "EY": "eɪ", "F": "f", "G": "ɡ", "HH": "h", "IH": "ɪ", "IY": "i",
    "JH": "dʒ", "K": "k", "L": "l", "M": "m", "N": "n", "NG": "ŋ", "OW": "oʊ", "OY": "ɔɪ", "P": "p",
    "R": "ɹ", "S": "s", "SH": "ʃ", "T": "t", "TH": "θ", "UH": "ʊ", "UW": "u", "V": "v", "W": "w",
    "Y": "j", "Z": "z", "ZH": "ʒ",
}  # fmt: skip


def articulatory_vectors(phones: Sequence[str]) -> np.ndarray:
    """``[phones, 24]`` panphon feature vectors of ARPAbet phones (segments averaged)."""
    import panphon

    table = panphon.FeatureTable()
    out = []
    for phone in phones:
        if phone not in ARPABET_IPA:
            raise SpecError(f"{phone!r} is not an ARPAbet phone (without stress)")
        segments = table.word_to_vector_list(ARPABET_IPA[phone], numeric=True)
        if not segments:
            raise SpecError(f"panphon has no features for {phone!r} ({ARPABET_IPA[phone]!r})")
        out.append(np.mean(np.asarray(segments, dtype=np.float64), axis=0))
    return np.stack(out)


@dataclass(frozen=True)
class Agreement:
    """Cophenetic correlation of a profile dendrogram with articulatory distances."""

    r: float
    p_value: float
    n_phones: int
    linkage: np.ndarray  # scipy linkage matrix (optimal leaf order)


def agreement(
    profiles: np.ndarray, phones: Sequence[str], *, metric: str = "cosine", permutations: int = 999, seed: int = 0
) -> Agreement:
    """How well the dendrogram of ``profiles`` ``[phones, units]`` follows phonetic similarity."""
    if len(phones) < 4 or profiles.shape[0] != len(phones):
        raise SpecError(f"need profiles of at least 4 phones, one row each; got {profiles.shape[0]} for {len(phones)}")
    tree = profile_linkage(profiles, metric)
    coph = cophenet(tree)
    square = squareform(pdist(articulatory_vectors(phones), "euclidean"))
    upper = np.triu_indices(len(phones), k=1)
    r = float(np.corrcoef(coph, square[upper])[0, 1])
    rng = np.random.default_rng(seed)
    hits = 0
    for _ in range(permutations):
        order = rng.permutation(len(phones))
        hits += float(np.corrcoef(coph, square[np.ix_(order, order)][upper])[0, 1]) >= r
    return Agreement(r, (1 + hits) / (1 + permutations), len(phones), tree)


def render_dendrogram(tree: np.ndarray, labels: Sequence[str], path: str | Path, title: str) -> Path:
    """The dendrogram as an image (PNG or SVG by the file's suffix)."""
    from scipy.cluster.hierarchy import dendrogram

    from neurolake.introspect.figures import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(max(6, 0.28 * len(labels)), 3.6))
    dendrogram(tree, labels=list(labels), ax=ax, color_threshold=0, above_threshold_color="#444444")
    ax.set_title(title)
    ax.set_ylabel("cosine distance")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


def phonetic_layers(
    lake,
    run_id: str,
    *,
    layers: Sequence[str] | None = None,
    min_frames: int = 20,
    permutations: int = 999,
    out_dir: str | Path | None = None,
    image_format: str = "png",
    progress: bool | None = None,
) -> list[dict]:
    """Per layer: r, p and the phones used (those with at least ``min_frames`` frames), and how
    much of the activations' variance phonemes and graphemes (the reference letters,
    ``ref_segment``) each explain (eta squared, :func:`~neurolake.introspect.naps.separation`);
    with ``out_dir``, one dendrogram per layer and the per-layer curve as ``image_format`` (png or
    svg) files there."""
    if image_format not in ("png", "svg"):
        raise SpecError(f"image format must be png or svg, got {image_format!r}")
    from neurolake.introspect.naps import naps, separation
    from neurolake.query.fingerprint import commits_fingerprint
    from neurolake.schemas import PHONETICS
    from neurolake.store.tables import decode_parquet, encode_parquet

    result = naps(lake, run_id, by="phoneme", layers=layers, progress=progress)
    keep = [g for g, phone in enumerate(result.groups) if phone in ARPABET_IPA and result.counts[g, 0] >= min_frames]
    phones = [result.groups[g] for g in keep]
    if len(phones) < 4:
        raise SpecError(
            f"run {run_id!r} has {len(phones)} ARPAbet phonemes with >= {min_frames} frames; need at least 4"
        )
    run = lake.run(run_id)
    spec = {
        "run_id": run_id,
        "nap_id": result.nap_id,
        "layers": list(result.contrastive),
        "min_frames": min_frames,
        "permutations": permutations,
        "commits": commits_fingerprint(run),
    }
    derived = run.derived("phonetics", spec)
    stored: dict[str, dict] = {}
    if derived.complete:
        stored = {r["layer"]: r for r in decode_parquet(derived.read_bytes("phonetics.parquet")).to_pylist()}
    else:
        by_phoneme = separation(lake, run_id, "phoneme", list(result.contrastive))
        by_grapheme = separation(lake, run_id, "ref_segment", list(result.contrastive))
    rows = []
    for layer, contrast in result.contrastive.items():
        found = agreement(contrast[keep, 0], phones, permutations=permutations if not stored else 0)
        row = {
            "layer": layer,
            "r": found.r,
            "p_value": stored[layer]["p_value"] if stored else found.p_value,
            "n_phones": found.n_phones,
            "eta2_phoneme": stored[layer]["eta2_phoneme"] if stored else by_phoneme[layer],
            "eta2_grapheme": stored[layer]["eta2_grapheme"] if stored else by_grapheme[layer],
        }
        if out_dir is not None:
            Path(out_dir).mkdir(parents=True, exist_ok=True)
            row["figure"] = str(
                render_dendrogram(
                    found.linkage,
                    phones,
                    Path(out_dir) / f"dendrogram-{layer}.{image_format}",
                    f"{run_id} {layer}: r = {found.r:.2f}",
                )
            )
        rows.append(row)
    if not stored:
        table = pa.Table.from_pylist(
            [
                {"run_id": run_id, "phonetics_id": derived.spec_hash, "nap_id": result.nap_id, **r}
                for r in ({k: v for k, v in row.items() if k != "figure"} for row in rows)
            ],
            schema=PHONETICS,
        )
        derived.write_bytes(encode_parquet(table), "phonetics.parquet")
        derived.commit()
    if out_dir is not None:
        _render_curve(rows, Path(out_dir) / f"phonetic-agreement.{image_format}", run_id)
    return rows


def _render_curve(rows: Sequence[dict], path: Path, run_id: str) -> Path:
    from neurolake.introspect.figures import pyplot

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6, 3.2))
    x = np.arange(len(rows))
    ax.plot(x, [r["r"] for r in rows], marker="o", color="#1f5fa8")
    for i, r in enumerate(rows):
        if r["p_value"] < 0.05:
            ax.annotate("*", (i, r["r"]), textcoords="offset points", xytext=(0, 6), ha="center")
    ax.set_xticks(x, [r["layer"] for r in rows], rotation=30, ha="right")
    ax.set_ylabel("cophenetic r with articulatory distance")
    ax.set_title(f"{run_id}: phoneme NAP clustering vs phonetics (* p < 0.05)")
    ax.axhline(0, color="#999999", lw=0.8)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path
