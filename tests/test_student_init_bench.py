"""The teacher-made student initialisation of bench/student_init.py (the step-3 issue's lever 4)."""
from __future__ import annotations

import pytest
import torch

from bench.student_init import init_from_teacher, teacher_rows
from retrikt.config import StudentConfig
from retrikt.student.model import PAD, _pca, base_tokenizer, build_student


def test_a_teacher_initialised_students_embedding_rows_are_the_pca_projections_of_the_teachers_rows(teacher, sst2):
    texts = [sst2.serialize(e.fields) for e in sst2.train]
    cfg = StudentConfig(init="random")
    student = build_student(cfg, list(sst2.labels), texts, teacher.n_params, seed=13)
    table = teacher.model.get_input_embeddings().weight.detach().float()
    rows = init_from_teacher(student.model.encoder, student.vocab, teacher.tokenizer, table)
    weights = student.model.encoder.tokens.weight.detach()
    expected = _pca(rows, weights.shape[1])
    assert torch.allclose(weights[1:], expected[1:], atol=1e-5) and not weights[PAD].any()
    # A word piece's row is the mean of the teacher's rows of its text as the teacher reads it.
    pieces = base_tokenizer().convert_ids_to_tokens(student.vocab.base_ids)
    word = next(i for i, p in enumerate(pieces) if p.isalpha() and len(p) > 3)
    ids = teacher.tokenizer.encode(" " + pieces[word], add_special_tokens=False)
    assert torch.allclose(rows[word], table[ids].mean(0))


@pytest.mark.parametrize("piece,text", [("film", " film"), ("##ing", "ing")])
def test_a_word_piece_is_read_by_the_teacher_with_or_without_its_leading_space(teacher, piece, text):
    student_tokenizer = base_tokenizer()
    table = torch.randn(len(teacher.tokenizer), 4)
    rows = teacher_rows(student_tokenizer.convert_tokens_to_ids([piece, "[CLS]"]), student_tokenizer,
                        teacher.tokenizer, table)
    assert torch.allclose(rows[0], table[teacher.tokenizer.encode(text, add_special_tokens=False)].mean(0))
    assert torch.allclose(rows[1], table.mean(0))  # a special: the mean row
