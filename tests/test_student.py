"""Student, retrieval and evaluation tests: a real Chroma and real tiny students on a hand-built sentiment task."""
from __future__ import annotations

import hashlib
import json
import random
from dataclasses import replace

import numpy as np
import pytest
import torch

from retrikt.config import ConfigError, RunConfig, StudentConfig, from_dict, override
from retrikt.student.retrieval import KeyIndex, bank_neighbours, mix, predict, relational_loss
from retrikt.store.knowledge_store import Entry, KnowledgeStore
from retrikt.student.model import Student, build_student, compression_ratio, task_texts
from retrikt.student.train import finetune, select_items
from retrikt.tasks import Example, Task

LABELS = ("negative", "positive")
GOOD = ["great", "wonderful", "superb", "delightful", "brilliant", "moving"]
BAD = ["awful", "terrible", "dreadful", "boring", "horrible", "clumsy"]
FILLER = ["the", "film", "plot", "acting", "story", "was", "really", "quite", "ending", "cast"]
EMBEDDED_TEACHER_PARAMS = 134_515_008  # SmolLM2-135M-Instruct as packaged (see test_teacher for the live count)


def sentence(rng: random.Random, good: bool) -> str:
    words = rng.sample(FILLER, 4) + rng.sample(GOOD if good else BAD, 2)
    rng.shuffle(words)
    return " ".join(words)


class WordEmbedder:
    """Deterministic bag-of-words vectors: a stand-in sentence embedder that needs no model."""

    name, dim = "test-words", 16

    def encode(self, texts):
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().replace(":", " ").split():
                seed = int(hashlib.md5(word.encode()).hexdigest()[:8], 16)
                out[row] += np.random.default_rng(seed).standard_normal(self.dim)
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-12)


def tiny_config(**kw) -> StudentConfig:
    base = dict(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=32, max_length=32, key_dim=16,
                init="random", pretrain_epochs=0, epochs=3, batch_size=16, learning_rate=3e-3)
    return StudentConfig(**{**base, **kw})


def make_task(seed: int = 0, n_train: int = 8, n_test: int = 20) -> Task:
    rng = random.Random(seed)

    def examples(prefix, n):
        return [Example({"sentence": sentence(rng, i % 2 == 1)}, LABELS[i % 2], f"{prefix}{i}") for i in range(n)]

    return Task(name="toy", text_fields=("sentence",), labels=LABELS,
                verbalizers={"negative": "terrible", "positive": "great"}, field_names={"sentence": "Review"},
                description="Movie review sentiment", query="It was", train=examples("tr", n_train),
                dev=examples("dev", 8), test=examples("te", n_test),
                unlabeled=[{"sentence": sentence(rng, rng.random() < 0.5)} for _ in range(10)])


