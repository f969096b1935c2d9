"""A synthetic MOSI-like dataset whose ablations have answers known in advance.

The real CMU-MOSI file cannot be shipped, so the default data imitates it where the
study's questions depend on it: MOSI's split sizes (1284 / 229 / 686), 50 aligned steps,
text 300-d, audio 74-d, vision 35-d, zero-padding at the FRONT, labels in [-3, 3] that
are means of a few annotators' integer ratings, a few +-inf audio cells, and features of
very different scales. Generative process, per clip:

1. Length ``L`` in [8, 50]; steps ``50 - L .. 49`` hold content, the rest are zeros.
2. Words: drawn from a fixed 2000-word lexicon (Zipf frequencies). 25% of word types carry
   a valence (+-0.5..1). Word ORDER matters: "not" (10% of steps) flips the valence of
   the word right after it, and the valence before a clip's last "but" (3% of steps)
   counts only a quarter ("good acting, but a dull plot"); a bag of words cannot read
   either. Embeddings are GloVe-like: a random 300-d vector (std 0.35 per dim) plus a
   component along one "sentiment" direction proportional to the valence.
3. Latent sentiment ``s = 0.85 t + 0.5 u``: ``t`` is the text's order-aware valence sum
   over sqrt(L), scaled to about unit variance; ``u ~ N(0, 1)`` is a non-verbal affect
   that only audio and vision see.
4. Audio and vision per content step: standard-normal noise plus a clip-level signal along
   one fixed direction: ``0.5 u + 0.1 t + e`` for audio, ``0.4 u + 0.1 t + e'`` for vision,
   with ``e, e' ~ N(0, 1)`` per clip (a speaker's own manner, which no model can remove),
   so both are weak and partly redundant (they share ``u``). Each feature dim is then
   scaled by a factor drawn log-uniformly (audio 0.05..300, vision 0.5..50: COVAREP's pitch
   in Hz beside its small glottal parameters) and shifted, so LayerNorm matters.
   Three audio dims hold +-inf at about 0.2% of content steps, as COVAREP's do.
5. 3-5 annotators each rate ``clip(round(1.4 s + N(0, 0.8)), -3, 3)``; the label is
   their mean, so labels are multiples of 1/3, 1/4 or 1/5 and some are exactly 0.

Answers this is built to give: text alone beats audio alone and vision alone, and
dropping text hurts far more than dropping audio or vision (both asserted by
tests/test_known_answers.py); all three should beat text alone (``u`` is seen only by
audio and vision), and an order-aware encoder has something (negation, "but") that a
mean over steps cannot see; the study's tables show how far each holds. The labels' noise leaves room above the
baseline (``s`` itself correlates with the labels at about 0.95).
The lexicon and direction vectors depend on ``seed`` only, so every ``scale`` draws
from the same language.
"""

from __future__ import annotations

import numpy as np

from msa_ablate.data import MODALITIES, SPLITS, MSAData, from_arrays
from msa_ablate.errors import ConfigError

VERSION = 1  # of what the generator makes from (seed, scale): part of every run's identity
SIZES = {"train": 1284, "valid": 229, "test": 686}
STEPS = 50
DIMS = {"text": 300, "audio": 74, "vision": 35}
VOCAB = 2000
NOT, BUT = 0, 1  # word ids of the negator and the contrastive conjunction
MIN_LEN = 8
SENTIMENT_SHARE, NOT_RATE, BUT_RATE = 0.25, 0.1, 0.03
BEFORE_BUT = 0.25  # weight of the valence that precedes the last "but"
TEXT_WEIGHT, AFFECT_WEIGHT = 0.85, 0.5
NONVERBAL = {"audio": (0.5, 0.1), "vision": (0.4, 0.1)}  # weights of (u, t)
NONVERBAL_NOISE = 1.0  # clip-level nuisance in the non-verbal signal (speaker idiosyncrasy)
RATER_NOISE = 0.8
SCALE_RANGE = {"audio": (0.05, 300.0), "vision": (0.5, 50.0)}
INF_DIMS, INF_RATE = (0, 1, 2), 0.002
# Unaligned (data.unaligned=true): frames per word, and the most frames a clip keeps (MulT's MOSI files' steps)
FRAMES_PER_WORD = {"audio": (4, 12), "vision": (6, 15)}
FRAMES = {"audio": 375, "vision": 500}
LAYOUTS = ("handout", "mult", "mmsa")
BERT_PADDING = 0.05  # the mmsa layout's text features at padding tokens: BERT's are not zero there


def _unit(rng: np.random.Generator, dim: int) -> np.ndarray:
    v = rng.standard_normal(dim)
    return v / np.linalg.norm(v)


