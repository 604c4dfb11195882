"""The teacher as a few-shot classifier: its calibrated class probabilities are the soft labels.

Prompt = demonstrations (serialized example + query line + the label's answer text) followed by the query example.
A class's score is the teacher's log-likelihood of the whole answer text after the query ("very negative",
"Sci/Tech": every token counts, so answers may share their first token); the class probability is the softmax over
the classes' scores. The demonstrations are shared by every query, so their KV cache is computed once and reused for
every batch; the answers' further tokens are read in one more pass over each query's cache.
"""
from __future__ import annotations

import copy
import hashlib
import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..config import ScorerConfig
from ..errors import Cancelled
from .load import Teacher


# design choice: the first halving round scores each demo set on at least 8 held-out rows; fewer decide on noise
FIRST_ROUND_MIN_ROWS = 8


def default_demo_candidates(task) -> int:
    if len(task.text_fields) != 1:
        # design choice: 2 demo sets for pairs; each costs RTE ~20 s of a 10-minute budget (8 took 248 s) and the tiny
        # teacher is at chance there whichever set wins (seed 13: 60.7 / 46.4 / 60.7% held-out, the first set won)
        return 2
    if default_demos_total(task) > 4:
        # design choice: 4 demo sets for tasks shown two demonstrations a label: with 8, their longer prompts made
        # TREC's check take 58-65 s (goal 60 s), with 4 54-57 s; the teacher moved by TREC 51.2 -> 50.3, SST-5
        # 30.5 -> 30.6 over 5 seeds, the same at 3 of 5 seeds on each (bench/results/teacher_check.md)
        return 4
    return 8


def default_demos_total(task) -> int:
    """Demonstrations in the prompt when `scorer.demos_total` is None: two a label for a one-text task with 3 to 6
    labels, else 4 (spread evenly, at least one a label)."""
    labels = len(task.labels)
    if len(task.text_fields) == 1 and 3 <= labels <= 6:
        # design choice: TREC (6 labels) 42.2 -> 51.2% at 5 seeds with two a label, SST-5 (5 labels) within noise
        # (bench/results/teacher_check.md); pairs keep 4, as their long prompts make each demonstration dear
        return 2 * labels
    return 4