def store_entries(task: Task, n: int = 40, seed: int = 1, p_pos=None, wrong_every: int = 0) -> list[Entry]:
    """Generated entries whose teacher agrees (p = 0.9), except every `wrong_every`-th; plus the train split."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        good = i % 2 == 1
        p = p_pos if p_pos is not None else (0.9 if good else 0.1)
        if wrong_every and i % wrong_every == 0:
            p = 1 - p
        text = task.serialize({"sentence": sentence(rng, good)})
        out.append(Entry({"sentence": text[8:]}, LABELS[int(good)], "generated:step1", text=text,
                         soft_labels={"negative": 1 - p, "positive": p}))
    for ex in task.train:
        out.append(Entry(ex.fields, ex.label, "train", text=task.serialize(ex.fields),
                         soft_labels={"negative": 0.2, "positive": 0.8} if ex.label == "positive"
                         else {"negative": 0.8, "positive": 0.2}))
    return out


@pytest.fixture
def store(tmp_path):
    return KnowledgeStore(path=tmp_path / "store", collection="toy__t", embedder=WordEmbedder(),
                          task_labels=list(LABELS))


def trained_student(task, store, cfg, retrieval=True):
    items = select_items(store, task, cfg)
    student = build_student(cfg, list(LABELS), task_texts(task, items.texts), EMBEDDED_TEACHER_PARAMS)
    finetune(student, items, cfg, seed=0, retrieval=retrieval)
    return student, items


def index_for(student, store, items):
    rows = np.flatnonzero(items.indexed)
    _, keys = student.encode([items.texts[i] for i in rows])
    return KeyIndex.build(store, [items.ids[i] for i in rows], keys, items.soft[rows], list(LABELS),
                          [LABELS[int(items.soft[i].argmax())] for i in rows], items.weight[rows])


# ---- training -----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("retrieval", [True, False])
def test_training_moves_trainable_params_only(store, retrieval):
    task = make_task()
    store.add(store_entries(task))
    cfg = tiny_config(epochs=2)
    items = select_items(store, task, cfg)
    student = build_student(cfg, list(LABELS), task_texts(task, items.texts), EMBEDDED_TEACHER_PARAMS)
    before = {n: p.detach().clone() for n, p in student.model.named_parameters()}
    assert all(p.requires_grad for p in student.model.parameters())
    finetune(student, items, cfg, seed=0, retrieval=retrieval)
    after = dict(student.model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    # Plain KD has no retrieval loss, so the key projection gets no gradient and must stay bit-identical.
    untouched = set() if retrieval else {"key.weight", "key.bias"}
    assert moved == set(before) - untouched
    for name in untouched:
        assert torch.equal(before[name], after[name])


def test_trained_student_learns_the_toy_task(store):
    task = make_task(n_test=40)
    store.add(store_entries(task, n=80))
    student, _ = trained_student(task, store, tiny_config(epochs=12))
    probs, _ = student.encode([task.serialize(e.fields) for e in task.test])
    gold = np.array([LABELS.index(e.label) for e in task.test])
    assert (probs.argmax(-1) == gold).mean() >= 0.8


def test_relational_loss_clusters_keys_by_teacher_label():
    torch.manual_seed(0)
    keys = torch.nn.Parameter(torch.randn(12, 8))
    soft = torch.tensor([[0.9, 0.1], [0.1, 0.9]] * 6)
    teacher_sim = torch.nn.functional.normalize(soft, dim=-1) @ torch.nn.functional.normalize(soft, dim=-1).T
    opt = torch.optim.Adam([keys], lr=0.05)
    first = None
    for _ in range(150):
        loss = relational_loss(torch.nn.functional.normalize(keys, dim=-1), teacher_sim, 0.1)
        first = float(loss) if first is None else first
        opt.zero_grad(), loss.backward(), opt.step()
    assert float(loss) < first
    unit = torch.nn.functional.normalize(keys.detach(), dim=-1)
    sims = (unit @ unit.T).fill_diagonal_(-2)
    nearest = sims.argmax(-1)
    assert torch.equal(soft[nearest].argmax(-1), soft.argmax(-1))


# ---- retrieval ----------------------------------------------------------------------------------------------------
def test_retrieval_returns_planted_nearest_entry(store):
    rng = np.random.default_rng(0)
    entries = store_entries(make_task(), n=30)
    ids = store.add(entries)
    keys = rng.standard_normal((len(ids), 16)).astype(np.float32)
    keys /= np.linalg.norm(keys, axis=1, keepdims=True)
    query = rng.standard_normal(16).astype(np.float32)
    planted = 7
    keys[planted] = query + 0.05 * rng.standard_normal(16)
    keys[planted] /= np.linalg.norm(keys[planted])
    soft = np.array([[e.soft_labels[l] for l in LABELS] for e in entries])
    index = KeyIndex.build(store, ids, keys, soft, list(LABELS), [e.label for e in entries], np.ones(len(ids)))
    found = index.query(query[None] / np.linalg.norm(query), k=3)
    assert found.ids[0][0] == ids[planted]
    assert found.sims[0, 0] > 0.99 and found.sims[0, 0] >= found.sims[0, 1] >= found.sims[0, 2]
    np.testing.assert_allclose(found.soft[0, 0], soft[planted])
    reopened = KeyIndex.open(store)  # the soft labels travel with the Chroma collection
    assert reopened.query(query[None] / np.linalg.norm(query), k=1).ids[0] == [ids[planted]]


def test_self_retrieval_is_excluded():
    keys = torch.nn.functional.normalize(torch.randn(6, 4), dim=-1)
    ids = [f"e{i}" for i in range(6)]
    idx, sims = bank_neighbours(keys, ids, keys, ids, k=3)  # each query is also the bank's best match
    for row in range(6):
        assert row not in idx[row].tolist()
        assert (sims[row] < 0.9999).all()
    idx, _ = bank_neighbours(keys[:2], ["outside", "e1"], keys, ids, k=6)
    assert 0 in idx[0].tolist() and 1 not in idx[1].tolist() and idx.shape == (2, 5)


def test_chroma_query_excludes_given_ids(store):
    entries = store_entries(make_task(), n=10)
    ids = store.add(entries)
    keys = np.eye(len(ids), 16, dtype=np.float32)
    soft = np.array([[e.soft_labels[l] for l in LABELS] for e in entries])
    index = KeyIndex.build(store, ids, keys, soft, list(LABELS), [e.label for e in entries], np.ones(len(ids)))
    found = index.query(keys[:3], k=2, exclude_ids=[{ids[0]}, {ids[1]}, set()])
    assert ids[0] not in found.ids[0] and ids[1] not in found.ids[1] and found.ids[2][0] == ids[2]


E = np.e
MIX_TABLE = [
    # student probs, neighbour soft labels, sims, beta, tau, entry weights, expected
    ([0.3, 0.7], [[1, 0], [0, 1]], [0.5, 0.5], 0.0, 1.0, None, [0.3, 0.7]),
    ([0.3, 0.7], [[1, 0], [0, 1]], [0.5, 0.5], 1.0, 1.0, None, [0.5, 0.5]),
    ([0.2, 0.8], [[1, 0]], [0.9], 0.5, 0.1, None, [0.6, 0.4]),
    ([0.5, 0.5], [[1, 0], [0, 1]], [1.0, 0.0], 1.0, 1.0, None, [E / (E + 1), 1 / (E + 1)]),
    ([0.4, 0.6], [[1, 0], [0, 1]], [0.2, 0.0], 0.25, 0.1, None,
     [0.75 * 0.4 + 0.25 * E**2 / (E**2 + 1), 0.75 * 0.6 + 0.25 / (E**2 + 1)]),
    ([0.5, 0.5], [[1, 0], [0, 1]], [0.3, 0.3], 1.0, 1.0, [1.0, 3.0], [0.25, 0.75]),
    ([0.5, 0.5], [[1, 0], [0, 1]], [0.9, 0.1], 1.0, 0.05, [1.0, 0.0], [1.0, 0.0]),  # a padded slot never votes
]


@pytest.mark.parametrize("student,soft,sims,beta,tau,weights,expected", MIX_TABLE)
def test_mixing_formula(student, soft, sims, beta, tau, weights, expected):
    out = mix(np.array([student]), np.array([soft], dtype=float), np.array([sims]), beta, tau,
              None if weights is None else np.array([weights]))
    np.testing.assert_allclose(out[0], expected, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(out.sum(-1), 1.0)


def test_beta_zero_equals_student_alone(store):
    task = make_task()
    store.add(store_entries(task))
    cfg = tiny_config()
    student, items = trained_student(task, store, cfg)
    index = index_for(student, store, items)
    texts = [task.serialize(e.fields) for e in task.test]
    out = predict(student, index, texts, k=4, tau=0.05, beta=0.0)
    assert len(out.neighbours.ids[0]) == 4  # retrieval did run
    np.testing.assert_array_equal(out.mixed, out.student.astype(np.float64))
    alone, _ = student.encode(texts)
    np.testing.assert_array_equal(out.student, alone)


def test_one_label_store_pulls_predictions_towards_it(store):
    task = make_task()
    store.add(store_entries(task, p_pos=0.95)[:40])  # generated entries only, every one "positive" to the teacher
    cfg = tiny_config(store_filter="none")
    items = select_items(store, task, cfg)
    student = build_student(cfg, list(LABELS), task_texts(task, items.texts), EMBEDDED_TEACHER_PARAMS)
    index = index_for(student, store, items)
    texts = [task.serialize(e.fields) for e in task.test]
    for beta in (0.25, 0.5):
        out = predict(student, index, texts, k=5, tau=0.1, beta=beta)
        assert (out.mixed[:, 1] > out.student[:, 1]).all()
    assert (predict(student, index, texts, k=5, tau=0.1, beta=0.75).mixed.argmax(-1) == 1).all()


# ---- weak-teacher filter ------------------------------------------------------------------------------------------
def test_agree_filter_drops_entries_the_teacher_disagrees_with(store):
    task = make_task()
    store.add(store_entries(task, n=20, wrong_every=4))  # 5 of 20 generated entries contradict their label
    agree = select_items(store, task, tiny_config(store_filter="agree"))
    assert agree.report["dropped_by_filter"] == 5 and agree.report["indexed"] == 15 + len(task.train)
    assert agree.report["gold_examples"] == len(task.train)
    weighted = select_items(store, task, tiny_config(store_filter="weight"))
    assert weighted.report["indexed"] == 20 + len(task.train)
    assert sorted(set(np.round(weighted.weight, 3))) == [0.1, 0.8, 0.9]


def test_gold_example_the_teacher_gets_wrong_keeps_its_gold_label(store):
    task = make_task()
    entries = store_entries(task, n=4)
    wrong = "negative" if entries[-1].label == "positive" else "positive"
    entries[-1].soft_labels = {wrong: 0.9, entries[-1].label: 0.1}  # the teacher is wrong on a gold example
    store.add(entries)
    items = select_items(store, task, tiny_config())
    row = items.texts.index(entries[-1].text)
    assert not items.indexed[row] and items.gold[row] == LABELS.index(entries[-1].label)
    assert items.soft[row].tolist() == np.eye(2)[LABELS.index(entries[-1].label)].tolist()


# ---- size, files, config ------------------------------------------------------------------------------------------
def test_default_student_is_within_one_percent_of_the_embedded_teacher():
    from retrikt.tasks import load_builtin

    task = load_builtin("SST-2", seed=13)
    cfg = StudentConfig(init="random")
    student = build_student(cfg, list(task.labels), task_texts(task), EMBEDDED_TEACHER_PARAMS)
    assert compression_ratio(student, EMBEDDED_TEACHER_PARAMS) <= 0.01
    assert student.n_params > 0.9 * 0.01 * EMBEDDED_TEACHER_PARAMS  # the budget is used, not wasted
    unk = student.tokenizer.convert_tokens_to_ids("[UNK]")

    def unknown(texts):
        ids, _ = student.batch(texts)
        plain = student.tokenizer(texts, truncation=True, max_length=cfg.max_length, padding=True,
                                  return_tensors="pt")["input_ids"]
        return ids == 1, plain == unk, plain

    # trimming loses no token of the texts the vocabulary is built from
    seen = [task.serialize(e.fields) for e in task.train + task.dev] + [task.serialize(f) for f in task.unlabeled[:300]]
    trimmed, full, _ = unknown(seen)
    assert torch.equal(trimmed, full)
    # the test split shaped nothing: a word piece met only in test sentences is not in the vocabulary; the student
    # reads it as the kept word piece nearest to it, never as [UNK] (and a student built without that, as [UNK])
    test = [task.serialize(e.fields) for e in task.test]
    known = {i for row in student.tokenizer(task_texts(task), add_special_tokens=False).input_ids for i in row}
    trimmed, full, plain = unknown(test)
    test_only = ~torch.isin(plain, torch.tensor(sorted(known))) & (plain > 103)  # 0-103: padding, specials, unused
    assert test_only.any() and not (test_only & trimmed).any()
    ids, _ = student.batch(test)
    assert torch.isin(plain[test_only], torch.tensor(student.vocab.base_ids)).sum() == 0
    assert (ids[test_only] > 3).all()  # a kept word piece, not a special
    plain_unk = build_student(cfg, list(task.labels), task_texts(task), EMBEDDED_TEACHER_PARAMS, nearest_words=False)
    assert torch.equal(plain_unk.batch(test)[0][test_only], torch.full_like(ids[test_only], 1))


def test_the_vocabulary_texts_never_hold_a_test_text():
    from dataclasses import replace

    toy = make_task()
    assert "Review: a store text" in task_texts(toy, ["Review: a store text"])
    leaky = replace(toy, unlabeled=toy.unlabeled + [toy.test[0].fields])  # an unlabeled pool holding a test input
    assert toy.serialize(toy.test[0].fields) not in task_texts(leaky)
    assert not {toy.serialize(e.fields) for e in toy.test} & set(task_texts(leaky))


@pytest.mark.parametrize("missing,expected", [(5, 2), (6, 3), (7, 2)])
def test_a_missing_word_piece_is_read_as_its_nearest_kept_one(missing, expected):
    from retrikt.student.model import FIRST_WORD_PIECE, Vocab

    # base ids FIRST_WORD_PIECE + 0..7 with 2-d embeddings; the vocabulary keeps pieces 0 and 1 (student ids 2, 3)
    angles = {0: 0.0, 1: 1.5, 5: 0.2, 6: 1.4, 7: -0.3}
    words = torch.zeros(FIRST_WORD_PIECE + 8, 2)
    for piece, angle in angles.items():
        words[FIRST_WORD_PIECE + piece] = torch.tensor([np.cos(angle), np.sin(angle)])
    vocab = Vocab([0, 100, FIRST_WORD_PIECE, FIRST_WORD_PIECE + 1]).with_nearest(words)
    table = vocab.lookup(FIRST_WORD_PIECE + 8)
    assert table[FIRST_WORD_PIECE + missing].item() == expected
    assert table[FIRST_WORD_PIECE].item() == 2 and table[FIRST_WORD_PIECE + 1].item() == 3  # kept pieces: their own
    assert table[50].item() == 1  # an [unusedN] piece stays [UNK]


@pytest.mark.parametrize("vocab_size", [500, 8_405, 19_182, 200_000])  # tiny, SST-2, BoolQ, absurd
def test_embedding_width_and_vocab_shrink_to_the_budget(vocab_size):
    from retrikt.student.model import StudentModel, TinyEncoder, count_params, plan_tiny

    cfg = StudentConfig()
    budget = int(0.01 * EMBEDDED_TEACHER_PARAMS)
    embed_dim, vocab = plan_tiny(cfg, vocab_size, 3, budget)
    params = count_params(StudentModel(TinyEncoder(vocab, embed_dim, cfg), 3, cfg.key_dim))
    assert params <= budget and embed_dim % 8 == 0
    assert vocab == vocab_size or embed_dim == 16  # the vocabulary is cut only at the narrowest width
    wider = params + 8 * (vocab + cfg.max_length + 2 + cfg.hidden_size)  # the same model 8 embedding dims wider
    assert wider > budget or embed_dim == cfg.hidden_size


def test_student_save_load_round_trip(store, tmp_path):
    task = make_task()
    store.add(store_entries(task))
    student, _ = trained_student(task, store, tiny_config(epochs=1))
    student.save(tmp_path / "s")
    again = Student.load(tmp_path / "s")
    texts = [task.serialize(e.fields) for e in task.test]
    np.testing.assert_allclose(again.encode(texts)[0], student.encode(texts)[0], atol=1e-6)
    assert json.loads((tmp_path / "s" / "student.json").read_text())["n_params"] == student.n_params
    unseen = ["zygomorphic quokkas"]  # word pieces outside the vocabulary: read the same after a reload
    assert torch.equal(again.batch(unseen)[0], student.batch(unseen)[0])
    assert again.vocab.nearest == student.vocab.nearest and (student.batch(unseen)[0] != 1).all()
    # a student saved before the nearest-word lookup existed still loads, reading unseen pieces as [UNK]
    meta = json.loads((tmp_path / "s" / "student.json").read_text())
    del meta["vocab_nearest"]
    (tmp_path / "s" / "student.json").write_text(json.dumps(meta))
    older = Student.load(tmp_path / "s")
    assert older.vocab.nearest is None and (older.batch(unseen)[0] == 1).any()


def test_student_config_is_validated():
    assert override(RunConfig(), {"student.k": 16}).student.k == 16
    with pytest.raises(ConfigError, match="student.store_filter"):
        from_dict({"student": {"store_filter": "maybe"}})
    with pytest.raises(ConfigError, match="student.beta"):
        from_dict({"student": {"beta": 1.5}})
    with pytest.raises(ConfigError, match="num_heads"):
        from_dict({"student": {"hidden_size": 30, "num_heads": 4}})


def test_gold_only_baseline_learns_from_gold_labels_alone(store):
    """The "student, gold only" rows: train-split examples only, one-hot gold targets (no teacher soft label), and
    training moves every parameter but the key projection (no retrieval loss)."""
    from retrikt.student.train import gold_only, gold_only_epochs

    task = make_task()
    store.add(store_entries(task))
    cfg = tiny_config(epochs=2)
    items = select_items(store, task, cfg)
    gold = gold_only(items, len(LABELS))
    assert len(gold.texts) == len(task.train) and all(g is not None for g in gold.gold)
    assert np.array_equal(gold.soft, np.eye(len(LABELS))[gold.gold]) and not gold.indexed.any()
    assert set(gold.texts) == {task.serialize(e.fields) for e in task.train}
    epochs = gold_only_epochs(items, gold, cfg)
    assert epochs >= cfg.epochs
    student = build_student(cfg, list(LABELS), task_texts(task, items.texts), EMBEDDED_TEACHER_PARAMS)
    before = {n: p.detach().clone() for n, p in student.model.named_parameters()}
    finetune(student, gold, replace(cfg, epochs=epochs), seed=0, retrieval=False, kd=False)
    after = dict(student.model.named_parameters())
    moved = {n for n in before if not torch.equal(before[n], after[n])}
    assert moved == set(before) - {"key.weight", "key.bias"}


# ---- stage + evaluation -------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("rule", ["dev", "teacher"])
def test_student_stage_and_evaluation_write_the_run_folder(tmp_path, monkeypatch, rule):
    import retrikt.student.stage as stage
    from retrikt.student.evaluate import evaluate
    from retrikt.runs import create_run
    from retrikt.store.knowledge_store import collection_name
    from retrikt.student.stage import load_gold_student, load_students, train_students

    task = make_task(n_test=12)
    if rule == "dev":
        task.unlabeled = []  # no inputs for the teacher to label: beta falls back to the dev split
    monkeypatch.setattr(stage, "BETA_HELDOUT", 16)
    tiny = {k: v for k, v in vars(tiny_config(epochs=4)).items()}
    run = create_run(from_dict({"workspace": str(tmp_path), "run_name": "toy-run", "student": tiny}))
    store = KnowledgeStore(path=run.store_dir, collection=collection_name("toy", run.name), embedder=WordEmbedder(),
                           task_labels=list(LABELS))
    store.add(store_entries(task, n=40, wrong_every=5))
    block = train_students(run, task, store, EMBEDDED_TEACHER_PARAMS)
    assert block["items"]["dropped_by_filter"] == 8 and block["compression_ratio"] <= 0.01
    grid = {"0.0", "0.25", "0.5", "0.75", "1.0"}
    assert block["beta"] in (0.0, 0.25, 0.5, 0.75, 1.0)
    if rule == "dev":
        assert set(block["beta_dev_accuracy"]) == grid and not block["beta_teacher_agreement"]
    else:  # the packaged teacher labelled held-out inputs of the toy task's unlabeled pool
        assert set(block["beta_teacher_agreement"]) == grid and 0 < block["beta_heldout"] <= 16  # the pool is small
        assert block["beta_dev_accuracy"] == {}
    student, kd_student, index, beta = load_students(run, store)
    assert len(index) == block["items"]["indexed"]
    gold_student = load_gold_student(run)
    gold_examples = sum(1 for e in task.train)
    assert block["gold_only"]["examples"] == gold_examples and block["gold_only"]["epochs"] >= 4
    summary = evaluate(run, task, store, None, student, kd_student, index, beta, gold_student=gold_student)
    systems = summary["systems"]
    assert set(systems) == {"majority", "student", "student_retrieval", "plain_kd", "student_gold"}  # no teacher
    assert 0 <= systems["student_gold"]["accuracy"] <= 1 and systems["student_gold"]["examples_per_s"] > 0
    assert systems["majority"]["accuracy"] == 0.5
    assert systems["student_retrieval"]["retrieval_seconds"] > 0 and systems["student"]["examples_per_s"] > 0
    saved = json.loads((run.path / "eval" / "summary.json").read_text())
    assert saved["systems"]["student"]["accuracy"] == systems["student"]["accuracy"]
    records = [json.loads(line) for line in (run.path / "eval" / "records.jsonl").read_text().splitlines()]
    assert [r["uid"] for r in records] == [e.uid for e in task.test]
    stored = {e.id: e for e in store.list()}
    for record in records:
        assert record["gold"] in LABELS and record["student"]["pred"] in LABELS
        assert len(record["neighbours"]) == student.config.k
        for hit in record["neighbours"]:
            assert stored[hit["id"]].text == hit["text"] and stored[hit["id"]].agreement  # filtered store only
            assert set(hit) == {"id", "text", "label", "source", "teacher_soft_labels", "similarity"}
        mixed = np.array(list(record["student_retrieval"]["probs"].values()))
        assert abs(mixed.sum() - 1) < 1e-3
    accuracy = np.mean([r["student_retrieval"]["pred"] == r["gold"] for r in records])
    assert abs(accuracy - systems["student_retrieval"]["accuracy"]) < 1e-3


def test_any_hf_encoder_can_be_the_student_and_its_ratio_is_reported(store, tmp_path):
    from retrikt.store.embed import packaged_model_dir

    task = make_task()
    store.add(store_entries(task, n=8))
    cfg = tiny_config(encoder=str(packaged_model_dir()), epochs=1, max_length=16)
    student, _ = trained_student(task, store, cfg)
    assert student.vocab is None and 0.1 < compression_ratio(student, EMBEDDED_TEACHER_PARAMS) < 0.2  # 22.7M params
    student.save(tmp_path / "hf")
    texts = [task.serialize(e.fields) for e in task.test[:4]]
    np.testing.assert_allclose(Student.load(tmp_path / "hf").encode(texts)[0], student.encode(texts)[0], atol=1e-5)


@pytest.mark.parametrize("accuracies,preferred,expected", [
    ([20, 20, 20, 20, 20], 0.5, 0.0),  # retrieval ties the student alone on dev: it has not earned a weight
    ([20, 19, 19, 19, 19], 0.5, 0.0),  # one example worse: off
    ([20, 18, 18, 18, 18], 0.5, 0.0),
    ([20, 21, 20, 20, 20], 0.5, 0.25),  # only 0.25 beats the student alone
    ([16, 18, 20, 19, 17], 0.5, 0.5),
    ([16, 17, 18, 20, 20], 0.5, 0.75),  # the configured beta is too weak: the nearest near-best one wins
    ([16, 18, 16, 18, 16], 0.5, 0.25),  # equal distance to preferred among the earning betas: the smaller
    ([22, 21, 21, 21, 23], 0.5, 1.0),  # only the vote alone beats the student alone
    ([16, 20, 19, 17, 17], 1.0, 0.5),  # 0.25 is best, 0.5 within one example and closer to preferred
])
def test_beta_choice_on_dev(accuracies, preferred, expected):
    from retrikt.student.stage import BETA_GRID, choose_beta

    assert choose_beta({b: a / 32 for b, a in zip(BETA_GRID, accuracies)}, 32, preferred) == expected


@pytest.mark.parametrize("min_gain,expected", [(0, 0.5), (1, 0.25), (2, 0.0)])
def test_beta_needs_the_configured_dev_gain(min_gain, expected):
    from retrikt.student.stage import BETA_GRID, choose_beta

    scores = {b: a / 32 for b, a in zip(BETA_GRID, [20, 21, 20, 20, 20])}
    assert choose_beta(scores, 32, 0.5, min_gain) == expected


@pytest.mark.parametrize("vote_alone,majority,expected", [
    (15, 17, 0.0),  # the CB case: beta 0.5 won a dev example, but the vote alone is below the majority class
    (17, 17, 0.0),  # a vote no better than always answering the majority label
    (18, 17, 0.5),
    (18, 0, 0.5),
])
def test_a_vote_below_the_majority_class_switches_retrieval_off(vote_alone, majority, expected):
    from retrikt.student.stage import BETA_GRID, choose_beta

    scores = {b: a / 32 for b, a in zip(BETA_GRID, [23, 23, 24, 24, vote_alone])}
    assert choose_beta(scores, 32, 0.5, 1, majority / 32) == expected


@pytest.mark.parametrize("successes,n,p,expected", [
    (8, 8, 0.5, 0.5 ** 8),
    (0, 8, 0.5, 1.0),
    (22, 28, 0.5, 0.00186),  # SST-2: 22 of 28 held-out gold against a balanced majority
    (17, 28, 16 / 28, 0.4280),  # BoolQ: one example over the majority class is no evidence
])
def test_binomial_tail(successes, n, p, expected):
    from retrikt.student.stage import binomial_tail

    assert binomial_tail(successes, n, p) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("right_of_10,demo_wrong,alpha,trusted", [
    (10, True, 0.05, True), (5, False, 0.05, False), (7, True, 0.05, False),
    (0, True, 1.0, True),  # alpha 1 turns the check off, even at p = 1
])
def test_teacher_trust_counts_only_gold_entries_it_was_not_shown(store, right_of_10, demo_wrong, alpha, trusted):
    from retrikt.student.stage import teacher_trust

    task = make_task(n_train=12)
    shown = task.train[:2]  # the demonstrations: never evidence, right or wrong
    entries = []
    for i, ex in enumerate(task.train):
        right = (i - 2 < right_of_10) if ex not in shown else not demo_wrong
        p_gold = 0.8 if right else 0.2
        other = next(label for label in LABELS if label != ex.label)
        entries.append(Entry(ex.fields, ex.label, "train", text=task.serialize(ex.fields),
                             soft_labels={ex.label: p_gold, other: 1 - p_gold}))
    store.add(entries)
    trust = teacher_trust(store, task, [ex.uid for ex in shown], alpha=alpha)
    assert trust["held_out_gold"] == 10 and trust["teacher_right"] == right_of_10
    assert trust["trusted"] is trusted


@pytest.mark.parametrize("block,starts", [
    ({"beta": 0.0, "beta_dev_accuracy": {"0.0": 0.5}, "teacher_trust": {
        "trusted": False, "held_out_gold": 28, "teacher_right": 12, "majority_right": 16, "p_value": 0.97}},
     "retrieval off: the teacher is no better than the majority class on 28 gold examples it was not shown (12 right"),
    ({"beta": 0.0, "beta_dev_accuracy": {"0.0": 0.5}, "teacher_trust": {"trusted": True}},
     "retrieval off: on the dev split"),
    ({"beta": 0.5, "beta_dev_accuracy": {"0.0": 0.5}, "teacher_trust": {"trusted": True}}, "chosen on the dev split"),
    ({"beta": 0.0, "beta_dev_accuracy": {}, "beta_heldout": 256, "beta_teacher_agreement": {"0.0": 0.8},
      "teacher_trust": {"trusted": True}, "teacher_vs_student": {"dev_examples": 96, "teacher_right": 40,
                                                                  "student_right": 47, "teacher_wins": False}},
     "retrieval off: on the 96 dev examples the teacher is no better than the student alone (40 right vs 47)"),
    ({"beta": 0.5, "beta_dev_accuracy": {}}, "as configured"),  # tune_beta off, or a run from before the check
    ({"beta": 0.75, "beta_dev_accuracy": {}, "beta_heldout": 256, "beta_teacher_agreement": {"0.75": 0.8125},
      "teacher_trust": {"trusted": True}}, "chosen by agreement with the teacher on 256 held-out inputs it labelled "
                                          "(81.2% at this beta)"),
])
def test_beta_reason(block, starts):
    from retrikt.student.stage import beta_reason

    assert beta_reason(block).startswith(starts)


@pytest.mark.parametrize("teacher_right,student_right,wins", [
    (3, 2, True),
    (2, 2, False),  # a tie keeps the student alone
    (1, 3, False),
])
def test_teacher_vs_student_counts_right_answers_on_gold(teacher_right, student_right, wins):
    from retrikt.student.stage import teacher_vs_student

    gold = np.array([0, 1, 0, 1])
    answers = lambda right: np.eye(2)[[g if i < right else 1 - g for i, g in enumerate(gold)]]  # noqa: E731
    versus = teacher_vs_student(answers(teacher_right), answers(student_right), gold)
    assert versus == {"dev_examples": 4, "teacher_right": teacher_right, "student_right": student_right,
                      "teacher_wins": wins}


@pytest.mark.parametrize("teacher_is_right,beta", [
    (True, 0.75),  # the teacher beats the student alone on dev: the rule's beta stands
    (False, 0.0),  # a teacher wrong on every dev example: retrieval off
])
def test_the_teacher_beta_rule_needs_a_teacher_that_beats_the_student_on_dev(tmp_path, monkeypatch, teacher_is_right,
                                                                             beta):
    import retrikt.student.stage as stage
    import retrikt.teacher.scorer
    from retrikt.runs import create_run
    from retrikt.store.knowledge_store import collection_name
    from retrikt.student.retrieval import Prediction

    task = make_task()
    dev_label = {task.serialize(e.fields): task.label_index(e.label) for e in task.dev}
    scored = []

    class Scorer:  # the teacher: right or wrong on every dev example, indifferent on everything else
        def __init__(self, *args, **kwargs):
            pass

        def use_demos(self, *args):
            pass

        def probs(self, fields_list, should_stop=None):
            scored.append(len(fields_list))
            rows = []
            for fields in fields_list:
                gold = dev_label.get(task.serialize(fields))
                rows.append([0.5, 0.5] if gold is None else np.eye(2)[gold if teacher_is_right else 1 - gold])
            return np.array(rows)

    monkeypatch.setattr(retrikt.teacher.scorer, "TeacherScorer", Scorer)
    monkeypatch.setattr(stage, "tune_beta_on_teacher", lambda *a, **k: (0.75, {"0.75": 1.0}))
    monkeypatch.setattr(stage, "teacher_trust", lambda *a, **k: {"held_out_gold": 0, "trusted": True})
    gold = np.array([task.label_index(e.label) for e in task.dev])
    half_right = np.eye(2)[[g if i % 2 else 1 - g for i, g in enumerate(gold)]]  # the student alone: 4 of 8 dev

    def predict(student, index, texts, k, tau, beta):
        assert texts == [task.serialize(e.fields) for e in task.dev]
        return Prediction(half_right, half_right, None, 0.0, 0.0)

    monkeypatch.setattr(stage, "predict", predict)
    monkeypatch.setattr(stage, "BETA_HELDOUT", 16)
    run = create_run(from_dict({"workspace": str(tmp_path), "run_name": "guard",
                                "student": vars(tiny_config(epochs=2))}))
    run.update_summary(score={"demo_uids": ["x"], "label_prior": [0.5, 0.5]})
    store = KnowledgeStore(path=run.store_dir, collection=collection_name("toy", run.name), embedder=WordEmbedder(),
                           task_labels=list(LABELS))
    store.add(store_entries(task, n=40))
    block = stage.train_students(run, task, store, EMBEDDED_TEACHER_PARAMS, teacher=object())
    assert block["beta"] == beta
    assert scored == [len(stage.heldout_inputs(task, 16)), len(task.dev)]
    assert block["teacher_vs_student"]["teacher_right"] == (len(task.dev) if teacher_is_right else 0)
    assert block["teacher_vs_student"]["teacher_wins"] is teacher_is_right
    assert stage.beta_reason(block).startswith("retrieval off: on the" if not teacher_is_right else "chosen by")


@pytest.mark.parametrize("student_right,vote_right,expected", [
    # of 4 held-out inputs the teacher labelled: who agrees with it, the student alone or the neighbours' vote
    ([1, 1, 0, 0], [1, 1, 1, 1], 1.0),
    ([1, 1, 1, 1], [0, 0, 0, 0], 0.25),  # a confident student outvotes a wrong store at 0.25, not at 0.5
    ([1, 1, 1, 1], [1, 1, 1, 1], 1.0),  # a tie: the larger beta, the store is how the teacher's knowledge travels
])
def test_teacher_beta_rule_picks_the_beta_that_agrees_most_with_the_teacher(monkeypatch, student_right, vote_right,
                                                                           expected):
    import retrikt.student.stage as stage
    from retrikt.student.retrieval import Prediction

    teacher = np.eye(2)[[0, 1, 0, 1]]
    flip = lambda right: np.array([t if r else 1 - t for t, r in zip(teacher, right)])  # noqa: E731
    pred = Prediction(0.9 * flip(student_right) + 0.05, 0.9 * flip(vote_right) + 0.05, None, 0.0, 0.0)
    monkeypatch.setattr(stage, "predict", lambda *a, **k: pred)
    beta, scores = stage.tune_beta_on_teacher(None, None, None, 8, 0.05, teacher, ["a", "b", "c", "d"])
    assert beta == expected and scores[str(expected)] == max(scores.values())


def test_the_teacher_rules_held_out_inputs_are_never_labelled_into_the_store(store, tmp_path, monkeypatch):
    import retrikt.teacher.scorer
    from retrikt.runs import create_run
    from retrikt.student.stage import heldout_inputs, label_unlabeled

    class Scorer:
        def __init__(self, *args, **kwargs):
            pass

        def use_demos(self, *args):
            pass

        def probs(self, fields_list, should_stop=None):
            return np.full((len(fields_list), 2), 0.5)

    monkeypatch.setattr(retrikt.teacher.scorer, "TeacherScorer", Scorer)
    task = make_task()
    run = create_run(from_dict({"workspace": str(tmp_path), "run_name": "held"}))
    run.update_summary(score={"demo_uids": ["x"], "label_prior": [0.5, 0.5]})
    label_unlabeled(run, task, store, None, 100)
    held = {task.serialize(f) for f in heldout_inputs(task, 16)}  # half of this small pool
    labelled = {e.text for e in store.list(source="unlabeled")}
    assert held and labelled and not held & labelled


def test_held_out_inputs_are_the_end_of_the_teacher_pool():
    from retrikt.student.stage import heldout_inputs, teacher_inputs
    from retrikt.tasks import load_builtin

    task = load_builtin("SST-2", seed=13)
    pool = teacher_inputs(task)
    assert heldout_inputs(task, 256) == pool[-256:] and heldout_inputs(task, 0) == []


def test_a_store_without_gold_entries_is_trusted(store):
    from retrikt.student.stage import teacher_trust

    task = make_task()
    store.add(store_entries(task, n=10)[:10])  # generated entries only
    assert teacher_trust(store, task, [], alpha=0.05) == {"held_out_gold": 0, "trusted": True}


@pytest.mark.slow
def test_cli_student_command_trains_on_a_finished_run(tmp_path, capsys):
    from retrikt.cli.main import main
    from retrikt.context import Context, open_store
    from retrikt.runs import create_run
    from retrikt.tasks import load_builtin

    task = load_builtin("SST-2", seed=13)
    run = create_run(from_dict({"task": "SST-2", "workspace": str(tmp_path), "run_name": "cli-run"}))
    store = open_store(Context(run, task, None))
    rng = random.Random(0)
    store.add([Entry({"sentence": s}, LABELS[int(good)], "generated:step1", text=task.serialize({"sentence": s}),
                     soft_labels={"negative": 0.2, "positive": 0.8} if good else {"negative": 0.8, "positive": 0.2})
               for good in (True, False) for s in (sentence(rng, good) for _ in range(6))])
    tiny = ["--set", "student.init=random", "--set", "student.epochs=1", "--set", "student.num_layers=1",
            "--set", "student.hidden_size=32", "--set", "student.num_heads=2", "--set", "student.intermediate_size=32"]
    args = ["student", "--from", "cli-run", "--workspace", str(tmp_path), "--skip-eval", *tiny]
    assert main(args) == 2  # the run has no finished step 1 yet
    assert "no finished knowledge store" in capsys.readouterr().err
    run.update_summary(status="done", teacher_params=EMBEDDED_TEACHER_PARAMS)
    assert main(args + ["--task", "CB"]) == 2  # a CB student cannot train on an SST-2 run
    assert main(args) == 0
    block = json.loads((run.path / "summary.json").read_text())["student"]
    assert block["items"]["indexed"] == 12 and block["compression_ratio"] <= 0.01
    assert (run.path / "student" / "model.pt").is_file() and (run.path / "student_kd" / "model.pt").is_file()


def test_label_unlabeled_tops_up_the_store_without_eval_inputs(store, tmp_path, monkeypatch):
    import retrikt.teacher.scorer
    from retrikt.runs import create_run
    from retrikt.student.stage import label_unlabeled

    class WordScorer:  # the teacher's verdict: positive iff a GOOD word occurs
        def __init__(self, *args, **kwargs):
            pass

        def use_demos(self, *args):
            pass

        def probs(self, fields_list, should_stop=None):
            return np.array([[0.1, 0.9] if set(f["sentence"].split()) & set(GOOD) else [0.9, 0.1]
                             for f in fields_list])

    monkeypatch.setattr(retrikt.teacher.scorer, "TeacherScorer", WordScorer)
    task = make_task()
    rng = random.Random(1)
    # test inputs must never be labelled; half of the 20 pool inputs are held out for the beta rule, 10 remain
    task.unlabeled = ([e.fields for e in task.test[:3]] + task.unlabeled
                      + [{"sentence": sentence(rng, rng.random() < 0.5)} for _ in range(10)])
    run = create_run(from_dict({"workspace": str(tmp_path), "run_name": "unl"}))
    run.update_summary(score={"demo_uids": ["x"], "label_prior": [0.5, 0.5]})
    assert label_unlabeled(run, task, store, None, 4)["scored"] == 4
    assert label_unlabeled(run, task, store, None, 7)["scored"] == 3
    assert label_unlabeled(run, task, store, None, 7)["scored"] == 0
    added = store.list(source="unlabeled")
    test_texts = {task.serialize(e.fields) for e in task.test}
    assert len(added) == 7 and not test_texts & {e.text for e in added}
    for e in added:
        assert e.label == e.teacher_label == ("positive" if set(e.fields["sentence"].split()) & set(GOOD) else "negative")


def test_same_seed_gives_the_same_student(store):
    task = make_task()
    store.add(store_entries(task))
    cfg = tiny_config(epochs=1)
    items = select_items(store, task, cfg)
    students = []
    for _ in range(2):
        torch.randn(7)  # whatever ran before must not matter
        student = build_student(cfg, list(LABELS), task_texts(task, items.texts), EMBEDDED_TEACHER_PARAMS, seed=5)
        finetune(student, items, cfg, seed=5, retrieval=True)
        students.append(student.model.state_dict())
    assert all(torch.equal(students[0][k], students[1][k]) for k in students[0])