def _language(rng: np.random.Generator) -> dict:
    """Lexicon, embeddings and the per-modality directions, scales and offsets."""
    valence = np.zeros(VOCAB)
    sentiment_words = rng.random(VOCAB) < SENTIMENT_SHARE
    valence[sentiment_words] = rng.choice([-1, 1], sentiment_words.sum()) * rng.uniform(0.5, 1.0, sentiment_words.sum())
    valence[[NOT, BUT]] = 0.0
    freq = 1.0 / np.arange(1, VOCAB + 1) ** 0.8
    freq[[NOT, BUT]] = 0.0  # inserted explicitly below
    embedding = rng.normal(0, 0.35, (VOCAB, DIMS["text"]))
    embedding += 0.8 * valence[:, None] * _unit(rng, DIMS["text"]) * np.sqrt(DIMS["text"]) * 0.35
    lang = {"valence": valence, "freq": freq / freq.sum(), "embedding": embedding.astype(np.float32)}
    for m, (lo, hi) in SCALE_RANGE.items():
        scale = np.exp(rng.uniform(np.log(lo), np.log(hi), DIMS[m]))
        lang[m] = {"direction": _unit(rng, DIMS[m]) * np.sqrt(DIMS[m]) * 0.5,
                   "scale": scale, "offset": rng.normal(0, 1, DIMS[m]) * scale}
    return lang


