"""Pieces of training that need no trained model: split, class weights, augmentation."""

import numpy as np
import pytest

from edgeface.dataset import stratified_split


def test_the_split_is_stratified_and_repeatable():
    targets = np.array([0] * 50 + [1] * 10 + [2] * 3)
    train, validation = stratified_split(targets, 0.2, seed=7)
    again_train, again_validation = stratified_split(targets, 0.2, seed=7)
    assert np.array_equal(validation, again_validation) and np.array_equal(train, again_train)
    assert sorted(np.concatenate([train, validation]).tolist()) == list(range(len(targets)))
    assert np.bincount(targets[validation]).tolist() == [10, 2, 1]
    other_validation = stratified_split(targets, 0.2, seed=8)[1]
    assert not np.array_equal(validation, other_validation)


@pytest.mark.workstation
def test_class_weights_balance_unequal_labels():
    from edgeface_convert.training import class_weights

    weights = class_weights(np.array([0] * 90 + [1] * 10), 2)
    assert weights.tolist() == pytest.approx([100 / (2 * 90), 100 / (2 * 10)])
    assert (weights[0] * 90) == pytest.approx(weights[1] * 10)  # each label weighs the same in total


@pytest.mark.workstation
def test_augmentation_keeps_shape_and_value_range():
    from edgeface_convert.training import face_augmenter

    batch = np.random.default_rng(0).random((8, 32, 32, 1), dtype=np.float32)
    augmented = np.asarray(face_augmenter((0.0, 1.0), seed=1)(batch, training=True))
    assert augmented.shape == batch.shape
    assert augmented.min() >= 0.0 and augmented.max() <= 1.0
    assert not np.allclose(augmented, batch)
