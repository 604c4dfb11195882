"""Text-set metrics for generated samples: Self-BLEU, distinct-n and duplicate rate."""
from __future__ import annotations

import math
import re
from collections import Counter

_TOKEN = re.compile(r"\w+|[^\w\s]")


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _ngrams(tokens: list[str], n: int) -> Counter:
    return Counter(tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1))


def self_bleu(texts: list[str], max_n: int = 4) -> float:
    """Mean BLEU-`max_n` of each text against all the others as references (higher = less diverse).

    Clipped counts use, per n-gram, the largest count in any *other* text (the top-2 counts over the corpus let us
    exclude the hypothesis itself without the quadratic loop); brevity penalty uses the closest other length;
    zero n-gram matches are smoothed with epsilon 0.1 (Chen & Cherry method 1). Returns 0 for fewer than 2 texts.
    """
    docs = [tokenize(t) for t in texts]
    docs = [d for d in docs if d]
    if len(docs) < 2:
        return 0.0
    counts = [[_ngrams(d, n) for n in range(1, max_n + 1)] for d in docs]
    top2: list[dict[tuple, tuple[int, int]]] = [{} for _ in range(max_n)]
    for doc_counts in counts:
        for n_index, counter in enumerate(doc_counts):
            table = top2[n_index]
            for gram, c in counter.items():
                first, second = table.get(gram, (0, 0))
                table[gram] = (c, first) if c >= first else (first, max(second, c))
    lengths = sorted(len(d) for d in docs)
    scores = []
    for doc, doc_counts in zip(docs, counts):
        log_precision = 0.0
        for n_index, counter in enumerate(doc_counts):
            table = top2[n_index]
            total = sum(counter.values())
            if total == 0:
                log_precision += math.log(0.1 / 1)  # too short for this n: smoothed like a zero match
                continue
            matched = 0
            for gram, c in counter.items():
                first, second = table[gram]
                others_max = second if c == first else first
                matched += min(c, others_max)
            log_precision += math.log(matched / total if matched else 0.1 / total)
        ref_len = _closest_other_length(lengths, len(doc))
        brevity = 1.0 if len(doc) >= ref_len else math.exp(1 - ref_len / len(doc))
        scores.append(brevity * math.exp(log_precision / max_n))
    return sum(scores) / len(scores)


def _closest_other_length(sorted_lengths: list[int], length: int) -> int:
    # Remove one occurrence of our own length, then take the closest (shorter wins ties, as in NLTK).
    others = list(sorted_lengths)
    others.remove(length)
    return min(others, key=lambda r: (abs(r - length), r))


def duplicate_rate(texts: list[str]) -> float:
    """Fraction of texts that repeat an earlier one after whitespace/case normalisation."""
    if not texts:
        return 0.0
    seen, dupes = set(), 0
    for text in texts:
        key = " ".join(tokenize(text))
        dupes += key in seen
        seen.add(key)
    return dupes / len(texts)


def distinct_n(texts: list[str], n: int = 2) -> float:
    """Distinct n-grams over all n-grams of the texts (Li et al. 2016; higher = more diverse); 0 when none.

    Counted over the whole set, so a phrase every sample repeats lowers it however varied the rest is.
    """
    grams: Counter = Counter()
    for text in texts:
        grams.update(_ngrams(tokenize(text), n))
    total = sum(grams.values())
    return len(grams) / total if total else 0.0


def value_texts(task, fields_list) -> list[str]:
    """The field values of each sample joined by spaces: what distinct-n and length count (headers excluded)."""
    return [" ".join(fields[f] for f in task.text_fields) for fields in fields_list]


def length_and_distinct(texts: list[str]) -> dict:
    """{"distinct_2", "mean_words"} of a sample set (rounded for a run summary)."""
    return {"distinct_2": round(distinct_n(texts, 2), 4),
            "mean_words": round(sum(len(tokenize(t)) for t in texts) / len(texts), 2) if texts else None}
