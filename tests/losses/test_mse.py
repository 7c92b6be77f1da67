from __future__ import annotations

import pytest
import torch
from pair_checks import assert_same_value_and_gradients
from sentence_transformers.sentence_transformer.losses import MSELoss as STMSELoss

from textdml.losses.mse import MSELoss
from textdml.registry import LOSSES


def batch(n=6, d=8, seed=0, dtype=torch.float32):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(n, d, generator=gen, dtype=dtype) for _ in range(4)]  # student a, b; teacher a, b


def naive_mse(rows, teacher_rows):
    total, count = 0.0, 0
    for s, t in zip(rows, teacher_rows):
        for k in range(len(s)):
            total = total + (s[k] - t[k]) ** 2
            count += 1
    return total / count


def test_registered_and_names_its_teacher():
    assert LOSSES.get("mse") is MSELoss
    assert MSELoss(teacher="some/model").teacher == "some/model" and MSELoss.teacher_role == "teacher"


def test_matches_naive_reference_with_and_without_ref():
    a, b, ta, tb = batch()
    torch.testing.assert_close(MSELoss()(a, teacher_embeddings=ta), naive_mse(list(a), list(ta)))
    both = MSELoss()(a, ref_embeddings=b, teacher_embeddings=ta, teacher_ref_embeddings=tb)
    torch.testing.assert_close(both, naive_mse(list(a) + list(b), list(ta) + list(tb)))


def test_matches_sentence_transformers_forward_and_backward():
    a, b, ta, tb = batch(n=16, d=12, seed=1)
    assert_same_value_and_gradients(
        lambda x, y: MSELoss()(x, ref_embeddings=y, teacher_embeddings=ta, teacher_ref_embeddings=tb),
        lambda x, y: STMSELoss(model=None).compute_loss_from_embeddings([x, y], [ta, tb]), a, b)


def test_projection_maps_the_student_to_the_teacher_size():
    gen = torch.Generator().manual_seed(0)
    student, teacher = torch.randn(5, 8, generator=gen), torch.randn(5, 12, generator=gen)
    loss = MSELoss(projection_dim=12, embedding_size=8)
    expected = (loss.projection(student) - teacher).pow(2).mean()
    torch.testing.assert_close(loss(student, teacher_embeddings=teacher), expected)
    assert loss.parameter_groups(1e-3)[0]["params"]  # the optimiser trains the projection


def test_closer_to_the_teacher_lowers_the_loss():
    a, _, ta, _ = batch()
    values = [MSELoss()(ta + noise * a, teacher_embeddings=ta).item() for noise in (1.0, 0.5, 0.1)]
    assert values[0] > values[1] > values[2]


def test_a_teacher_of_another_size_without_projection_is_an_error_with_the_fix():
    with pytest.raises(ValueError, match=r"384-d .*32-d .*loss.projection_dim=384.*model.dense_dim=384"):
        MSELoss(teacher="big").check_teacher(student_dim=32, teacher_dim=384)
    with pytest.raises(ValueError, match=r"loss.projection_dim=12"):
        MSELoss()(torch.randn(4, 8), teacher_embeddings=torch.randn(4, 12))
    MSELoss(projection_dim=384, embedding_size=32).check_teacher(student_dim=32, teacher_dim=384)


def test_missing_teacher_embeddings_say_how_to_name_the_teacher():
    with pytest.raises(ValueError, match=r"loss.teacher="):
        MSELoss()(torch.randn(4, 8))
    with pytest.raises(ValueError, match="teacher_ref_embeddings"):
        MSELoss()(torch.randn(4, 8), ref_embeddings=torch.randn(4, 8), teacher_embeddings=torch.randn(4, 8))