def demos_per_label(demos_total: int | None, task) -> int:
    """Demonstrations the prompt shows of each label: an even share of `demos_total` (None: the task's default),
    at least one."""
    return max(1, (demos_total or default_demos_total(task)) // len(task.labels))


def demos_in_prompt(demos_total: int | None, task) -> int:
    """Demonstrations the prompt shows in all: `demos_per_label` of every label."""
    return demos_per_label(demos_total, task) * len(task.labels)


@dataclass
class ScorerReport:
    demo_uids: list[str] = field(default_factory=list)
    demo_accuracy: float = 0.0
    """Accuracy of the chosen demo set on the held-out rest of the train split (uncalibrated)."""
    candidate_accuracies: list[float] = field(default_factory=list)
    query: str = ""
    """The query line that won with the chosen demo set (the task's own when it has no other candidates)."""
    candidate_queries: list[str] = field(default_factory=list)
    """The query line each candidate (in `candidate_accuracies`' order) was tried with."""
    candidate_rows: list[int] = field(default_factory=list)
    """Held-out rows each candidate was scored on (successive halving drops the weaker ones early)."""
    label_prior: list[float] = field(default_factory=list)
    """Mean raw class probability over unlabeled in-domain inputs (divided out by calibration)."""


def search_schedule(candidates: int, held_out: int) -> list[tuple[int, int]]:
    """Successive halving of the demo search: (candidates still in, held-out rows each has been scored on by the end
    of the round) per round. The first round gives every candidate an equal share of one full pass over the held-out
    rows (at least `FIRST_ROUND_MIN_ROWS`), each later round keeps the better half on twice as many rows, and the
    last two candidates are compared on every row."""
    rows = min(held_out, max(FIRST_ROUND_MIN_ROWS, -(-held_out // max(1, candidates))))
    if candidates <= 2:
        rows = held_out
    schedule = [(candidates, rows)]
    while rows < held_out:
        candidates = -(-candidates // 2)
        rows = held_out if candidates <= 2 else min(held_out, 2 * rows)
        schedule.append((candidates, rows))
    return schedule


def search_inputs(candidates: int, held_out: int, halving: bool = True) -> int:
    """Inputs the demo search scores (see `search_schedule`)."""
    if not halving:
        return candidates * held_out
    schedule = search_schedule(candidates, held_out)
    return sum(alive * (rows - previous) for (alive, rows), previous
               in zip(schedule, [0, *[rows for _, rows in schedule[:-1]]]))


def _rate(correct: int, scored: int) -> float:
    return correct / scored if scored else 0.0


def _balanced_order(rows, labels, seed: int) -> list:
    """The rows, each label's shuffled, dealt one label at a time: any prefix holds the labels about equally (a
    task's train split may be sorted by label, and a halving round reads only a prefix)."""
    rng = random.Random(f"{seed}-held-out-order")
    piles = []
    for label in labels:
        pile = [e for e in rows if e.label == label]
        rng.shuffle(pile)
        piles.append(pile)
    return [pile[i] for i in range(max((len(p) for p in piles), default=0)) for pile in piles if i < len(pile)]


class TeacherScorer:
    """Few-shot verbalizer scores with demo selection and label-prior calibration."""

    def __init__(self, teacher: Teacher, task, config: ScorerConfig | None = None, seed: int = 13,
                 cache_dir: str | Path | None = None):
        """`cache_dir`: keep raw scores on disk too (keyed by the teacher's weights, the verbalizer and the demo
        prefix), so step 1 of the same task and seed scores nothing twice. Never used where scoring is timed."""
        self.teacher, self.task = teacher, task
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.config = config or ScorerConfig()
        self.seed = seed
        self.answer_ids = list(task.answer_token_ids(teacher.tokenizer).values())
        self.verbalizer_ids = [tokens[0] for tokens in self.answer_ids]
        # Every answer one token: its score is that token's logit, read from the head's answer rows only.
        self.single_token = all(len(tokens) == 1 for tokens in self.answer_ids)
        self.query = task.query
        self.report = ScorerReport()
        self.prior = np.full(len(task.labels), 1.0 / len(task.labels))
        self._prefix_text = ""
        self._prefix_cache = None
        self._raw_cache: dict[str, np.ndarray] = {}
        self._on_disk = 0

    # ---- prompt and cache ------------------------------------------------------------------------------------
    def _prompt(self, fields) -> str:
        return self.task.classification_prompt(fields, self.query)

    def _demo_block(self, demos) -> str:
        parts = [self._prompt(d.fields) + " " + self.task.verbalizers[d.label] for d in demos]
        return "".join(part + "\n\n" for part in parts)

    def _set_prefix(self, demos, query: str | None = None, keep: dict | None = None) -> None:
        """Make `demos` asked with `query` the prefix of every scored prompt. `keep`: a dict that holds computed
        prefix caches by text, so the demo search, which comes back to a candidate each halving round, computes a
        prefix once (a ~300-token prefix costs about as much as ten queries)."""
        self.query = query or self.query
        self._prefix_text = self._demo_block(demos)
        if keep is not None and self._prefix_text in keep:
            self._prefix_cache, self._prefix_len = keep[self._prefix_text]
        else:
            ids = self.teacher.encode(self._prefix_text)
            with torch.no_grad():
                out = self.teacher.model(torch.tensor([ids], device=self.teacher.device), use_cache=True)
            self._prefix_cache = out.past_key_values
            self._prefix_len = len(ids)
            if keep is not None:
                keep[self._prefix_text] = (self._prefix_cache, self._prefix_len)
        self._raw_cache.clear()
        self._raw_cache.update(self._read_disk())
        self._on_disk = len(self._raw_cache)

    def _disk_path(self) -> Path | None:
        if self.cache_dir is None:
            return None
        # The prefix holds the query line too (every demonstration ends with it), so a query has its own file.
        answers = self.verbalizer_ids if self.single_token else f"{self.answer_ids}/{self.config.answer_score}"
        key = f"{self.teacher.fingerprint}\x00{answers}\x00{self._prefix_text}"
        return self.cache_dir / "scores" / f"{hashlib.sha1(key.encode('utf-8')).hexdigest()[:20]}.npz"

    def _read_disk(self) -> dict[str, np.ndarray]:
        path = self._disk_path()
        if path is None or not path.is_file():
            return {}
        try:
            with np.load(path, allow_pickle=False) as data:
                return dict(zip(data["keys"].tolist(), data["rows"]))
        except (OSError, ValueError, KeyError):  # a damaged cache file is only a cache: score again
            return {}

    def _write_disk(self) -> None:
        path = self._disk_path()
        if path is None or len(self._raw_cache) == self._on_disk:
            return
        keys = sorted(self._raw_cache)
        partial = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.tmp.npz")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez(partial, keys=np.array(keys), rows=np.stack([self._raw_cache[k] for k in keys]))
            os.replace(partial, path)  # readers see the old file or the new one, never half of one
            self._on_disk = len(keys)
        except OSError:  # a read-only or full disk: the in-memory cache still serves this process
            partial.unlink(missing_ok=True)

    def _split_head(self):
        """(decoder body, output head) of the teacher, or (None, None) when the model does not expose them; the
        head is applied to the answer position's hidden state only, and only for the verbalizer rows."""
        model = self.teacher.model
        base = getattr(model, getattr(model, "base_model_prefix", ""), None)
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if base is None or base is model or not isinstance(head, torch.nn.Linear):
            return None, None
        return base, head

    def _batch_inputs(self, queries: list[list[int]]):
        """(ids, attention mask, KV cache) of tokenized queries after the shared demo prefix: queries right-padded to
        the longest one, the prefix's cache repeated once per query."""
        width = max(len(q) for q in queries)
        pad = self.teacher.tokenizer.pad_token_id
        ids = torch.full((len(queries), width), pad, dtype=torch.long)
        mask = torch.zeros((len(queries), self._prefix_len + width), dtype=torch.long)
        mask[:, : self._prefix_len] = 1
        for i, q in enumerate(queries):
            ids[i, : len(q)] = torch.tensor(q)
            mask[i, self._prefix_len : self._prefix_len + len(q)] = 1
        cache = copy.deepcopy(self._prefix_cache)
        cache.batch_repeat_interleave(len(queries))
        return ids, mask, cache

    @torch.no_grad()
    def _score_ids(self, queries: list[list[int]]) -> tuple[np.ndarray, np.ndarray | None]:
        """Uncalibrated class probabilities (and the final hidden state at the answer position) for tokenized
        queries that share the current prefix."""
        ids, mask, cache = self._batch_inputs(queries)
        device = self.teacher.device
        rows = torch.arange(len(queries), device=device)
        last = torch.tensor([len(q) - 1 for q in queries], device=device)
        inputs = {"input_ids": ids.to(device), "attention_mask": mask.to(device), "past_key_values": cache,
                  "use_cache": True}
        base, head = self._split_head()
        if base is None:
            logits, hidden = self.teacher.model(**inputs).logits[rows, last].float(), None
            if self.single_token:
                return logits[:, self.verbalizer_ids].softmax(-1).cpu().numpy(), None
        else:
            hidden = base(**inputs).last_hidden_state[rows, last]
            if self.single_token:
                # design choice: the full-vocabulary head on every position is ~1/5 of a small teacher's compute;
                # one-token answers need only the answer position's answer rows.
                answers = torch.tensor(self.verbalizer_ids, device=device)
                logits = hidden @ head.weight[answers].T
                if head.bias is not None:
                    logits = logits + head.bias[answers]
                return logits.float().softmax(-1).cpu().numpy(), hidden.float().cpu().numpy()
            logits = head(hidden).float()
        scores = self._answer_scores(logits.log_softmax(-1), cache, mask, queries, base, head)
        return scores.softmax(-1).cpu().numpy(), None if hidden is None else hidden.float().cpu().numpy()

    def _answer_scores(self, first_logp: torch.Tensor, cache, mask: torch.Tensor, queries: list[list[int]],
                       base, head) -> torch.Tensor:
        """Each class's log-likelihood of its whole answer after each query, (queries, classes): the first token's
        log-probability at the answer position plus the rest read through the queries' cache, classes a chunk at a
        time (the cache is repeated once per class of the chunk). `answer_score` "mean" divides by the answer's
        length."""
        device = self.teacher.device
        n_queries, n_classes = len(queries), len(self.answer_ids)
        total = first_logp[:, [tokens[0] for tokens in self.answer_ids]].clone()
        rest = max(len(tokens) for tokens in self.answer_ids) - 1
        if rest:
            pad = self.teacher.tokenizer.pad_token_id or 0
            inputs = torch.full((n_classes, rest), pad, dtype=torch.long)
            targets = torch.zeros((n_classes, rest), dtype=torch.long)
            valid = torch.zeros((n_classes, rest), dtype=torch.bool)
            for c, tokens in enumerate(self.answer_ids):
                inputs[c, : len(tokens) - 1] = torch.tensor(tokens[:-1])
                targets[c, : len(tokens) - 1] = torch.tensor(tokens[1:])
                valid[c, : len(tokens) - 1] = True
            # Position of an answer's t-th token: right after its own query, whatever the padding after the query.
            starts = torch.tensor([self._prefix_len + len(q) for q in queries])
            positions = starts[:, None] + torch.arange(rest)[None, :]
            # At most ~4 query batches' worth of rows per pass: the repeated cache's memory stays bounded.
            per_pass = max(1, (4 * self.config.batch_size) // n_queries)
            longer = [c for c, tokens in enumerate(self.answer_ids) if len(tokens) > 1]  # one-token answers are done
            for begin in range(0, len(longer), per_pass):
                chunk = longer[begin : begin + per_pass]
                repeated = copy.deepcopy(cache)
                repeated.batch_repeat_interleave(len(chunk))
                row_query = torch.arange(n_queries).repeat_interleave(len(chunk))
                row_class = torch.tensor(chunk).repeat(n_queries)
                step = {"input_ids": inputs[row_class].to(device),
                        "attention_mask": torch.cat([mask[row_query], torch.ones((len(row_query), rest),
                                                                                 dtype=torch.long)], 1).to(device),
                        "position_ids": positions[row_query].to(device),
                        "past_key_values": repeated, "use_cache": True}
                if base is None:
                    logits = self.teacher.model(**step).logits
                else:
                    logits = head(base(**step).last_hidden_state)
                logp = logits.float().log_softmax(-1).gather(-1, targets[row_class].to(device)[..., None])[..., 0]
                summed = (logp * valid[row_class].to(device)).sum(-1).view(n_queries, len(chunk))
                total[:, chunk] += summed
        if self.config.answer_score == "mean":
            total = total / torch.tensor([len(tokens) for tokens in self.answer_ids], device=total.device)
        return total

    def _batches(self, queries: list[list[int]]) -> list[list[int]]:
        """Positions of `queries` grouped into forward passes of `batch_size`, shortest first (so a batch is
        padded to a length close to all of its members')."""
        order = sorted(range(len(queries)), key=lambda i: len(queries[i]))
        size = self.config.batch_size
        return [order[start : start + size] for start in range(0, len(order), size)]

    def raw_probs(self, fields_list, should_stop=None) -> np.ndarray:
        """Uncalibrated probabilities, cached per serialized input (same demos).

        Raises Cancelled between batches when `should_stop()` turns true (one batch is the longest wait).
        """
        keys = [hashlib.sha1(self.task.serialize(f).encode()).hexdigest() for f in fields_list]
        first: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self._raw_cache:
                first.setdefault(k, i)
        missing = list(first.values())
        queries = [self.teacher.encode(self._prompt(fields_list[i])) for i in missing]
        try:
            for batch in self._batches(queries):
                if should_stop is not None and should_stop():
                    raise Cancelled("teacher scoring cancelled")
                probs, _ = self._score_ids([queries[j] for j in batch])
                for j, row in zip(batch, probs):
                    self._raw_cache[keys[missing[j]]] = row
        finally:
            if missing:
                self._write_disk()
        if not keys:
            return np.zeros((0, len(self.task.labels)))
        return np.stack([self._raw_cache[k] for k in keys])

    def features(self, fields_list, should_stop=None) -> tuple[np.ndarray, np.ndarray | None]:
        """Calibrated class probabilities and the teacher's final hidden state at the answer position (None when
        the model does not expose its head), scored afresh in length-sorted batches (the cache holds no hidden
        states)."""
        queries = [self.teacher.encode(self._prompt(f)) for f in fields_list]
        raw = np.zeros((len(queries), len(self.task.labels)))
        hidden = None
        for batch in self._batches(queries):
            if should_stop is not None and should_stop():
                raise Cancelled("teacher scoring cancelled")
            probs, h = self._score_ids([queries[j] for j in batch])
            raw[batch] = probs
            if h is not None:
                if hidden is None:
                    hidden = np.zeros((len(queries), h.shape[1]), dtype=np.float32)
                hidden[batch] = h
        calibrated = raw / self.prior
        return calibrated / calibrated.sum(-1, keepdims=True), hidden

    def probs(self, fields_list, should_stop=None) -> np.ndarray:
        """Calibrated class probabilities: p(y|x) / prior(y), renormalised (Cancelled between batches once
        `should_stop()` is true)."""
        raw = self.raw_probs(fields_list, should_stop)
        calibrated = raw / self.prior
        return calibrated / calibrated.sum(-1, keepdims=True)

    # ---- setup -----------------------------------------------------------------------------------------------
    def fit(self, progress=None, should_stop=None, halving: bool = True) -> ScorerReport:
        """Choose the demo set and the query line by accuracy on the held-out rest of the train split, then
        estimate the prior. Candidate c tries the c-th random demo set with the task's query lines in turn, so a
        task with other query lines costs no more than one without.

        With `halving` (successive halving, see `search_schedule`) every candidate is scored on the first rows of a
        label-balanced order of its held-out rows, the better half goes on to twice as many rows, and the last two
        are compared on every row; without it, every candidate is scored on every held-out row (the old search, kept
        for bench/demo_search.py). `progress(done, total)` counts scored inputs.

        Raises Cancelled within one scoring batch of `should_stop()` turning true.
        """
        rng = random.Random(self.seed)
        labels = self.task.labels
        per_label = demos_per_label(self.config.demos_total, self.task)
        by_label = {label: [e for e in self.task.train if e.label == label] for label in labels}
        queries = [self.task.query, *self.task.query_candidates]
        order = _balanced_order(self.task.train, labels, self.seed)
        candidates = []
        for c in range(max(self.config.demo_candidates or default_demo_candidates(self.task), len(queries))):
            demos = []
            for label in labels:
                pool = by_label[label]
                demos += rng.sample(pool, min(per_label, len(pool)))
            rng.shuffle(demos)
            demo_ids = {d.uid for d in demos}
            candidates.append((demos, queries[c % len(queries)], [e for e in order if e.uid not in demo_ids]))
        held_out = max(len(rows) for _, _, rows in candidates)
        schedule = search_schedule(len(candidates), held_out) if halving else [(len(candidates), held_out)]
        total = search_inputs(len(candidates), held_out, halving)
        correct, scored = [0] * len(candidates), [0] * len(candidates)
        alive, done, prefixes = list(range(len(candidates))), 0, {}
        for keep, rows in schedule:
            alive = sorted(alive, key=lambda c: (-_rate(correct[c], scored[c]), c))[:keep]
            for c in sorted(alive):
                demos, query, rest = candidates[c]
                batch = rest[scored[c]:rows]
                if not batch:
                    continue
                self._set_prefix(demos, query, keep=prefixes)
                raw = self.raw_probs([e.fields for e in batch], should_stop)
                gold = np.array([labels.index(e.label) for e in batch])
                correct[c] += int((raw.argmax(-1) == gold).sum())
                scored[c] += len(batch)
                done += len(batch)
                if progress is not None:
                    progress(min(done, total), total)
        best = min(alive, key=lambda c: (-_rate(correct[c], scored[c]), c))
        self.report.candidate_accuracies = [_rate(correct[c], scored[c]) for c in range(len(candidates))]
        self.report.candidate_queries = [query for _, query, _ in candidates]
        self.report.candidate_rows = list(scored)
        demos, self.report.query = candidates[best][0], candidates[best][1]
        self.report.demo_accuracy = self.report.candidate_accuracies[best]
        self.report.demo_uids = [d.uid for d in demos]
        self._set_prefix(demos, self.report.query, keep=prefixes)
        prefixes.clear()
        self.calibrate()
        return self.report

    def calibration_pool(self) -> list[dict[str, str]]:
        """A seeded random sample of the unlabeled in-domain inputs."""
        pool = list(self.task.unlabeled)
        random.Random(self.seed).shuffle(pool)
        return pool[: self.config.calibration_inputs]

    def calibrate(self) -> None:
        pool = self.calibration_pool()
        if not pool:
            self.prior = np.full(len(self.task.labels), 1.0 / len(self.task.labels))
        else:
            self.prior = self.raw_probs(pool).mean(0)
        self.report.label_prior = [float(p) for p in self.prior]

    def use_demos(self, demo_uids: list[str], prior: list[float], query: str | None = None) -> None:
        """Restore a fitted scorer (from a run's summary) without re-running demo selection; `query` None = the
        task's own (runs made before query lines were chosen)."""
        by_uid = {e.uid: e for e in self.task.train}
        self._set_prefix([by_uid[u] for u in demo_uids], query or self.task.query)
        self.prior = np.asarray(prior, dtype=float)
        self.report.demo_uids, self.report.label_prior = list(demo_uids), list(prior)
        self.report.query = self.query


def restored_scorer(teacher: Teacher, task, config: ScorerConfig, seed: int,
                    score: dict | None) -> TeacherScorer | None:
    """The step-1 scorer rebuilt from a run summary's `score` block (chosen demos and label prior), or None when
    the block has neither."""
    if not score or not score.get("demo_uids") or not score.get("label_prior"):
        return None
    scorer = TeacherScorer(teacher, task, config, seed=seed)
    scorer.use_demos(score["demo_uids"], score["label_prior"], score.get("query"))
    return scorer


def run_scorer(run, task, teacher: Teacher) -> TeacherScorer:
    """A run's step-1 scorer: restored from its summary, else fitted anew (demo search and calibration)."""
    config, seed = run.config.scorer, run.config.seed
    scorer = restored_scorer(teacher, task, config, seed, run.summary().get("score"))
    if scorer is None:
        scorer = TeacherScorer(teacher, task, config, seed=seed)
        scorer.fit()
    return scorer