def _text(rng: np.random.Generator, lang: dict, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = len(lengths)
    words = rng.choice(VOCAB, size=(n, STEPS), p=lang["freq"])
    draw = rng.random((n, STEPS))
    words[draw < NOT_RATE] = NOT
    words[(draw >= NOT_RATE) & (draw < NOT_RATE + BUT_RATE)] = BUT
    content = np.arange(STEPS)[None, :] >= (STEPS - lengths)[:, None]
    negated = np.zeros_like(content)
    negated[:, 1:] = (words[:, :-1] == NOT) & content[:, :-1]
    # Steps before the clip's last "but" count BEFORE_BUT ("good acting, but a dull plot").
    is_but = (words == BUT) & content
    after_last_but = np.flip(np.cumsum(np.flip(is_but, 1), 1), 1) == 0
    weight = np.where(after_last_but, 1.0, BEFORE_BUT) * np.where(negated, -1.0, 1.0) * content
    signed = lang["valence"][words] * weight
    # Scale t to about unit variance across clips.
    t = signed.sum(1) / np.sqrt(lengths) / np.sqrt(SENTIMENT_SHARE * 7 / 12 * (1 - NOT_RATE - BUT_RATE))
    text = lang["embedding"][words] * content[..., None]
    return text, t


def _nonverbal(rng: np.random.Generator, lang: dict, m: str, signal: np.ndarray, content: np.ndarray) -> np.ndarray:
    p = lang[m]
    x = rng.standard_normal((*content.shape, DIMS[m])) + signal[:, None, None] * p["direction"]
    x = (x * p["scale"] + p["offset"]) * content[..., None]
    return x.astype(np.float32)


def _frames(rng: np.random.Generator, m: str, content: np.ndarray) -> np.ndarray:
    """(n, FRAMES[m]) True at a clip's frames (front-padded), when modalities are not aligned: each
    word lasts its own number of frames of ``m``, as audio and video run at their own rates."""
    per_word = rng.integers(*FRAMES_PER_WORD[m], size=content.shape) * content
    count = np.minimum(per_word.sum(1), FRAMES[m])
    return np.arange(FRAMES[m])[None, :] >= (FRAMES[m] - count)[:, None]


def _split(rng: np.random.Generator, lang: dict, n: int, unaligned: bool,
           name: str) -> tuple[dict[str, np.ndarray], dict]:
    """One split's arrays in the handout's layout, and the latents a layout may add labels from."""
    lengths = rng.integers(MIN_LEN, STEPS + 1, n)
    content = np.arange(STEPS)[None, :] >= (STEPS - lengths)[:, None]
    text, t = _text(rng, lang, lengths)
    u = rng.standard_normal(n)
    s = TEXT_WEIGHT * t + AFFECT_WEIGHT * u
    raters = rng.integers(3, 6, n)
    ratings = np.clip(np.round(1.4 * s[:, None] + rng.normal(0, RATER_NOISE, (n, 5))), -3, 3)
    labels = (ratings * (np.arange(5)[None, :] < raters[:, None])).sum(1) / raters
    arrays, latents, masks = {"text": text, "labels": labels.reshape(n, 1).astype(np.float32)}, {"text": t}, {}
    for m, (wu, wt) in NONVERBAL.items():
        latents[m] = signal = wu * u + wt * t + NONVERBAL_NOISE * rng.standard_normal(n)
        masks[m] = _frames(rng, m, content) if unaligned else content
        arrays[m] = _nonverbal(rng, lang, m, signal, masks[m])
    inf = (rng.random((*masks["audio"].shape, len(INF_DIMS))) < INF_RATE) & masks["audio"][..., None]
    arrays["audio"][..., list(INF_DIMS)] = np.where(inf, np.where(rng.random(inf.shape) < 0.5, -np.inf, np.inf),
                                                    arrays["audio"][..., list(INF_DIMS)])
    arrays["id"] = np.array([f"synthetic_{name}_{i:05d}" for i in range(n)])
    return arrays, latents


def _in_layout(arrays: dict, latents: dict, layout: str, label_range: tuple[float, float]) -> dict:
    """The handout's arrays as another layout writes them (none of this draws a random number)."""
    if label_range[1] == 1.0:  # CH-SIMS-like: labels on its grid of fifths in [-1, 1], and a label per modality
        arrays["labels"] = np.clip(np.round(arrays["labels"] * 5 / 3) / 5, -1, 1).astype(np.float32)
    if layout == "mult":
        arrays["labels"] = arrays["labels"].reshape(-1, 1, 1)
        arrays["id"] = np.array([i.encode() for i in arrays["id"]])
    if layout == "mmsa":
        arrays["regression_labels"] = arrays.pop("labels").reshape(-1)
        if label_range[1] == 1.0:
            for key, m in (("T", "text"), ("A", "audio"), ("V", "vision")):
                arrays[f"regression_labels_{key}"] = np.clip(np.round(latents[m] * 2) / 5, -1, 1).astype(np.float32)
        unaligned = arrays["audio"].shape[1] != STEPS
        for m in MODALITIES if unaligned else ():  # real steps first, padding after (and the frames' counts)
            real = (arrays[m] != 0).any(-1)
            if m != "text":
                arrays[f"{m}_lengths"] = real.sum(1)
            order = np.argsort(~real, axis=1, kind="stable")  # real steps first, in their order
            arrays[m] = np.take_along_axis(arrays[m], order[..., None], axis=1)
        # BERT text: token ids, input mask and segments in text_bert; its features are not zero at padding
        real = (arrays["text"] != 0).any(-1)
        arrays["text_bert"] = np.stack([np.where(real, 101, 0), real, np.zeros_like(real)], axis=1).astype(np.int64)
        arrays["text"] = np.where(real[..., None], arrays["text"], np.float32(BERT_PADDING)).astype(np.float32)
    return arrays


def synthetic_arrays(seed: int = 0, scale: float = 1.0, unaligned: bool = False, layout: str = "handout",
                     label_range: tuple[float, float] = (-3.0, 3.0)) -> dict[str, dict[str, np.ndarray]]:
    """The raw ``{split: {key: array}}`` structure: by default in the handout's ``mosi_raw.pkl``
    layout; ``layout`` mult (MulT's: (N, 1, 1) labels, byte ids) or mmsa (MMSA's:
    ``regression_labels``, BERT-like text with its ``text_bert`` mask and non-zero padding, and
    where ``unaligned``, each clip's real steps first, with ``<modality>_lengths`` for audio and
    vision); ``label_range`` [-1, 1] for CH-SIMS-like labels (with MMSA's
    per-modality labels in its layout)."""
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 < scale <= 1:
        raise ConfigError(f"data.scale={scale}: must be a number in (0, 1]")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**32:
        raise ConfigError(f"data.seed={seed}: must be an integer in [0, 2**32)")
    if layout not in LAYOUTS:
        raise ConfigError(f"data.layout={layout}: must be one of {', '.join(LAYOUTS)}")
    language_seed, *split_seeds = np.random.SeedSequence(seed).spawn(1 + len(SPLITS))
    lang = _language(np.random.default_rng(language_seed))
    return {name: _in_layout(*_split(np.random.default_rng(ss), lang, max(2, round(SIZES[name] * scale)), unaligned,
                                    name), layout, tuple(label_range))
            for name, ss in zip(SPLITS, split_seeds)}


def make_synthetic_mosi(seed: int = 0, scale: float = 1.0, unaligned: bool = False, layout: str = "handout",
                        label_range: tuple[float, float] = (-3.0, 3.0), align: str = "none",
                        text_bert: bool = False) -> MSAData:
    """``text_bert`` (set by the run: text=bert): keep the mmsa layout's token ids (one id, 101, at every
    real token: they carry no words, so BERT learns nothing from them; real MMSA files do)."""
    label_range = tuple(float(v) for v in label_range)
    arrays = synthetic_arrays(seed, scale, unaligned, layout, label_range)
    return from_arrays(arrays, source=f"synthetic(seed={seed}, scale={scale})", label_range=label_range, align=align,
                       text_bert=text_bert)


if __name__ == "__main__":  # write the synthetic data as a MOSI pickle: python -m msa_ablate.data.synthetic OUT
    import argparse
    import pickle

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", help="pickle file to write (default: the handout's mosi_raw.pkl layout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--unaligned", action="store_true", help="audio and vision frames at their own rates")
    parser.add_argument("--layout", choices=LAYOUTS, default="handout")
    parser.add_argument("--sims", action="store_true", help="CH-SIMS-like labels in [-1, 1]")
    args = parser.parse_args()
    try:
        arrays = synthetic_arrays(args.seed, args.scale, args.unaligned, args.layout,
                                  (-1.0, 1.0) if args.sims else (-3.0, 3.0))
    except ConfigError as e:
        parser.error(str(e))
    with open(args.out, "wb") as f:
        pickle.dump(arrays, f)
